package main

import (
	"fmt"
	"math"
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
	alg                  string
	sign                 workResult    // one signature, raw
	healthz, floor, load loadResult    // floor and load each alone (profiled)
	paired               loadResult    // the load interleaved with its floor (paired.Floor): the ratio's
	working              *loadResult   // the load interleaved with the floor that also signs (working.Floor)
	before               *loadResult   // the same load on the -before build, alone
	beforePair           *loadResult   // the load interleaved with the -before build's (its Floor)
	together             *loadResult   // the load on a fresh server together with the floor on another (its Floor)
	togetherAA           *loadResult   // the load on two fresh servers together (the second is its Floor): A/A
	togetherWorking      *loadResult   // the working floor on a fresh server together with the plain floor on another (its Floor)
	togetherBefore       *loadResult   // the load on a fresh server together with the -before build's (its Floor)
	togetherRaw          [2]workResult // raw signing right before and right after together (rawAround)
	togetherWorkingRaw   [2]workResult // raw signing right before and right after togetherWorking
}

type introspectionRun struct {
	healthz, floor, load loadResult  // floor and load each alone (profiled)
	paired               loadResult  // the load interleaved with its floor (paired.Floor): the ratio's
	working              *loadResult // the load interleaved with the floor that also hashes (working.Floor)
	hash                 workResult  // the two SHA-256 of a request, raw
	before               *loadResult
	beforePair           *loadResult   // the load interleaved with the -before build's (its Floor)
	selfPair             *loadResult   // two fresh servers of this build interleaved (the second is its Floor): A/A
	historyPair          *loadResult   // the run's server interleaved with a fresh one of this build (its Floor): A/A
	together             *loadResult   // the load on a fresh server together with the floor on another (its Floor)
	togetherAA           *loadResult   // the load on two fresh servers together (the second is its Floor): A/A
	togetherBefore       *loadResult   // the load on a fresh server together with the -before build's (its Floor)
	togetherRaw          [2]workResult // the two SHA-256 right before and right after together (rawAround)
	keys                 int
}

// revocationRun is each revocation's latency from sending the patch and from its answer.
type revocationRun struct {
	apiKeys, clients                     []time.Duration
	apiKeysFromAnswer, clientsFromAnswer []time.Duration
}

type reconcileRun struct {
	keys           int
	created, total time.Duration
	cpu            map[string]float64 // CPU seconds per process during the run
	metrics        map[string]float64 // the manager's metrics, differences over the run
}

// floorRound is a reconcile floor and the reconcile measured right after it.
type floorRound struct {
	floor     *floorRun
	reconcile reconcileRun
}

// ratio is the round's reconcile ÷ floor.
func (fr floorRound) ratio() float64 { return fr.reconcile.total.Seconds() / fr.floor.total.Seconds() }

type coldStartRun struct {
	keys  int
	times []time.Duration
}

// report collects the figures of a run and renders BENCHMARKS.md.
type report struct {
	s             settings
	started       time.Time
	commit        string // the build measured: git describe as the run began
	tokens        []tokenRun
	introspection *introspectionRun
	revocations   revocationRun
	reconcile     []reconcileRun
	coldStarts    []coldStartRun
	memory        []memoryPoint
	floor         *floorRun    // the last round's, whose reconcile is reconcile[0]
	floorRounds   []floorRound // the rounds before it (floor.go)
	lastUsed      *lastUsedRun
	authz         *authzRun
	leaks         *leakRun
	// coldStartProfile is the profiled start at the largest key count.
	coldStartProfile *coldStartProfile
	profiles         []profileTop // the top frames of each profiled row (-profile-dir)
	beforeName       string       // the -before commit, short
	rows             [][]string   // rendered results: measure, result, reference, ratio, target, met
}

// newReport begins a run's report. The binaries are built before it begins
// (make bench), so the commit read now is theirs, however the working tree
// changes while the run lasts.
func newReport(s settings) *report { return &report{s: s, started: time.Now(), commit: commit()} }

const (
	// targetShapeRatio: a row's share of its request shape's floor (shapes.go),
	// combined with the row's unavoidable work where it has some.
	targetShapeRatio              = 0.85
	targetRevocationP99           = 200 * time.Millisecond
	targetRevocationFromAnswerP99 = 50 * time.Millisecond
	targetReconcile               = 60 * time.Second
	targetBytesPerKey             = 2048.0
	targetColdStart               = 3 * time.Second
	targetReconcileAtKeys         = 10_000
	targetFloorRatio              = 1.25
	closedLoopQueueingNote        = "closed loop: latency ≈ connections ÷ rate"
)

