package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// profiledRows are the loads whose profiles (-profile-dir) the report shows, by
// the name each was saved under, with the row they belong to.
var profiledRows = []struct{ file, row string }{
	{"token-RS256", "1. Token issuance, RS256"},
	{"token-ES256", "1. Token issuance, ES256"},
	{"token-EdDSA", "1. Token issuance, EdDSA"},
	{"floor-token-ES256", "the POST floor, token response shape (ES256 run)"},
	{"introspect-apikey", "2. API key introspection"},
	{"floor-introspect-apikey", "the POST floor, introspection response shape"},
	{"authz-forward-apikey", "8. forward-auth API-key check"},
	{"floor-authz-forward-apikey", "the forward-auth floor"},
	{"authz-grpc-apikey", "8. gRPC Check, API key"},
	{"authz-grpc-ES256-uncached", "8. gRPC Check, ES256, verified on every check"},
	{"authz-grpc-EdDSA-uncached", "8. gRPC Check, EdDSA, verified on every check"},
	{"manager-reconcile-10000", "4. the manager while reconciling 10,000 APIKeys"},
}

// profileTop is the top of one load's CPU and allocation profiles.
type profileTop struct {
	file, row   string
	cpu, allocs string // go tool pprof -top, the table only
}

// profileFrames is how many frames of each profile the report shows.
const profileFrames = 12

// readProfiles reads the top frames of every profiled row found in dir.
func readProfiles(dir string) []profileTop {
	var tops []profileTop
	for _, pr := range profiledRows {
		cpuFile := filepath.Join(dir, pr.file+".pprof")
		if _, err := os.Stat(cpuFile); err != nil {
			continue
		}
		t := profileTop{file: pr.file, row: pr.row, cpu: topOf(cpuFile)}
		if allocs := filepath.Join(dir, pr.file+".allocs.pprof"); fileExists(allocs) {
			t.allocs = topOf(allocs, "-sample_index=alloc_space")
		}
		tops = append(tops, t)
	}
	return tops
}

// topOf is `go tool pprof -top` of file by own time (or the sample index given):
// its summary line and table (pprofTop).
func topOf(file string, flags ...string) string {
	args := append([]string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", profileFrames)}, flags...)
	out, err := exec.Command("go", append(args, file)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(go tool pprof failed: %v)", err)
	}
	summary, table := pprofTop(string(out))
	return strings.TrimSpace(summary + "\n" + table)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeProfiles is "Where the time goes": the top frames of each row's profiles.
func (r *report) writeProfiles(p func(string, ...any)) {
	if len(r.profiles) == 0 {
		return
	}
	p("### Where the time goes\n\n")
	p("CPU and allocation profiles of the measured process over each load (warm-up included), saved under `%s` by `-profile-dir`; ", r.s.profileDir)
	p("`go tool pprof -top` by own time, and the allocations over the same seconds by bytes (`-sample_index=alloc_space`). ")
	p("Profiling costs the measured process a few per cent; every row of the run was profiled alike, its floor included.\n\n")
	for _, t := range r.profiles {
		p("#### %s (`%s`)\n\n```\n%s\n```\n\n", t.row, t.file, t.cpu)
		if t.allocs != "" {
			p("Allocations:\n\n```\n%s\n```\n\n", t.allocs)
		}
	}
}
