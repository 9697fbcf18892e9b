package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/latchkey-dev/latchkey/internal/serve"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// Two servers measured together (loadJob.Together): both on the server core at
// the same time, each in a CPU share of its own and equal to the other's, each
// read per CPU-second of its own. Interleaved slices of 2 s share the machine's
// drift over minutes, but not its swings within seconds: on this machine a pair
// of slices of the same server has read up to 55% apart. Sharing the core at the
// scheduler's own grain puts both sides in the same milliseconds. Without the
// equal shares the scheduler split the core as unevenly as 20/80 between two
// identical servers, and the two then read up to 6% apart; with them, 50/50 and
// within 1.5% in every window of 2 s (a toy server pair, 2026-12-06). In two
// quick runs of introspection with 20 s loads the same day, two token servers
// both answering the row read from 96.5% to 101.4% and from 98.4% to 101.6% of
// each other over their ten windows, and the row from 78.5% to 84.6% and from
// 78.2% to 82.3% of its reference together, where interleaved it read from
// 76.5% to 89.5% and from 70.6% to 87.9% over five pairs of slices.

// cgroupCPURoots are where the CPU controller is mounted: cgroup v1's, then v2's.
var cgroupCPURoots = []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup"}

// cpuController is the root of the cgroup CPU controller, the file that holds
// a cgroup's weight and the weight every cgroup of sharedCore gets (v1's
// default cpu.shares, v2's default cpu.weight); for v2, the CPU controller is
// enabled for the root's children first.
func cpuController() (root, weightFile, weight string, err error) {
	for _, dir := range cgroupCPURoots {
		if _, err := os.Stat(filepath.Join(dir, "cpu.shares")); err == nil {
			return dir, "cpu.shares", "1024", nil
		}
		controllers, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		if err != nil || !slices.Contains(strings.Fields(string(controllers)), "cpu") {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu"), 0); err != nil {
			if errors.Is(err, syscall.EBUSY) {
				err = fmt.Errorf("%w (%s holds processes: a container's own cgroup namespace? run the benchmark on the host)", err, dir)
			}
			return "", "", "", fmt.Errorf("enabling the CPU controller for the cgroups under %s (needs root): %w", dir, err)
		}
		return dir, "cpu.weight", "100", nil
	}
	return "", "", "", fmt.Errorf("measuring two servers together needs the cgroup CPU controller (v1 at /sys/fs/cgroup/cpu, or v2 with cpu in /sys/fs/cgroup/cgroup.controllers)")
}

// sharedCore puts each of pids (whole processes, every thread) in a new cgroup
// of its own under the CPU controller, each with the same weight, so that the
// scheduler gives each the same share of a core they all want; undo moves them
// to the root cgroup and removes the cgroups. It needs root and says so; a
// cgroup left by an earlier run that was killed is an error, not reused (its
// processes would share this run's, and its weight might not be the default).
func sharedCore(pids ...int) (undo func() error, err error) {
	root, weightFile, weight, err := cpuController()
	if err != nil {
		return nil, err
	}
	var made []string
	undo = func() error {
		var errs []error
		for i, dir := range made {
			err := os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(pids[i])), 0)
			if err != nil && !errors.Is(err, syscall.ESRCH) { // a process that has ended left by itself
				errs = append(errs, err)
			}
			errs = append(errs, os.Remove(dir))
		}
		return errors.Join(errs...)
	}
	for i, pid := range pids {
		dir, err := weightedCgroup(root, strconv.Itoa(i), weightFile, weight)
		if dir != "" {
			made = append(made, dir)
		}
		if err != nil {
			return nil, errors.Join(err, undo())
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return nil, errors.Join(fmt.Errorf("moving server %d into %s: %w", pid, dir, err), undo())
		}
	}
	return undo, nil
}

// weightedCgroup makes this run's cgroup name under root and gives it weight;
// dir is "" when it was not made (an existing one is an error: see sharedCore).
func weightedCgroup(root, name, weightFile, weight string) (dir string, err error) {
	dir = filepath.Join(root, fmt.Sprintf("latchkey-bench-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("a cgroup for a server measured together (needs root): %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, weightFile), []byte(weight), 0); err != nil {
		return dir, fmt.Errorf("the CPU weight of %s: %w", dir, err)
	}
	return dir, nil
}