// targetColdStartAtKeys are the APIKey counts with a cold-start target.
var targetColdStartAtKeys = []int{10_000, 100_000}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// build renders the results table into r.rows.
func (r *report) build() {
	r.rows = nil
	add := func(cells ...string) { r.rows = append(r.rows, cells) }
	for _, t := range r.tokens {
		load, floorLoad, sign, how := r.shapePair(t.load, t.floor, t.paired, t.sign.Rate)
		floor := combined(floorLoad.Rate, sign)
		ratio, ratioCell := headlineRatio(load.Rate/floor, pairMode(t.paired), t.together, t.togetherAA, rawAroundOf(t.togetherRaw, t.sign), r.window())
		add(fmt.Sprintf("1. Token issuance, %s (client_secret_basic)", t.alg),
			fmt.Sprintf("%.0f tokens/s; p50 %s, p99 %s", load.Rate, ms(load.P50), ms(load.P99)),
			fmt.Sprintf("POST floor (the same requests answered with a token response by a no-op, same process: %.0f/s) combined with raw %s signing on the same core (%.0f/s): 1/(1/a+1/b) = %.0f/s; the row is %.1f%% of raw signing%s%s",
				floorLoad.Rate, t.alg, sign, floor, 100*load.Rate/sign,
				r.perCPUShare(load, combined(floorLoad.perServerCPU(r.window()), sign)), how)+workingFloor(t.working, "signs")+
				togetherNote(t.together, t.togetherAA, rawAroundOf(t.togetherRaw, t.sign), "raw "+t.alg+" signing", r.window(), sliceOf(r.s.duration))+
				togetherWorkingNote(t.togetherWorking, rawAroundOf(t.togetherWorkingRaw, t.sign), "signs", "raw "+t.alg+" signing", r.window()),
			ratioCell, fmt.Sprintf("≥ %.0f%% of the floor combined with signing", 100*targetShapeRatio), yesNo(ratio >= targetShapeRatio))
	}
	if in := r.introspection; in != nil {
		load, floorLoad, hash, how := r.shapePair(in.load, in.floor, in.paired, in.hash.Rate)
		floor := combined(floorLoad.Rate, hash)
		ratio, ratioCell := headlineRatio(load.Rate/floor, pairMode(in.paired), in.together, in.togetherAA, rawAroundOf(in.togetherRaw, in.hash), r.window())
		add(fmt.Sprintf("2. API key introspection (%d keys cycled, %d in the index)", r.s.introspected, in.keys),
			fmt.Sprintf("%.0f requests/s; p50 %s, p99 %s", load.Rate, ms(load.P50), ms(load.P99)),
			fmt.Sprintf("POST floor (the same requests answered with an introspection response by a no-op, same process: %.0f/s) combined with the raw SHA-256 of the client secret and of the key (%.0f/s): %.0f/s; GET /healthz %.0f/s (%.1f%%)%s%s",
				floorLoad.Rate, hash, floor, in.healthz.Rate, 100*load.Rate/in.healthz.Rate,
				r.perCPUShare(load, combined(floorLoad.perServerCPU(r.window()), hash)), how)+workingFloor(in.working, "hashes")+
				togetherNote(in.together, in.togetherAA, rawAroundOf(in.togetherRaw, in.hash), "the two SHA-256", r.window(), sliceOf(r.s.duration)),
			ratioCell, fmt.Sprintf("≥ %.0f%% of the floor combined with two SHA-256", 100*targetShapeRatio), yesNo(ratio >= targetShapeRatio))
	}
	for _, rv := range []struct {
		what           string
		sent, answered []time.Duration
	}{{"introspection of a revoked API key", r.revocations.apiKeys, r.revocations.apiKeysFromAnswer},
		{"token endpoint, revoked OAuthClient", r.revocations.clients, r.revocations.clientsFromAnswer}} {
		if len(rv.answered) == 0 {
			continue
		}
		d := rv.answered
		add(fmt.Sprintf("3. Revocation latency, %s (%d revocations)", rv.what, len(d)),
			fmt.Sprintf("from the patch's response: p50 %s, p99 %s, max %s (from sending it: p99 %s)",
				ms(pct(d, 0.5)), ms(pct(d, 0.99)), ms(pct(d, 1)), ms(pct(rv.sent, 0.99))),
			"—", "—", "p99 < 50 ms from the patch's response", yesNo(pct(d, 0.99) < targetRevocationFromAnswerP99))
	}
	for i, rc := range r.reconcile {
		what := fmt.Sprintf("4. Reconcile: %d APIKeys applied at once → all Ready with Secrets", rc.keys)
		result, judged := fmt.Sprintf("%.1f s (creates done at %.1f s)", rc.total.Seconds(), rc.created.Seconds()), rc.total
		if i == 0 && len(r.floorRounds) > 0 {
			var totals []float64
			for _, round := range r.roundsEndingWith(rc, r.floor) {
				totals = append(totals, round.reconcile.total.Seconds())
			}
			judged = time.Duration(median(totals) * float64(time.Second))
			result = fmt.Sprintf("median of %d rounds %.1f s; the last round %s", len(totals), judged.Seconds(), result)
		}
		target, met := "< 60 s for 10,000", yesNo(judged < targetReconcile)
		if i > 0 || rc.keys != targetReconcileAtKeys {
			target, met = "(no target)", "—"
		}
		add(what, result,
			"—", fmt.Sprintf("%.0f keys/s", float64(rc.keys)/rc.total.Seconds()), target, met)
		if f := r.floor; i == 0 && f != nil && f.keys == rc.keys {
			r.floorRow(add, rc, f)
		}
	}
	r.memoryRows(add)
	for _, c := range r.coldStarts {
		sorted := slices.Clone(c.times)
		slices.Sort(sorted)
		target, met := "< 3 s", yesNo(sorted[len(sorted)-1] < targetColdStart)
		if !slices.Contains(targetColdStartAtKeys, c.keys) {
			target, met = "(no target)", "—"
		}
		add(fmt.Sprintf("6. Token server cold start to ready, %d APIKeys (%d starts)", c.keys, len(c.times)),
			fmt.Sprintf("median %s, max %s", ms(sorted[len(sorted)/2]), ms(sorted[len(sorted)-1])), "—", "—", target, met)
	}
	if u := r.lastUsed; u != nil {
		perBucket := u.perKeyPerBucket(float64(u.changes))
		what := "7. Last-use writes per 1,000 active keys per hour (default 1h granularity), 2 token servers"
		if u.oldFlags {
			what += " — old behaviour: this build has no --last-used-granularity"
		}
		patches := "n/a"
		if u.patches.ok {
			patches = fmt.Sprintf("%.0f (%.2f per key per bucket)", u.patches.value, u.perKeyPerBucket(u.patches.value))
		}
		add(what,
			fmt.Sprintf("%.0f (= %.2f status changes per key per bucket × 1,000)", 1000*perBucket, perBucket),
			fmt.Sprintf("%d keys, %s: %d lastUsedAt changes; API server PATCH apikeys/status %s", u.keys, buckets(u.buckets), u.changes, patches),
			"—", "(no target; ideal 1,000)", "—")
	}
	r.authzRows(add)
	r.leakRows(add)
}

