// Command bench is `make bench`: it starts a local control plane (etcd and
// kube-apiserver, as for make demo), the manager and a token server as processes,
// generates the load itself, and writes BENCHMARKS.md.
//
// The token server is pinned to one core and the load generator to the other
// (taskset, GOMAXPROCS=1), with 16 keep-alive connections. What depends on the
// machine's speed is also given as a ratio to a reference measured in the same
// run on the same core: the floor of each request's shape, the same requests
// answered as a no-op by the same process (shapes.go), combined with the raw
// work no implementation can skip (a signature, two SHA-256); /healthz for
// continuity. The full run keeps a CPU and an allocation profile of every load
// (profiles.go) and, with -before, measures each load row on an earlier build
// too (before.go); the memory rows are the scale envelope (envelope.go).
//
// The edge authorizer (`latchkey authz`) is measured the same way, on the same
// core, for its own rows (authz.go).
//
// Usage: bench [-size quick|full] [flags]; `bench -h` lists them.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// settings are the sizes of one run.
type settings struct {
	size        string
	duration    time.Duration
	warmup      time.Duration
	connections int
	// grpcConnections: the HTTP/2 connections the gRPC loads spread their
	// connections-many streams over.
	grpcConnections int
	keys            int   // APIKeys created at once for the reconcile measurement
	floorRounds     int   // reconcile floors, each followed by a reconcile (floor.go)
	memoryKeys      []int // APIKey counts at which the token server's RSS is measured (beyond keys)
	coldStarts      int
	revocations     int
	algorithms      []string
	serverCPU       string
	loadCPU         string
	out             string
	profileDir      string
	before          string // a commit: the load rows are measured on its build too (before.go); run replaces it with the binary
	keepWorkDir     bool
	managerArgs     []string
	steps           []string // empty: all
	introspected    int      // distinct API keys the introspection load cycles through
	// lastUsedKeys API keys are introspected through two token servers for at least
	// lastUsedWindow to count the writes that record their last use.
	lastUsedKeys   int
	lastUsedWindow time.Duration
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "grpc-noop" {
		if err := serveNoopCheck(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && slices.Contains([]string{"load", "work", "list", "grpcload", "verify", "check"}, os.Args[1]) {
		if err := childMain(os.Args[1]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	s, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctrllog.SetLogger(logr.Discard()) // the benchmark's own watch caches: their logs are noise here
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	// The first signal stops the run, which then stops what it started; a second
	// one ends the process at once, as it would without NotifyContext.
	context.AfterFunc(ctx, cancel)
	if err := run(ctx, s); err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (settings, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	size := fs.String("size", "full", "quick (a few minutes) or full (the figures of BENCHMARKS.md, under 30 minutes); sets the defaults below")
	duration := fs.Duration("duration", 0, "measured time of each load (quick 5s, full 20s)")
	warmup := fs.Duration("warmup", 0, "unmeasured time before each load (quick 1s, full 3s)")
	connections := fs.Int("connections", 16, "concurrent keep-alive connections of the load generator")
	grpcConnections := fs.Int("grpc-connections", 4, "HTTP/2 connections of the gRPC loads, over which their -connections concurrent calls are spread (Envoy opens one per worker thread)")
	keys := fs.Int("keys", 10_000, "APIKeys applied at once for the reconcile and cold-start measurements")
	floorRounds := fs.Int("floor-rounds", 0, "rounds of the reconcile floor, each followed by a reconcile, whose median ratio is the row's (quick 1, full 3)")
	memoryKeys := fs.String("memory-keys", "", "further APIKey totals at which to measure the token server's memory (quick none, full 100000)")
	coldStarts := fs.Int("cold-starts", 0, "token server starts to time (quick 3, full 5)")
	revocations := fs.Int("revocations", 0, "revocations per endpoint (quick 100, full 200)")
	algorithms := fs.String("algorithms", "RS256,ES256,EdDSA", "signing algorithms to load")
	serverCPU := fs.String("server-cpu", "0", "core of the token server (taskset -c)")
	loadCPU := fs.String("load-cpu", "1", "core of the load generator and of the signing reference's peer")
	out := fs.String("out", "", "report path (full: BENCHMARKS.md; quick: bin/BENCHMARKS.quick.md)")
	profileDir := fs.String("profile-dir", "", "save CPU and allocation profiles of the measured process under each load, and of the manager while reconciling, here (full: bin/bench-profiles; quick: none)")
	before := fs.String("before", "", "an earlier commit: each load row is measured on its build too, right after this build's, as a before/after pair in the same run")
	keep := fs.Bool("keep", false, "keep the work directory (logs) after the run")
	steps := fs.String("steps", "", "run only these measurements (comma-separated: floor, coldstart, tokens, introspection, revocation, leaks, authz, lastused, scale); the setup (clients, baseline memory, reconcile) always runs")
	managerArgs := fs.String("manager-args", "", "extra flags for the manager, space-separated (to compare settings, e.g. --kube-api-qps=200)")
	if err := fs.Parse(args); err != nil {
		return settings{}, err
	}
	s := settings{size: *size, connections: *connections, grpcConnections: *grpcConnections, keys: *keys, algorithms: split(*algorithms),
		serverCPU: *serverCPU, loadCPU: *loadCPU, before: *before, keepWorkDir: *keep, introspected: 1000,
		managerArgs: strings.Fields(*managerArgs), steps: split(*steps)}
	switch *size {
	case "quick":
		s.duration, s.warmup, s.coldStarts, s.revocations, s.out = 5*time.Second, time.Second, 3, 100, "bin/BENCHMARKS.quick.md"
		s.floorRounds = 1
		s.lastUsedKeys, s.lastUsedWindow = 200, 10*time.Second // mostly within one bucket
	case "full":
		s.duration, s.warmup, s.coldStarts, s.revocations, s.out = 20*time.Second, 3*time.Second, 5, 200, "BENCHMARKS.md"
		s.floorRounds = 3
		// 70 s and the 5 s margins around boundaries: two or three 1-minute buckets, one boundary or two.
		s.lastUsedKeys, s.lastUsedWindow = 1000, 70*time.Second
		s.memoryKeys = []int{100_000}
		s.profileDir = "bin/bench-profiles"
	default:
		return s, fmt.Errorf("-size is quick or full, not %q", *size)
	}
	if *duration > 0 {
		s.duration = *duration
	}
	if *warmup > 0 {
		s.warmup = *warmup
	}
	if *coldStarts > 0 {
		s.coldStarts = *coldStarts
	}
	if *floorRounds > 0 {
		s.floorRounds = *floorRounds
	}
	if *revocations > 0 {
		s.revocations = *revocations
	}
	if *out != "" {
		s.out = *out
	}
	if *profileDir != "" {
		s.profileDir = *profileDir
	}
	if *memoryKeys != "" {
		s.memoryKeys = nil
		for _, v := range split(*memoryKeys) {
			n, err := strconv.Atoi(v)
			if err != nil || n <= s.keys {
				return s, fmt.Errorf("-memory-keys: %q is not a count above -keys", v)
			}
			s.memoryKeys = append(s.memoryKeys, n)
		}
	}
	if need := 3*s.revocations + s.introspected + s.lastUsedKeys; s.keys < need {
		return s, fmt.Errorf("-keys must be at least %d (revocations at the token server and at the authorizer, leak reports, introspected keys and last-use keys)", need)
	}
	if runtime.NumCPU() < 2 {
		return s, fmt.Errorf("needs two cores (one for the token server, one for the load); this machine has %d", runtime.NumCPU())
	}
	return s, nil
}

func split(list string) []string {
	var out []string
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// repoPath resolves a path relative to the repository root (bench runs from there).
func repoPath(parts ...string) string {
	wd, _ := os.Getwd()
	return filepath.Join(append([]string{wd}, parts...)...)
}

func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
