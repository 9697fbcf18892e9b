package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// -before <commit> measures each load row on two builds in the same run: the
// working tree's bin/latchkey (after) and that commit's (before), so that a
// change's effect is a pair of figures taken together rather than two runs
// taken on different days. The HTTP rows run both builds' servers at once on the
// server core and interleave the load between them (pairWithBefore): this
// machine's speed drifts by more than most changes within minutes, which two
// loads one after the other read as the change. The gRPC rows are one after
// the other.

// buildBefore builds latchkey at commit (a git worktree under dir) and returns
// the binary and the commit's short name.
func buildBefore(dir, commit string) (binary, name string, err error) {
	out, err := exec.Command("git", "rev-parse", "--short", commit).Output()
	if err != nil {
		return "", "", fmt.Errorf("-before %s: not a commit: %w", commit, err)
	}
	name = strings.TrimSpace(string(out))
	tree := filepath.Join(dir, "before-"+name)
	if out, err := exec.Command("git", "worktree", "add", "--detach", tree, name).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("git worktree add %s: %w: %s", name, err, out)
	}
	defer func() { _ = exec.Command("git", "worktree", "remove", "--force", tree).Run() }()
	binary = filepath.Join(dir, "latchkey-"+name)
	build := exec.Command("go", "build", "-trimpath", "-o", binary, "./cmd")
	build.Dir, build.Env = tree, append(os.Environ(), "CGO_ENABLED=0")
	begin := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building %s: %w: %s", name, err, out)
	}
	logf("built the -before commit %s in %s", name, time.Since(begin).Round(time.Second))
	return binary, name, nil
}

// beforeAfter is one pair: the same load on the -before build and on this one,
// interleaved (pairWithBefore) or one after the other.
type beforeAfter struct {
	row           string
	before, after loadResult
	interleaved   bool
	together      bool // measured together (togetherBefore), not interleaved
}

// pairOf is a row's pair: its interleaved one (paired: this build's side, the
// -before build's as its Floor) if it has one, else its load alone after the
// -before build's (before); ok is false for neither.
func pairOf(row string, paired, before *loadResult, alone loadResult) (beforeAfter, bool) {
	switch {
	case paired != nil && paired.Floor != nil:
		return beforeAfter{row: row, before: *paired.Floor, after: *paired, interleaved: true}, true
	case before != nil:
		return beforeAfter{row: row, before: *before, after: alone}, true
	}
	return beforeAfter{}, false
}

// pairChanges is the lowest and the highest change of a pair's after side over
// its before side in one of its pairs of slices (interleaved) or windows
// (together), unit saying which, or "" without any.
func pairChanges(after loadResult, unit string) string {
	lo, hi, n := pairRange(after, func(pair [3]float64) float64 { return pair[0]/pair[1] - 1 })
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%+.1f%% to %+.1f%% over its %d %s)", 100*lo, 100*hi, n, unit)
}

// pairWithBefore loads requests on this build's server (after, at afterAddr)
// interleaved with the same requests on the -before build's (before, at
// beforeAddr), both running on the server core, each idle in the other's slices.
// It returns this build's side, with the -before build's as its Floor.
func (b *bench) pairWithBefore(ctx context.Context, name string, after *process, afterAddr string, before *process, beforeAddr string,
	requests [][]byte, body string) (*loadResult, error) {
	job := b.interleave(loadJob{Addr: afterAddr, Requests: requests, Connections: b.s.connections, Warmup: b.s.warmup,
		Duration: b.s.duration, ExpectStatus: http.StatusOK, ExpectBody: body}, after, requests, body)
	job.FloorAddr, job.FloorServerPID = beforeAddr, before.cmd.Process.Pid
	res, err := b.measure(ctx, name, "load", after, job)
	return &res, err
}

// The A/A pairs' rows: two fresh servers of this build, paired as a
// before/after pair is (tokenServerPair); and the run's own server against a
// fresh one, as the pairs were first made (historyPair).
const (
	selfPairRow    = "2. API key introspection, A/A: two fresh servers of this build"
	historyPairRow = "2. API key introspection, A/A: the run's server against a fresh one of this build"
)

// pairs are the run's before/after pairs, in the order of the results table.
func (r *report) pairs() []beforeAfter {
	var out []beforeAfter
	for _, t := range r.tokens {
		if pr, ok := pairOf("1. Token issuance, "+t.alg, t.beforePair, t.before, t.load); ok {
			out = append(out, pr)
		}
		if pr, ok := pairOf("1. Token issuance, "+t.alg, t.togetherBefore, nil, t.load); ok {
			pr.interleaved, pr.together = false, true
			out = append(out, pr)
		}
	}
	if in := r.introspection; in != nil {
		if pr, ok := pairOf("2. API key introspection", in.beforePair, in.before, in.load); ok {
			out = append(out, pr)
		}
		if pr, ok := pairOf("2. API key introspection", in.togetherBefore, nil, in.load); ok {
			pr.interleaved, pr.together = false, true
			out = append(out, pr)
		}
		if pr, ok := pairOf(selfPairRow, in.selfPair, nil, in.load); ok {
			out = append(out, pr)
		}
		if pr, ok := pairOf(historyPairRow, in.historyPair, nil, in.load); ok {
			out = append(out, pr)
		}
	}
	if a := r.authz; a != nil && a.before != nil {
		for _, l := range []struct {
			name, row string
			after     loadResult
		}{{"authz-forward-apikey", "8. forward-auth API-key check", a.forward}, {"authz-grpc-apikey", "8. gRPC Check, API key", a.grpcKey}} {
			var before *loadResult
			if b, ok := a.before[l.name]; ok {
				before = &b
			}
			paired := a.forwardBeforePair
			if l.name == "authz-grpc-apikey" {
				paired = a.grpcBeforePair
			}
			if pr, ok := pairOf(l.row, paired, before, l.after); ok {
				out = append(out, pr)
			}
			if l.name == "authz-forward-apikey" {
				if pr, ok := pairOf(l.row, a.forwardTogetherBefore, nil, l.after); ok {
					pr.interleaved, pr.together = false, true
					out = append(out, pr)
				}
			}
		}
		for _, j := range a.jwt {
			if before, ok := a.before["authz-grpc-"+j.alg+"-uncached"]; ok {
				out = append(out, beforeAfter{row: "8. gRPC Check, " + j.alg + " token verified on every check", before: before, after: j.uncached})
			}
		}
	}
	return out
}