// leakRows renders the leaked-key rows (leaks.go).
func (r *report) leakRows(add func(...string)) {
	l := r.leaks
	if l == nil {
		return
	}
	rate := l.tokens.Rate * leakBatch
	add(fmt.Sprintf("9. Leaked keys: reported tokens checked (POST /credentials/revoke, %d well-formed keys that are not live per request)", leakBatch),
		fmt.Sprintf("%.0f tokens/s; p99 %s per request", rate, ms(l.tokens.P99)),
		fmt.Sprintf("raw decode + checksum + SHA-256, same core: %.0f tokens/s", l.raw.Rate),
		fmt.Sprintf("%.1f%%", 100*rate/l.raw.Rate), "(no target)", "—")
	add(fmt.Sprintf("9. Leaked keys: report → first refusal at introspection (%d reports, each a key alone)", len(l.fromSend)),
		fmt.Sprintf("p50 %s, p99 %s, max %s", ms(pct(l.fromSend, 0.5)), ms(pct(l.fromSend, 0.99)), ms(pct(l.fromSend, 1))),
		fmt.Sprintf("from the 204: p99 %s", ms(pct(l.fromAnswer, 0.99))), "—", "p99 < 1 s (issue 23)", yesNo(pct(l.fromSend, 0.99) < time.Second))
}

// shapePair is the row, the floor and the raw rate a shape ratio is of: the
// load interleaved with its floor when there is one (paired.Floor), and the raw
// work measured in its raw slices when it was (paired.Raw), else the loads
// alone and rawAlone; how says which, and the loads alone beside an interleaved
// pair. rawAlone is the rate of the row's unavoidable work beyond the floor,
// measured alone (0: none).
func (r *report) shapePair(alone, floorAlone, paired loadResult, rawAlone float64) (row, floor loadResult, raw float64, how string) {
	if paired.Floor == nil {
		return alone, floorAlone, rawAlone, ""
	}
	raw, rawHow := rawAlone, ""
	if paired.Raw > 0 {
		raw = paired.Raw
		rawHow = fmt.Sprintf(", the raw work in a slice of %.1f s after each pair, timed after its first %.2f s (the server busy %.0f%% of that time; the raw work alone, before the loads: %.0f/s)",
			rawSlice.Seconds(), rawSettle.Seconds(), 100*paired.RawServerBusy, rawAlone)
	}
	return paired, *paired.Floor, raw, fmt.Sprintf("; the row and its floor interleaved in slices of %.1f s%s%s (each alone, one after the other and profiled: %.0f/s, floor %.0f/s: %.1f%%)",
		sliceOf(r.s.duration).Seconds(), rawHow, pairSpread(paired, raw), alone.Rate, floorAlone.Rate, 100*alone.Rate/shapeReference(floorAlone.Rate, rawAlone))
}