// canShareCore tells, before the run's first measurement, whether sharedCore
// will work here: a cgroup made, weighted and removed, and this process's CPU
// clock read. Without it the run would stop at introspection, minutes in.
func canShareCore() error {
	root, weightFile, weight, err := cpuController()
	if err != nil {
		return err
	}
	dir, err := weightedCgroup(root, "check", weightFile, weight)
	if dir != "" {
		err = errors.Join(err, os.Remove(dir))
	}
	if err != nil {
		return err
	}
	_, err = processCPUSeconds(os.Getpid())
	return err
}

// togetherPair starts two fresh token servers of this build with the floor on
// (neither has the run's server's history) and loads them together (Together):
// the first with requests, the second with what second makes of its address
// (the floor's requests and the start of its answer, or requests again for the
// A/A pair). Both in equal shares of the server core, each read per CPU-second.
func (b *bench) togetherPair(ctx context.Context, name string, requests []string, body string,
	second func(addr string) (requests []string, body string, err error)) (_ *loadResult, err error) {
	return b.togetherWith(ctx, name, theSame(requests, body), "", second)
}

// theFloor is a second side that answers requests' floor (configured at its
// address from its own real answer); theSame one that answers requests again,
// expecting body (an A/A, or a before/after pair).
func theFloor(requests []string) func(addr string) ([]string, string, error) {
	return func(addr string) ([]string, string, error) {
		_, floor, expect, err := floorFor(addr, requests)
		return floor, expect, err
	}
}

func theSame(requests []string, body string) func(addr string) ([]string, string, error) {
	return func(string) ([]string, string, error) { return requests, body, nil }
}

// theWorkingFloor is a side that answers requests' floor doing work in its
// handler before each answer (serve.FloorWork): the working floor.
func theWorkingFloor(requests []string, work serve.FloorWork) func(addr string) ([]string, string, error) {
	return func(addr string) ([]string, string, error) {
		answer, floor, expect, err := floorFor(addr, requests)
		if err != nil {
			return nil, "", err
		}
		answer.Work = work
		return floor, expect, configureFloor(addr, answer)
	}
}

// togetherBefore is togetherPair with the -before build's server as the second,
// answering the same requests: a before/after pair measured together.
func (b *bench) togetherBefore(ctx context.Context, name string, requests []string, body string) (*loadResult, error) {
	return b.togetherWith(ctx, name, theSame(requests, body), b.s.before, theSame(requests, body))
}

// togetherWith is togetherPair with the first side what first makes of its
// server's address, and the second server of otherBinary ("": this build's,
// with the floor on; another build's without, as it may not know the flag).
func (b *bench) togetherWith(ctx context.Context, name string, first func(addr string) (requests []string, body string, err error),
	otherBinary string, second func(addr string) (requests []string, body string, err error)) (_ *loadResult, err error) {
	floored := []string{"--benchmark-floor"}
	otherFlags := floored
	if otherBinary != "" {
		otherFlags = nil
	}
	var pprofAddrs [2]string // both profiled over the same seconds: their profiles compare frame by frame
	for i := range pprofAddrs {
		if b.s.profileDir == "" || (i == 1 && otherBinary != "") { // another build may serve no pprof
			break
		}
		if pprofAddrs[i], err = testenv.FreeAddr(); err != nil {
			return nil, err
		}
	}
	row, rowAddr, err := b.freshTokenServerWith(ctx, name, "", floored, pprofAddrs[0])
	if err != nil {
		return nil, err
	}
	defer row.stop()
	other, otherAddr, err := b.freshTokenServerWith(ctx, name+"-other", otherBinary, otherFlags, pprofAddrs[1])
	if err != nil {
		return nil, err
	}
	defer other.stop()
	requests, body, err := first(rowAddr)
	if err != nil {
		return nil, err
	}
	otherRequests, otherBody, err := second(otherAddr)
	if err != nil {
		return nil, err
	}
	return b.togetherLoad(ctx, name, pprofAddrs, togetherSide{row, rowAddr, requests, body}, togetherSide{other, otherAddr, otherRequests, otherBody})
}

// togetherSide is a server measured together: its process, its address, and
// its requests and the start of its answers.
type togetherSide struct {
	server   *process
	addr     string
	requests []string
	body     string
}

