package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

type tokenRun struct {
	alg           string
	sign          signResult
	healthz, load loadResult
}

type introspectionRun struct {
	healthz, load loadResult
	keys          int
}

type revocationRun struct{ apiKeys, clients []time.Duration }

type reconcileRun struct {
	keys           int
	created, total time.Duration
	cpu            map[string]float64 // CPU seconds per process during the run
	metrics        map[string]float64 // the manager's metrics, differences over the run
}

type coldStartRun struct {
	keys  int
	times []time.Duration
}

type memoryPoint struct {
	keys int
	rss  int64
}

// report collects the figures of a run and renders BENCHMARKS.md.
type report struct {
	s             settings
	started       time.Time
	tokens        []tokenRun
	introspection *introspectionRun
	revocations   revocationRun
	reconcile     []reconcileRun
	coldStarts    []coldStartRun
	memory        []memoryPoint
	rows          [][]string // rendered results: measure, result, reference, ratio, target, met
}

func newReport(s settings) *report { return &report{s: s, started: time.Now()} }

const (
	targetRS256Ratio       = 0.85
	targetFastTokens       = 10_000.0
	targetTokenP99         = 10 * time.Millisecond
	targetIntrospection    = 20_000.0
	targetRevocationP99    = 200 * time.Millisecond
	targetReconcile        = 60 * time.Second
	targetBytesPerKey      = 2048.0
	targetColdStart        = 3 * time.Second
	targetColdStartAtKeys  = 10_000
	targetReconcileAtKeys  = 10_000
	closedLoopQueueingNote = "closed loop: latency ≈ connections ÷ rate"
)

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// rowsFor renders the results table.
func (r *report) build() {
	r.rows = nil
	add := func(cells ...string) { r.rows = append(r.rows, cells) }
	for _, t := range r.tokens {
		ratio := t.load.Rate / t.sign.Rate
		target, met := "", false
		if t.alg == "RS256" {
			target = fmt.Sprintf("≥ %.0f%% of raw signing; p99 < 10 ms", 100*targetRS256Ratio)
			met = ratio >= targetRS256Ratio && t.load.P99 < targetTokenP99
		} else {
			target = "≥ 10,000/s; p99 < 10 ms"
			met = t.load.Rate >= targetFastTokens && t.load.P99 < targetTokenP99
		}
		add(fmt.Sprintf("1. Token issuance, %s (client_secret_basic)", t.alg),
			fmt.Sprintf("%.0f tokens/s; p50 %s, p99 %s", t.load.Rate, ms(t.load.P50), ms(t.load.P99)),
			fmt.Sprintf("raw %s signing, same core: %.0f/s", t.alg, t.sign.Rate),
			fmt.Sprintf("%.1f%%", 100*ratio), target, yesNo(met))
	}
	if in := r.introspection; in != nil {
		add(fmt.Sprintf("2. API key introspection (%d keys cycled, %d in the index)", r.s.introspected, in.keys),
			fmt.Sprintf("%.0f requests/s; p50 %s, p99 %s", in.load.Rate, ms(in.load.P50), ms(in.load.P99)),
			fmt.Sprintf("GET /healthz, same core: %.0f/s", in.healthz.Rate),
			fmt.Sprintf("%.1f%%", 100*in.load.Rate/in.healthz.Rate), "≥ 20,000/s", yesNo(in.load.Rate >= targetIntrospection))
	}
	for _, rv := range []struct {
		what string
		d    []time.Duration
	}{{"introspection of a revoked API key", r.revocations.apiKeys}, {"token endpoint, revoked OAuthClient", r.revocations.clients}} {
		if len(rv.d) == 0 {
			continue
		}
		add(fmt.Sprintf("3. Revocation latency, %s (%d revocations)", rv.what, len(rv.d)),
			fmt.Sprintf("p50 %s, p99 %s, max %s", ms(pct(rv.d, 0.5)), ms(pct(rv.d, 0.99)), ms(pct(rv.d, 1))),
			"—", "—", "p99 < 200 ms", yesNo(pct(rv.d, 0.99) < targetRevocationP99))
	}
	for i, rc := range r.reconcile {
		what := fmt.Sprintf("4. Reconcile: %d APIKeys applied at once → all Ready with Secrets", rc.keys)
		target, met := "< 60 s for 10,000", yesNo(rc.total < targetReconcile)
		if i > 0 || rc.keys != targetReconcileAtKeys {
			target, met = "(no target)", "—"
		}
		add(what, fmt.Sprintf("%.1f s (creates done at %.1f s)", rc.total.Seconds(), rc.created.Seconds()),
			"—", fmt.Sprintf("%.0f keys/s", float64(rc.keys)/rc.total.Seconds()), target, met)
	}
	if len(r.memory) > 0 && r.memory[0].keys == 0 {
		base := r.memory[0]
		for _, m := range r.memory[1:] {
			perKey := float64(m.rss-base.rss) / float64(m.keys)
			add(fmt.Sprintf("5. Token server RSS with %d APIKeys", m.keys),
				fmt.Sprintf("%s (%.0f bytes/key above the baseline)", mib(m.rss), perKey),
				fmt.Sprintf("no APIKeys: %s", mib(base.rss)), "—", "≤ 2 KiB/key", yesNo(perKey <= targetBytesPerKey))
		}
	}
	for _, c := range r.coldStarts {
		sorted := slices.Clone(c.times)
		slices.Sort(sorted)
		target, met := "< 3 s", yesNo(sorted[len(sorted)-1] < targetColdStart)
		if c.keys != targetColdStartAtKeys {
			target, met = "(no target)", "—"
		}
		add(fmt.Sprintf("6. Token server cold start to ready, %d APIKeys (%d starts)", c.keys, len(c.times)),
			fmt.Sprintf("median %s, max %s", ms(sorted[len(sorted)/2]), ms(sorted[len(sorted)-1])), "—", "—", target, met)
	}
}