// pairSpread is the lowest and the highest of an interleaved ratio over its
// pairs of slices, each pair's row rate over its own reference (its floor's
// rate combined with the raw rate of its raw slice, or with raw when it has
// none), or "" when the load has no pairs.
func pairSpread(paired loadResult, raw float64) string {
	lo, hi, n := pairRange(paired, func(pair [3]float64) float64 {
		pairRaw := raw
		if pair[2] > 0 {
			pairRaw = pair[2]
		}
		return pair[0] / shapeReference(pair[1], pairRaw)
	})
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", the ratio from %.1f%% to %.1f%% over its %d pairs of slices", 100*lo, 100*hi, n)
}

// pairRange is the lowest and the highest of f(pair) over an interleaved
// load's pairs of slices, and how many pairs had a floor side to compare with.
func pairRange(paired loadResult, f func(pair [3]float64) float64) (lo, hi float64, n int) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, pair := range paired.Pairs {
		if pair[1] > 0 {
			v := f(pair)
			lo, hi, n = min(lo, v), max(hi, v), n+1
		}
	}
	return lo, hi, n
}

// workingFloor describes the row interleaved with the floor that does its
// unavoidable work itself (serve.FloorWork), or nothing when it was not measured.
func workingFloor(working *loadResult, does string) string {
	if working == nil || working.Floor == nil || working.Floor.Rate <= 0 {
		return ""
	}
	return fmt.Sprintf("; the working floor (the no-op that also %s, the same work in its own handler), interleaved with the row: %.0f/s, the row %.0f/s = %.1f%% of it",
		does, working.Floor.Rate, working.Rate, 100*working.Rate/working.Floor.Rate)
}

// shapeReference is a row's reference: its floor combined with its unavoidable
// work's raw rate, or the floor alone (raw 0).
func shapeReference(floor, raw float64) float64 {
	if raw <= 0 {
		return floor
	}
	return combined(floor, raw)
}

// window is a load's whole run: warm-up and measured time.
func (r *report) window() time.Duration { return r.s.warmup + r.s.duration }

// perCPUShare is "; per server CPU-second: x% of the same reference" for a
// reference given per server CPU-second, or "" when the server's CPU was not read.
func (r *report) perCPUShare(load loadResult, reference float64) string {
	if v := load.perServerCPU(r.window()); v > 0 && reference > 0 {
		return fmt.Sprintf("; per server CPU-second: %.1f%% of the same reference", 100*v/reference)
	}
	return ""
}

// floorRow sets the reconcile beside its floor: the median of the rounds' ratios
// (floor.go), the last round's being rc over f.
func (r *report) floorRow(add func(...string), rc reconcileRun, f *floorRun) {
	rounds := r.roundRatios(rc, f)
	ratio := median(rounds)
	target, met := "≤ 1.25× at 10,000", yesNo(ratio <= targetFloorRatio)
	if f.keys != targetReconcileAtKeys {
		target, met = "(no target)", "—"
	}
	ratioCell := fmt.Sprintf("%.2f×", ratio)
	result := fmt.Sprintf("reconcile %.1f s, floor %.1f s", rc.total.Seconds(), f.total.Seconds())
	if len(rounds) > 1 {
		result += " (the last round)"
		each := make([]string, len(rounds))
		for i, v := range rounds {
			each[i] = fmt.Sprintf("%.2f×", v)
		}
		ratioCell = fmt.Sprintf("%.2f× (median of %d rounds, each a floor and the reconcile right after it: %s)", ratio, len(rounds), strings.Join(each, ", "))
	}
	add(fmt.Sprintf("4. Reconcile ÷ floor, %d APIKeys (floor: the manager's writes by a bare client, manager stopped)", f.keys),
		result,
		fmt.Sprintf("floor: %d APIKey creates (%d parallel), each followed by a Secret create and a status patch (%d workers, the manager's identity, %s)",
			f.keys, createWorkers, f.concurrency, qpsText(f.qps, f.burst)),
		ratioCell, target, met)
}

// roundRatios is each round's reconcile ÷ floor, in order, the last round's (rc
// over f) last.
func (r *report) roundRatios(rc reconcileRun, f *floorRun) []float64 {
	var ratios []float64
	for _, round := range r.roundsEndingWith(rc, f) {
		ratios = append(ratios, round.ratio())
	}
	return ratios
}

// roundsEndingWith is the rounds before the last, then the last: f and rc.
func (r *report) roundsEndingWith(rc reconcileRun, f *floorRun) []floorRound {
	return append(slices.Clone(r.floorRounds), floorRound{floor: f, reconcile: rc})
}