// writeBeforeAfter is the table of before/after pairs.
func (r *report) writeBeforeAfter(p func(string, ...any)) {
	pairs := r.pairs()
	var memory []memoryPoint
	for _, m := range r.memory {
		if m.managerBefore > 0 {
			memory = append(memory, m)
		}
	}
	if len(pairs) == 0 && len(memory) == 0 {
		return
	}
	p("### Before and after, same run\n\n")
	p("Each load row measured on the build of commit %s (before: `-before %s`) and on this build (after), same core, same requests. ", r.beforeName, r.beforeName)
	p("What changed between them is in `git log %s..`. ", r.beforeName)
	p("Where the row says interleaved, both builds' servers, each started afresh for the pair, ran at once on the server core and the load alternated between them in slices of %.1f s (each idle in the other's slices); the other rows are one load right after the other, the after side being the run's own server. ", sliceOf(r.s.duration).Seconds())
	if in, a := r.introspection, r.authz; (in != nil && in.togetherBefore != nil) || (a != nil && a.forwardTogetherBefore != nil) ||
		slices.ContainsFunc(r.tokens, func(t tokenRun) bool { return t.togetherBefore != nil }) {
		p("Where the row says together, both builds' servers, each started afresh, answered the same load at the same time on the server core, each in a cgroup of the same CPU weight, and each side is read per CPU-second of its own server in windows of %.1f s (the spread is of those windows' changes). ", sliceOf(r.s.duration).Seconds())
	}
	p("Two loads minutes apart on this machine can differ by more than the change (a core kept from running flat out reads as a lower rate): ")
	p("the per-CPU-second columns, requests per second of the server's own CPU, read what a request costs the server either way.")
	if in := r.introspection; in != nil && in.selfPair != nil {
		p(" The first A/A row pairs two fresh token servers of this build, as the interleaved pairs are made: no change, so what it reads is what the pairing itself reads (the sides' order, the machine), the margin to read the other pairs by.")
	}
	if in := r.introspection; in != nil && in.historyPair != nil {
		p(" The second pairs the run's own token server, after every load before it, with a fresh one: what a server's history reads, which the pairs no longer carry.")
	}
	if a := r.authz; a != nil && a.before != nil && r.s.profileDir != "" {
		p(" The authorizer's one-after-the-other rows are not alike on both sides: this build's authorizer was profiled during its loads, the -before build's serves no pprof and was not; those rows compare builds and profiling together.")
	}
	p("\n\n")
	p("| Row | How | Before | After | Change | Per server CPU-second, before | after | Change | p99 before | p99 after |\n|---|---|---|---|---|---|---|---|---|---|\n")
	window := r.s.warmup + r.s.duration
	for _, pr := range pairs {
		b, a := pr.before.perServerCPU(window), pr.after.perServerCPU(window)
		change := "n/a"
		if a > 0 && b > 0 {
			change = fmt.Sprintf("%+.1f%%", 100*(a/b-1))
		}
		how := "one after the other"
		switch {
		case pr.interleaved:
			how = "interleaved" + pairChanges(pr.after, "pairs of slices")
		case pr.together:
			how = "together" + pairChanges(pr.after, "windows")
		}
		p("| %s | %s | %.0f/s | %.0f/s | %+.1f%% | %.0f | %.0f | %s | %s | %s |\n", pr.row, how, pr.before.Rate, pr.after.Rate, 100*(pr.after.Rate/pr.before.Rate-1),
			b, a, change, ms(pr.before.P99), ms(pr.after.P99))
	}
	p("\n")
	if len(memory) == 0 || len(r.memory) == 0 || r.memory[0].keys != 0 {
		return
	}
	base := r.memory[0].heap["manager"]
	p("The manager's heap after a GC: the -before build's and this build's, each started afresh with the keys in place (the envelope's figure is the manager that reconciled them):\n\n")
	p("| APIKeys | Before | After | Per key before | Per key after |\n|---|---|---|---|---|\n")
	for _, m := range memory {
		p("| %d | %s | %s | %.0f bytes | %.0f bytes |\n", m.keys, mib(m.managerBefore), mib(m.managerFresh),
			float64(m.managerBefore-base)/float64(m.keys), float64(m.managerFresh-base)/float64(m.keys))
	}
	p("\n")
}