// togetherLoad loads row and other, both running, together (Together) in
// equal shares of the server core, profiling each whose pprofAddrs entry is
// set: the row's result, with the other's as its Floor.
func (b *bench) togetherLoad(ctx context.Context, name string, pprofAddrs [2]string, row, other togetherSide) (*loadResult, error) {
	undo, err := sharedCore(row.server.cmd.Process.Pid, other.server.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	job := b.interleave(loadJob{Addr: row.addr, Requests: rawRequests(row.requests), Connections: b.s.connections, Warmup: b.s.warmup,
		Duration: b.s.duration, ExpectStatus: http.StatusOK, ExpectBody: row.body}, row.server, rawRequests(other.requests), other.body)
	job.FloorAddr, job.FloorServerPID, job.Together = other.addr, other.server.cmd.Process.Pid, true
	for i, file := range []string{name, name + "-other"} {
		if pprofAddrs[i] != "" {
			defer b.profile(ctx, "http://"+pprofAddrs[i], file+".pprof", b.s.warmup+b.s.duration)()
		}
	}
	res, err := b.measure(ctx, name, "load", row.server, job)
	if undoErr := undo(); err == nil {
		err = undoErr
	}
	if err == nil { // measure has logged the windows' spread
		window := b.s.warmup + b.s.duration
		logf("  %-22s per CPU-second of each server: %.0f, and %.0f on the other; the core split %.0f/%.0f",
			name, res.perServerCPU(window), res.Floor.perServerCPU(window),
			100*share(res.ServerCPU, res.Floor.ServerCPU), 100*share(res.Floor.ServerCPU, res.ServerCPU))
	}
	return &res, err
}

// togetherNote describes a row measured together with its floor and with
// itself (A/A), each per CPU-second of its server, or nothing when it was not
// measured; rawWork is the unavoidable work's rate (rawAroundOf; 0: none) and
// work what it is, window a load's warm-up and measured time, slice the length
// of its windows.
func togetherNote(together, aa *loadResult, rawWork rawRate, work string, window, slice time.Duration) string {
	if together == nil || aa == nil || together.Floor == nil || aa.Floor == nil {
		return ""
	}
	raw := rawWork.rate
	lo, hi, n := pairRange(*together, func(pair [3]float64) float64 { return pair[0] / shapeReference(pair[1], raw) })
	aaLo, aaHi, _ := pairRange(*aa, func(pair [3]float64) float64 { return pair[0] / pair[1] })
	row, floor := together.perServerCPU(window), together.Floor.perServerCPU(window)
	reference := "the floor"
	if raw > 0 {
		reference = "the floor combined with " + rawWork.describe(work)
	}
	return fmt.Sprintf("; measured together (two fresh servers of this build on the same core at the same time, each in a cgroup of the same CPU weight: the core split %.0f/%.0f), per CPU-second of each server: the row %.0f requests, the floor %.0f, %.1f%% of %s, from %.1f%% to %.1f%% over %d windows of %.1f s; both servers answering the row (A/A): %.1f%%, from %.1f%% to %.1f%%",
		100*share(together.ServerCPU, together.Floor.ServerCPU), 100*share(together.Floor.ServerCPU, together.ServerCPU),
		row, floor, 100*row/shapeReference(floor, raw), reference, 100*lo, 100*hi, n, slice.Seconds(),
		100*aa.perServerCPU(window)/aa.Floor.perServerCPU(window), 100*aaLo, 100*aaHi)
}

// togetherWorkingNote describes the working floor measured together with the
// plain floor (both per CPU-second of their servers), against the plain floor
// combined with the work's raw rate (raw, read around that pair where it was:
// rawAroundOf): what the work costs in a handler on a core shared at the
// scheduler's grain, beside what the formula assumes. does is what the no-op
// does besides answering, work what the raw rate measures.
func togetherWorkingNote(working *loadResult, raw rawRate, does, work string, window time.Duration) string {
	if working == nil || working.Floor == nil || raw.rate <= 0 {
		return ""
	}
	w, floor := working.perServerCPU(window), working.Floor.perServerCPU(window)
	return fmt.Sprintf("; the working floor (the no-op that also %s) together with the plain floor, per CPU-second: %.0f and %.0f, %.1f%% of the plain floor combined with %s",
		does, w, floor, 100*w/shapeReference(floor, raw.rate), raw.describe(work))
}

// share is a's share of a and b.
func share(a, b float64) float64 {
	if a+b <= 0 {
		return 0
	}
	return a / (a + b)
}

// rawRate is the rate per CPU-second of a row's unavoidable work (0: none) that
// its together ratio combines with the floor: the mean of the readings right
// before and right after the pair (around), or else the one before the loads.
type rawRate struct {
	rate          float64
	around        bool
	before, after float64
}

// describe names the work and where its rate was read.
func (r rawRate) describe(work string) string {
	if r.around {
		return fmt.Sprintf("%s (its raw rate per CPU-second right before and right after the pair, %.0f and %.0f: their mean)", work, r.before, r.after)
	}
	return work + " (its raw rate per CPU-second, measured alone before the loads)"
}

// rawAroundOf is the raw rate of a together ratio: around the pair where it
// was measured there (rawAround), else alone, before the loads.
func rawAroundOf(around [2]workResult, alone workResult) rawRate {
	before, after := around[0].perCPU(), around[1].perCPU()
	if before <= 0 || after <= 0 {
		return rawRate{rate: alone.perCPU()}
	}
	return rawRate{rate: (before + after) / 2, around: true, before: before, after: after}
}

// The together ratio is a row's headline only where its A/A shows the two
// servers alike: the A/A's mean within togetherAAMean of 100% and each of its
// windows within togetherAAWindow; and, where the raw work was measured around
// the pair, its two readings within togetherAAWindow of each other. Beyond
// that, the core was not split evenly enough, or the machine's speed moved too
// far, for the two sides to compare, and the ratio measured otherwise stands.
const (
	togetherAAMean   = 0.02
	togetherAAWindow = 0.05
)

// togetherRatio is a row's ratio measured together with its floor, per
// CPU-second of each server, against the floor combined with raw (0: none),
// and whether it may stand as the row's ratio (its A/A and raw work within
// bounds); why says what kept it out, and is empty when it was not measured.
func togetherRatio(together, aa *loadResult, raw rawRate, window time.Duration) (ratio float64, ok bool, why string) {
	if together == nil || aa == nil || together.Floor == nil || aa.Floor == nil {
		return 0, false, ""
	}
	ratio = together.perServerCPU(window) / shapeReference(together.Floor.perServerCPU(window), raw.rate)
	mean := aa.perServerCPU(window) / aa.Floor.perServerCPU(window)
	lo, hi, n := pairRange(*aa, func(pair [3]float64) float64 { return pair[0] / pair[1] })
	switch {
	case !(ratio > 0) || math.IsInf(ratio, 0):
		return ratio, false, "the together ratio is not a rate's"
	case math.IsNaN(mean) || math.Abs(mean-1) > togetherAAMean:
		return ratio, false, fmt.Sprintf("the together A/A read %.1f%%, beyond ±%.0f%%", 100*mean, 100*togetherAAMean)
	case n == 0:
		return ratio, false, "the together A/A has no windows"
	case n < len(aa.Pairs):
		return ratio, false, "a together A/A window had no requests on one side"
	case raw.around && math.Abs(raw.after/raw.before-1) > togetherAAWindow:
		return ratio, false, fmt.Sprintf("the raw work's rate moved %+.1f%% across the pair, beyond ±%.0f%%", 100*(raw.after/raw.before-1), 100*togetherAAWindow)
	case lo < 1-togetherAAWindow || hi > 1+togetherAAWindow:
		return ratio, false, fmt.Sprintf("a together A/A window read %.1f%% to %.1f%%, beyond ±%.0f%%", 100*lo, 100*hi, 100*togetherAAWindow)
	}
	return ratio, true, ""
}

// headlineRatio is the ratio a row is judged by, and its cell: the together
// ratio where it may stand (togetherRatio), else the one measured otherwise
// (other, "interleaved" or "alone", as mode says); the cell names both where
// both were measured.
func headlineRatio(other float64, mode string, together, aa *loadResult, raw rawRate, window time.Duration) (float64, string) {
	t, ok, why := togetherRatio(together, aa, raw, window)
	switch {
	case ok:
		return t, fmt.Sprintf("%.1f%% together (%s %.1f%%)", 100*t, mode, 100*other)
	case why == "": // not measured together
		return other, fmt.Sprintf("%.1f%%", 100*other)
	case t > 0 && !math.IsInf(t, 0):
		return other, fmt.Sprintf("%.1f%% %s (together %.1f%% not used: %s)", 100*other, mode, 100*t, why)
	}
	return other, fmt.Sprintf("%.1f%% %s (together not used: %s)", 100*other, mode, why)
}

// pairMode names how a row was measured against its floor, for headlineRatio.
func pairMode(paired loadResult) string {
	if paired.Floor != nil {
		return "interleaved"
	}
	return "alone"
}