// median is the middle value of values (the mean of the middle two for an even count).
func median(values []float64) float64 {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// memoryRows renders what each process holds per APIKey at each key count (the
// heap after a forced GC above its baseline's; envelope.go), with its RSS beside it.
func (r *report) memoryRows(add func(...string)) {
	if len(r.memory) == 0 || r.memory[0].keys != 0 {
		return
	}
	base := r.memory[0]
	for _, m := range r.memory[1:] {
		for _, proc := range envelopeProcesses {
			heap, baseHeap := m.heap[proc.key], base.heap[proc.key]
			result, met := "n/a", "—"
			if heap > 0 && baseHeap > 0 {
				perKey := float64(heap-baseHeap) / float64(m.keys)
				result = fmt.Sprintf("%.0f bytes/key (%s after GC, %s with no keys)", perKey, mib(heap), mib(baseHeap))
				if proc.targetPerKey > 0 {
					met = yesNo(perKey <= proc.targetPerKey)
				}
			}
			reference := "—"
			if rss, baseRSS := proc.rss(m), proc.rss(base); rss > 0 {
				reference = fmt.Sprintf("RSS %s", mib(rss))
				if baseRSS > 0 {
					reference += fmt.Sprintf(" (%.0f bytes/key above %s)", float64(rss-baseRSS)/float64(m.keys), mib(baseRSS))
				}
			}
			target := "(no target)"
			if proc.targetPerKey > 0 {
				target = fmt.Sprintf("≤ %.0f KiB/key", proc.targetPerKey/1024)
			}
			add(fmt.Sprintf("5. %s: heap per APIKey after a GC, %d APIKeys", proc.name, m.keys), result, reference, "—", target, met)
		}
		if m.etcdInUse > 0 && base.etcdInUse > 0 {
			add(fmt.Sprintf("5. etcd: database in use per APIKey, %d APIKeys", m.keys),
				fmt.Sprintf("%.0f bytes/key (%s)", float64(m.etcdInUse-base.etcdInUse)/float64(m.keys), mib(m.etcdInUse)),
				fmt.Sprintf("no keys: %s", mib(base.etcdInUse)), "—", "(no target)", "—")
		}
	}
}

// envelopeProcesses are the processes whose memory the envelope reports.
var envelopeProcesses = []struct {
	name, key    string
	targetPerKey float64
	rss          func(memoryPoint) int64
}{
	{"Token server", "tokenServer", targetBytesPerKey, func(m memoryPoint) int64 { return m.tokenServer }},
	{"Authorizer", "authz", targetBytesPerKey, func(m memoryPoint) int64 { return m.authzRSS }},
	{"Manager", "manager", targetBytesPerKey, func(m memoryPoint) int64 { return m.manager }},
	{"kube-apiserver", "apiserver", 0, func(m memoryPoint) int64 { return m.apiserver }},
}

func qpsText(qps float64, burst int) string {
	if qps < 0 {
		return "no client-side QPS limit"
	}
	return fmt.Sprintf("client-side QPS %g, burst %d", qps, burst)
}

// environment is what the report says about the run besides its figures: the
// command, when it ended, the machine and the build. A run reads it when it writes
// the report (readEnvironment); the golden test gives a fixed one.
type environment struct {
	command   string
	finished  time.Time // the run took finished - report.started
	cpu       string    // the CPU model
	cores     int
	goVersion string // "go1.N os/arch"
	kernel    string
	commit    string
}

// readEnvironment reads this run's environment, now, but for the commit: the
// one of the build measured, read as the run began (newReport).
func readEnvironment(commit string) environment {
	return environment{command: command(), finished: time.Now(), cpu: cpuModel(), cores: runtime.NumCPU(),
		goVersion: fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH), kernel: kernel(), commit: commit}
}