func (r *report) write(path string) error {
	r.build()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Benchmarks\n\n")
	p("Written by `make bench` (hack/bench): a local control plane (etcd and kube-apiserver built by hack/envtest.sh), ")
	p("the manager and the token server as processes, and a load generator, all on this machine. ")
	p("The token server runs on core %s (taskset, GOMAXPROCS=1); the load generator and the signing reference's peer on core %s; ", r.s.serverCPU, r.s.loadCPU)
	p("%d keep-alive connections in a closed loop (each sends its next request when the previous response arrives), ", r.s.connections)
	p("%s of warm-up then %s measured per load. ", r.s.warmup, r.s.duration)
	p("During the load and revocation measurements the control plane, the manager and the benchmark itself are confined to the load core (the first two at the lowest priority, nice 19, under load, and at normal priority for the revocations, which they carry), so that nothing else runs on the token server's core and the load generator comes first on its own; ")
	p("they use every core for the reconcile measurement.\n\n")
	p("| | |\n|---|---|\n")
	p("| Command | `%s` |\n", command())
	p("| Size | %s |\n", r.s.size)
	if len(r.s.managerArgs) > 0 {
		p("| Manager flags added | `%s` |\n", strings.Join(r.s.managerArgs, " "))
	}
	p("| Date | %s (run took %s) |\n", r.started.UTC().Format("2006-01-02 15:04 MST"), time.Since(r.started).Round(time.Second))
	p("| CPU | %s, %d cores |\n", cpuModel(), runtime.NumCPU())
	p("| Go | %s %s/%s |\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	p("| Kernel | %s |\n", kernel())
	p("| Commit | %s |\n\n", commit())

	p("## Results\n\n")
	p("Ratios compare a figure with a reference measured in the same run on the same core, so they hold across machines better than the absolute numbers.\n\n")
	p("| Measure | Result | Reference (same run) | Ratio | Target | Met |\n|---|---|---|---|---|---|\n")
	for _, row := range r.rows {
		p("| %s |\n", strings.Join(row, " | "))
	}

	p("\n## Details\n\n")
	if len(r.tokens) > 0 {
		p("### Token endpoint and references per algorithm\n\n")
		p("| Algorithm | Raw signing (1 goroutine) | /healthz | Tokens | p50 | p99 | max | Little's law: %d ÷ rate |\n|---|---|---|---|---|---|---|---|\n", r.s.connections)
		for _, t := range r.tokens {
			p("| %s | %.0f/s | %.0f/s | %.0f/s | %s | %s | %s | %s |\n", t.alg, t.sign.Rate, t.healthz.Rate, t.load.Rate,
				ms(t.load.P50), ms(t.load.P99), ms(t.load.Max), ms(time.Duration(float64(r.s.connections)/t.load.Rate*float64(time.Second))))
		}
		p("\nIn a closed loop with %d connections on one core, the mean latency is %d ÷ rate whatever the server does: a request waits for the %d ahead of it. ", r.s.connections, r.s.connections, r.s.connections-1)
		p("At a signing cost above %s per token (RS256), a p99 under 10 ms is out of reach at saturation; the p99 target is met by the algorithms whose signature is cheap.\n\n",
			ms(10*time.Millisecond/time.Duration(r.s.connections)))
	}
	for i, rc := range r.reconcile {
		p("### Reconcile run %d: %d APIKeys\n\n", i+1, rc.keys)
		p("CPU seconds used during the run (%.1f s of wall time, 2 cores = %.1f CPU-seconds available):\n\n", rc.total.Seconds(), 2*rc.total.Seconds())
		p("| Process | CPU seconds | Share of the wall time |\n|---|---|---|\n")
		names := make([]string, 0, len(rc.cpu))
		for n := range rc.cpu {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return rc.cpu[names[i]] > rc.cpu[names[j]] })
		for _, n := range names {
			p("| %s | %.1f | %.0f%% |\n", n, rc.cpu[n], 100*rc.cpu[n]/rc.total.Seconds())
		}
		m := rc.metrics
		reconciles := m["controller_runtime_reconcile_total{apikey}"]
		if reconciles > 0 {
			p("\nThe manager's metrics over the run (APIKey controller):\n\n| Metric | Value |\n|---|---|\n")
			p("| Reconciles | %.0f |\n", reconciles)
			p("| Mean reconcile time | %s |\n", ms(seconds(m["controller_runtime_reconcile_time_seconds{apikey}_sum"]/reconciles)))
			if n := m["workqueue_queue_duration_seconds{apikey}_count"]; n > 0 {
				p("| Mean time queued before a worker took it | %s |\n", ms(seconds(m["workqueue_queue_duration_seconds{apikey}_sum"]/n)))
			}
			var verbs []string
			for k := range m {
				if strings.HasPrefix(k, "rest_client_requests_total{") && m[k] > 0 {
					verbs = append(verbs, k)
				}
			}
			sort.Strings(verbs)
			for _, k := range verbs {
				p("| API requests %s | %.0f |\n", strings.TrimPrefix(k, "rest_client_requests_total"), m[k])
			}
		}
		p("\n")
	}
	if len(r.memory) > 0 {
		p("### Token server memory\n\nRSS (VmRSS) 5 s after the token server became ready, with GOMAXPROCS=1.\n\n| APIKeys | RSS |\n|---|---|\n")
		for _, m := range r.memory {
			p("| %d | %s |\n", m.keys, mib(m.rss))
		}
		p("\n")
	}
	if len(r.revocations.apiKeys) > 0 {
		p("### Revocation\n\nEach revocation: a poller sends the revoked credential's request every millisecond on one keep-alive connection; ")
		p("the latency runs from sending the merge patch `{\"spec\":{\"revoked\":true}}` to receiving the first refusal, ")
		p("so it includes the API server's own write and slightly overstates the time from acceptance.\n\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil && filepath.Dir(path) != "." {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// summary is the results table for the terminal.
func (r *report) summary() string {
	var b strings.Builder
	for _, row := range r.rows {
		fmt.Fprintf(&b, "%-4s %-70s %s   [%s]\n", row[5], row[0], row[1], row[4])
	}
	return b.String()
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func command() string {
	if c := os.Getenv("BENCH_COMMAND"); c != "" {
		return c
	}
	return strings.Join(os.Args, " ")
}

func kernel() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