// write renders the report and writes it to path.
func (r *report) write(path string) error {
	text := r.markdown(readEnvironment(r.commit))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil && filepath.Dir(path) != "." {
		return err
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// markdown renders BENCHMARKS.md from the report's figures and the run's environment.
func (r *report) markdown(env environment) string {
	r.build()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Benchmarks\n\n")
	p("Written by `make bench` (test/bench): a local control plane (etcd and kube-apiserver built by hack/envtest.sh), ")
	p("the manager and the token server as processes, and a load generator, all on this machine. ")
	p("The token server (and, for its rows, the edge authorizer) runs on core %s (taskset, GOMAXPROCS=1); the load generator and the signing reference's peer on core %s; ", r.s.serverCPU, r.s.loadCPU)
	p("%d keep-alive connections in a closed loop (each sends its next request when the previous response arrives), ", r.s.connections)
	p("%s of warm-up then %s measured per load. ", r.s.warmup, r.s.duration)
	p("During the load and revocation measurements the control plane, the manager and the benchmark itself are confined to the load core (the first two at the lowest priority, nice 19, under load, and at normal priority for the revocations, which they carry), so that nothing else runs on the token server's core and the load generator comes first on its own; ")
	p("they use every core for the reconcile measurement. ")
	p("The API keys of the introspection and authorizer loads are each used once and their status.lastUsedAt written (the first use of a key in an hour is a PATCH) before the first of those loads: the loads measure keys already used this hour, and the API server does not carry a burst of those writes on the load core during them.\n\n")
	p("| | |\n|---|---|\n")
	p("| Command | `%s` |\n", env.command)
	p("| Size | %s |\n", r.s.size)
	if len(r.s.managerArgs) > 0 {
		p("| Manager flags added | `%s` |\n", strings.Join(r.s.managerArgs, " "))
	}
	p("| Date | %s (run took %s) |\n", r.started.UTC().Format("2006-01-02 15:04 MST"), env.finished.Sub(r.started).Round(time.Second))
	p("| CPU | %s, %d cores |\n", env.cpu, env.cores)
	p("| Go | %s |\n", env.goVersion)
	p("| Kernel | %s |\n", env.kernel)
	p("| Commit | %s |\n\n", env.commit)

	p("## Results\n\n")
	p("Ratios compare a figure with a reference measured in the same run on the same core, so they hold across machines better than the absolute numbers. ")
	p("An HTTP row's reference is the floor of its own request shape: the same requests, path aside, answered by a no-op in the same process (`--benchmark-floor`: the body read and the form parsed, then the same status, headers and body as the real answer), ")
	p("combined where the row has unavoidable work with that work done raw on the same core: 1/(1/floor + 1/raw). ")
	p("Where the row says so, the ratio is of the row and its floor interleaved on the same connections in slices of %.1f s (the row's requests in one, the floor's in the next), because this machine's speed drifts by tens of percent within minutes and two loads one after the other measure that drift as a difference; ", sliceOf(r.s.duration).Seconds())
	p("the server's CPU is read at each slice's beginning and end and charged to that slice's side. A row whose target combines its floor with a raw rate (a signature, two SHA-256) has, where it says so, a third slice of %.1f s after each pair, in which the load sends nothing and the raw work runs on the server's core, timed once the server has answered the requests still in flight: its raw rate is measured between the row's slices, not minutes before them at another speed of the machine. Beside such a ratio stand the lowest and the highest of the same ratio in one pair of slices (each pair's row against that pair's floor, and raw rate): how far the machine moved it within one run. The loads alone, one after the other, are the profiled ones, reported beside it. ", rawSlice.Seconds())
	p("A row with unavoidable work is also interleaved with the working floor: the same no-op doing that work (the same signature or SHA-256s, by the code that measures the raw rate) in its own handler before it answers. 1/(1/floor + 1/raw) assumes the work adds its raw cost and nothing more; the working floor shows what a request that does the work and nothing else reaches on this machine, where a slower answer also costs more elsewhere (the write that wakes the load generator's idle core costs more, per request, the longer that core idled). The targets stay those of 1/(1/floor + 1/raw).\n\n")
	var together []string
	if slices.ContainsFunc(r.tokens, func(t tokenRun) bool { return t.together != nil }) {
		together = append(together, "token issuance")
	}
	if in := r.introspection; in != nil && in.together != nil {
		together = append(together, "introspection")
	}
	if a := r.authz; a != nil && a.forwardTogether != nil {
		together = append(together, "forward-auth")
	}
	if a := r.authz; a != nil && a.limitedTogether != nil {
		together = append(together, "forward-auth with a rate limit, whose floor is the same check without one")
	}
	if len(together) > 0 {
		p("Rows also measured together with their floor (%s): two fresh servers of this build (token servers, authorizers) on the server core at the same time, one answering the row and one the floor, each in a cgroup with the same CPU weight so that the scheduler splits the core evenly, and each read per CPU-second of its own (to the nanosecond, from the scheduler's count) in windows of %.1f s; the two sides then share the machine's speed millisecond by millisecond, where interleaved slices share only its drift over minutes, and the same measurement with both servers answering the row (A/A) shows what is left of the noise. With profiling on, both servers are profiled over the same seconds. Such a row is judged by its together ratio where its A/A reads within ±%.0f%% of 100%% on the whole and within ±%.0f%% in every window, and otherwise by the one measured interleaved (or alone, where the row says so); its Ratio cell names both, and why the together one was not used.\n\n",
			strings.Join(together, ", "), sliceOf(r.s.duration).Seconds(), 100*togetherAAMean, 100*togetherAAWindow)
	}
	p("| Measure | Result | Reference (same run) | Ratio | Target | Met |\n|---|---|---|---|---|---|\n")
	for _, row := range r.rows {
		p("| %s |\n", strings.Join(row, " | "))
	}

	p("\n## Details\n\n")
	if len(r.tokens) > 0 {
		p("### Token endpoint and references per algorithm\n\n")
		p("| Algorithm | Raw signing alone, before the loads (1 goroutine) | /healthz | Tokens | p50 | p99 | max | Little's law: %d ÷ rate |\n|---|---|---|---|---|---|---|---|\n", r.s.connections)
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
		writeCPU(p, rc.cpu, rc.total)
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
	if r.floor != nil {
		r.writeFloor(p)
	}
	if len(r.memory) > 0 {
		r.writeEnvelope(p)
	}
	if r.coldStartProfile != nil {
		r.writeColdStartProfile(p)
	}
	if r.lastUsed != nil {
		r.writeLastUsed(p)
	}
	if r.authz != nil {
		r.writeAuthz(p)
	}
	r.writeBeforeAfter(p)
	r.writeProfiles(p)
	if len(r.revocations.apiKeys) > 0 {
		p("### Revocation\n\nEach revocation: a poller sends the revoked credential's request every millisecond on one keep-alive connection; ")
		p("the latency runs from sending the merge patch `{\"spec\":{\"revoked\":true}}` to receiving the first refusal, ")
		p("so it includes the API server's own write and slightly overstates the time from acceptance.\n\n")
	}
	return b.String()
}

// writeFloor details the reconcile floor.
func (r *report) writeFloor(p func(string, ...any)) {
	f := r.floor
	p("### Reconcile floor: %d APIKeys\n\n", f.keys)
	p("The API writes the manager makes for new APIKeys, made by a bare client with the manager stopped (test/bench/floor.go says why): ")
	p("%d APIKey creates by the benchmark (%d parallel, as in the reconcile measurement); for each created key, with the manager's identity, ", f.keys, createWorkers)
	p("%d workers (its --concurrency) and %s (its --kube-api-qps, --kube-api-burst), ", f.concurrency, qpsText(f.qps, f.burst))
	p("a Secret create and a status merge patch with an optimistic lock, as the manager writes them. ")
	p("It ends, like the reconcile, when the benchmark's watch sees every key Ready. ")
	p("The manager's reads and any Event it records are not in the floor: the ratio charges them to the manager.\n\n")
	p("| | Floor | Manager |\n|---|---|---|\n")
	if len(r.reconcile) > 0 && r.reconcile[0].keys == f.keys {
		rc := r.reconcile[0]
		p("| APIKey creates done | %.1f s | %.1f s |\n", f.created.Seconds(), rc.created.Seconds())
		p("| Every key Ready | %.1f s | %.1f s |\n", f.total.Seconds(), rc.total.Seconds())
	}
	p("| Last status patch answered | %.1f s | |\n", f.written.Seconds())
	p("| One Secret (JSON, without managedFields) | %d bytes | %s |\n", f.secretBytes, bytesOrNA(f.managerSecretBytes))
	p("| One status (JSON) | %d bytes | %s |\n", f.statusBytes, bytesOrNA(f.managerStatusBytes))
	p("\nThe floor's objects were deleted in %.1f s, before the manager started again.\n\n", f.cleanup.Seconds())
	if len(r.floorRounds) > 0 && len(r.reconcile) > 0 && r.reconcile[0].keys == f.keys {
		p("The floor and the reconcile, in rounds: each round a floor, then the manager started again and a reconcile of as many keys (the rounds before the last in a namespace of their own, whose APIKeys and Secrets are then deleted with the manager stopped, Secrets first, as the floor's are). The table above is the last round's; the row is the median of the rounds' ratios, each round's reconcile over the floor measured right before it.\n\n")
		p("| Round | Floor: every key Ready | Reconcile: every key Ready | Reconcile ÷ floor |\n|---|---|---|---|\n")
		for i, round := range r.roundsEndingWith(r.reconcile[0], f) {
			p("| %d | %.1f s | %.1f s | %.2f× |\n", i+1, round.floor.total.Seconds(), round.reconcile.total.Seconds(), round.ratio())
		}
		p("\n")
	}
	if len(f.cpu) > 0 {
		p("CPU seconds used during the floor (the benchmark's process makes the manager's writes here):\n\n")
		writeCPU(p, f.cpu, f.total)
		p("\n")
	}
}

func bytesOrNA(n int) string {
	if n == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d bytes", n)
}

// writeCPU renders CPU seconds per process over a wall time, largest first.
func writeCPU(p func(string, ...any), cpu map[string]float64, wall time.Duration) {
	p("| Process | CPU seconds | Share of the wall time |\n|---|---|---|\n")
	names := make([]string, 0, len(cpu))
	for n := range cpu {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return cpu[names[i]] > cpu[names[j]] })
	for _, n := range names {
		p("| %s | %.1f | %.0f%% |\n", n, cpu[n], 100*cpu[n]/wall.Seconds())
	}
}

// writeColdStartProfile is "Where cold start goes".
func (r *report) writeColdStartProfile(p func(string, ...any)) {
	c := r.coldStartProfile
	p("### Where cold start goes\n\n")
	for _, run := range r.coldStarts {
		if run.keys == c.keys {
			sorted := slices.Clone(run.times)
			slices.Sort(sorted)
			p("Cold start at %d APIKeys: median %s, max %s. ", c.keys, ms(sorted[len(sorted)/2]), ms(sorted[len(sorted)-1]))
			if c.keys == 100_000 {
				p("Target < 3 s at 100,000: **%s**.", map[bool]string{true: "met", false: "not met"}[sorted[len(sorted)-1] < targetColdStart])
			} else {
				p("The target < 3 s at 100,000 is measured by the full run only.")
			}
			p("\n\n")
		}
	}
	if c.listErr == "" {
		l := c.list
		p("A plain LIST of the same %d APIKeys with the token server's identity (`resourceVersion=0`: from the API server's watch cache), ", l.Items)
		p("by a child on the token server's core (GOMAXPROCS=1), read whole, then decoded with the standard codec into typed APIKeys. ")
		p("It lists gzipped (as the token server does: a Kubernetes client's default, `--kube-api-compression`) and uncompressed (`--kube-api-compression=false`), %d times each way in turn (medians): ", listRounds)
		p("what compression costs on the API server's side and on the client's. A token server that decodes as the bytes arrive overlaps the transfer and the decoding: this says what each costs, not how they add up.\n\n")
		p("| Phase | Gzipped (the token server's) | Uncompressed |\n|---|---|---|\n")
		p("| Request to the first byte (the API server's work before it sends) | %s | %s |\n", ms(l.FirstByte), ms(l.PlainFirstByte))
		p("| First to last byte | %s (%.1f MiB) | %s (%.1f MiB, %.0f bytes per APIKey) |\n", ms(l.Transfer), float64(l.WireBytes)/(1<<20),
			ms(l.PlainTransfer), float64(l.Bytes)/(1<<20), float64(l.Bytes)/float64(max(1, l.Items)))
		p("| Inflating the body | %s | — |\n", ms(l.Inflate))
		p("| Decoding into typed APIKeys | %s | the same |\n", ms(l.Decode))
		if c.ready > 0 {
			p("| The profiled start, process start to ready | %s | |\n", ms(c.ready))
		}
		p("\n")
	} else {
		p("The LIST split failed: %s\n\n", c.listErr)
	}
	if c.cum == "" {
		p("No startup CPU profile: %s.\n\n", c.missing)
		return
	}
	p("CPU profile of one more start (`--startup-cpu-profile`: process start until the caches synced; not among the timed starts). ")
	p("%s: the samples are the time the process spent on a CPU, the rest of the start it waited (mostly on the API server).\n\n", c.summary)
	p("By cumulative time (`go tool pprof -top -cum`):\n\n```\n%s\n```\n\nBy own time (`go tool pprof -top`):\n\n```\n%s\n```\n\n", c.cum, c.flat)
}

// writeLastUsed details the last-use write budget.
func (r *report) writeLastUsed(p func(string, ...any)) {
	u := r.lastUsed
	p("### Last-use write budget\n\n")
	p("Two token servers with `%s`: replica A on core %s, replica B on core %s beside the load generator. ", strings.Join(u.flags, " "), r.s.serverCPU, r.s.loadCPU)
	p("Each introspected the same %d API keys (none used before) for %s, each key through each replica about once a second ", u.keys, u.window.Round(time.Second))
	p("(%d introspections in all); the window touched %s, and every key was used in each. ", u.requests, buckets(u.buckets))
	p("After the load, the benchmark waited until every key showed a use in the last bucket and the counters stopped moving.\n\n")
	p("| Counter over the window | Replica A | Replica B | Total | Per key per bucket |\n|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		v    [2]reading
	}{{"`latchkey_tokenserver_last_used_writes_total{kind=\"APIKey\"}`", u.writes}, {"`latchkey_tokenserver_last_used_skipped_total{kind=\"APIKey\"}`", u.skipped}} {
		total := reading{value: row.v[0].value + row.v[1].value, ok: row.v[0].ok && row.v[1].ok}
		p("| %s | %s | %s | %s | %s |\n", row.name, row.v[0], row.v[1], total, perKeyBucket(u, total))
	}
	p("| API server `apiserver_request_total{verb=\"PATCH\",resource=\"apikeys\",subresource=\"status\"}` | | | %s | %s |\n", u.patches, perKeyBucket(u, u.patches))
	p("| Watch: `status.lastUsedAt` changes of these keys | | | %d | %.2f |\n", u.changes, u.perKeyPerBucket(float64(u.changes)))
	p("| Watch: MODIFIED events of these keys | | | %d | %.2f |\n", u.modified, u.perKeyPerBucket(float64(u.modified)))
	perBucket := u.perKeyPerBucket(float64(u.changes))
	p("\nDerivation: at the default granularity of 1h a bucket is an hour, and a key used at all in an hour is used in its bucket, ")
	p("so writes per 1,000 active keys per hour = changes per key per bucket × 1,000 = %.2f × 1,000 = %.0f. ", perBucket, 1000*perBucket)
	p("PATCHes beyond the changes changed nothing: both replicas wrote the same bucket before either saw the other's write, ")
	p("and the API server answered the second as a no-op, a request without an etcd write or a watch event.\n\n")
	if u.oldFlags {
		p("This build has no `--last-used-granularity`: the replicas ran the old per-object minimum interval instead, so this is the old behaviour.\n\n")
	}
}

// buckets is "1 one-minute bucket" or "n one-minute buckets".
func buckets(n int) string {
	if n == 1 {
		return "1 one-minute bucket"
	}
	return fmt.Sprintf("%d one-minute buckets", n)
}

func perKeyBucket(u *lastUsedRun, r reading) string {
	if !r.ok {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", u.perKeyPerBucket(r.value))
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
