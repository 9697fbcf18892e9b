package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	toolscache "k8s.io/client-go/tools/cache"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// The last-use write budget: how many API writes recording status.lastUsedAt cost
// per active API key. Two token servers (replicas behind one Service, as deployed)
// introspect the same K API keys, each key through each replica about once a
// second, with a 1-minute granularity and a 1-second flush instead of the defaults
// (1h, 10s), so that a short run crosses bucket boundaries. Replica A runs on the
// server core; replica B shares the load core with the load generator (GOMAXPROCS=1
// each): what is counted here is writes, not throughput.
//
// Every key is used in every bucket the window touches (the window starts at least
// 5 s before a boundary and ends at least 5 s after one), so the ideal is one status
// change per key per bucket whatever the number of replicas: at the default 1h
// granularity, 1,000 writes per hour per 1,000 active keys.

const (
	lastUsedGranularity = time.Minute // the flags below say the same
	lastUsedFlush       = time.Second
	lastUsedMargin      = 5 * time.Second // of the window from a bucket boundary
	lastUsedConnections = 4               // per replica
)

type lastUsedRun struct {
	keys, buckets int
	window        time.Duration
	flags         []string // the replicas' last-use flags
	oldFlags      bool     // this build has no --last-used-granularity; its --last-used-min-interval ran
	requests      int      // introspections answered, both replicas
	// writes and skipped per replica (latchkey_tokenserver_last_used_{writes,skipped}_total{kind="APIKey"}),
	// and the API server's PATCH apikeys/status requests: differences over the window.
	writes, skipped [2]reading
	patches         reading
	// From the benchmark's watch of the keys: status.lastUsedAt changes, and MODIFIED events.
	changes, modified int
}

func (r lastUsedRun) perKeyPerBucket(n float64) float64 { return n / float64(r.keys*r.buckets) }

// lastUsed runs the last-use write budget measurement.
func (b *bench) lastUsed(ctx context.Context) error {
	if err := b.confine(allCPUs(), "0"); err != nil {
		return err
	}
	run := lastUsedRun{keys: b.s.lastUsedKeys}
	run.flags, run.oldFlags = lastUsedFlags()
	b.server.stop() // the replicas take its place; the next step that needs one starts it
	b.server = nil
	replicas, err := b.startReplicas(ctx, run.flags)
	defer func() {
		for _, r := range replicas {
			r.p.stop()
		}
	}()
	if err != nil {
		return err
	}
	first := b.s.revocations + b.s.introspected // keys no earlier step used: their lastUsedAt is empty
	names := map[string]bool{}
	var requests []string
	for i := first; i < first+run.keys; i++ {
		names[keyName(i)] = true
		key, err := b.c.secretData(ctx, keyName(i)+"-apikey", latchkeyv1.APIKeySecretKey)
		if err != nil {
			return err
		}
		requests = append(requests, b.request(http.MethodPost, "/oauth2/introspect", url.Values{"token": {key}}.Encode(), basicAuth(b.clients[i%loadClients])))
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := b.watchLastUse(watchCtx, names)
	if err != nil {
		return err
	}

	// Start at least lastUsedMargin before a boundary, end at least as long after one.
	now := time.Now()
	if left := now.Truncate(lastUsedGranularity).Add(lastUsedGranularity).Sub(now); left < lastUsedMargin {
		if err := sleep(ctx, left); err != nil {
			return err
		}
	}
	before, err := b.lastUseCounters(ctx, replicas)
	if err != nil {
		return err
	}
	begin := time.Now()
	end := begin.Add(b.s.lastUsedWindow)
	if into := end.Sub(end.Truncate(lastUsedGranularity)); into < lastUsedMargin && end.Sub(begin) > into {
		end = end.Add(lastUsedMargin - into)
	}
	run.window = end.Sub(begin)
	run.buckets = int(end.Truncate(lastUsedGranularity).Sub(begin.Truncate(lastUsedGranularity))/lastUsedGranularity) + 1
	logf("  %d keys through 2 replicas for %s (%s)", run.keys, run.window.Round(time.Second), buckets(run.buckets))
	if run.requests, err = b.lastUseLoad(ctx, replicas, requests, run.window); err != nil {
		return err
	}

	// Every key was used in the last bucket: wait until each shows it, then until the counters settle.
	if err := watch.waitAll(ctx, end.Truncate(lastUsedGranularity), 3*time.Minute); err != nil {
		return err
	}
	after, err := b.settledCounters(ctx, replicas, time.Minute)
	if err != nil {
		return err
	}
	for i := range 2 {
		run.writes[i], run.skipped[i] = after[2*i].minus(before[2*i]), after[2*i+1].minus(before[2*i+1])
	}
	run.patches = after[4].minus(before[4])
	run.changes, run.modified = watch.counts()
	b.report.lastUsed = &run
	logf("  %d lastUsedAt changes (%.2f per key per bucket); API server PATCH apikeys/status %s; replica writes %s + %s, skipped %s + %s",
		run.changes, run.perKeyPerBucket(float64(run.changes)), run.patches, run.writes[0], run.writes[1], run.skipped[0], run.skipped[1])
	return nil
}

// lastUsedFlags are the replicas' flags: a 1-minute granularity, or, in a build
// without it, the old per-object minimum interval of one minute.
func lastUsedFlags() ([]string, bool) {
	flags := []string{"--last-used-flush-interval=1s"}
	if hasFlag("tokenserver", "last-used-granularity") {
		return append(flags, "--last-used-granularity=1m"), false
	}
	return append(flags, "--last-used-min-interval=1m"), true
}

// replica is one of the two token servers of the measurement.
type replica struct {
	p               *process
	listen, metrics string // its API address and its /metrics URL
}

// startReplicas starts replica A on the token server's address and core and
// replica B on a free address and the load core, each with a metrics listener.
func (b *bench) startReplicas(ctx context.Context, flags []string) ([]replica, error) {
	var replicas []replica
	for i, cpu := range []string{b.s.serverCPU, b.s.loadCPU} {
		r := replica{listen: b.c.tokenAddr}
		if i > 0 {
			r.listen, _ = testenv.FreeAddr()
		}
		metricsAddr, err := testenv.FreeAddr()
		if err != nil {
			return replicas, err
		}
		r.metrics = "http://" + metricsAddr + "/metrics"
		if r.p, _, err = b.c.tokenServerWith(ctx, tokenServerOptions{name: fmt.Sprintf("tokenserver-lastused-%c", 'a'+i),
			listen: r.listen, alg: "RS256", cpu: cpu, metricsAddr: metricsAddr, extra: flags}); err != nil {
			return replicas, err
		}
		replicas = append(replicas, r)
	}
	return replicas, nil
}

// lastUseLoad introspects requests through both replicas at once, paced so that
// each key reaches each replica about once a second, and returns the answers.
func (b *bench) lastUseLoad(ctx context.Context, replicas []replica, requests []string, d time.Duration) (int, error) {
	var wg sync.WaitGroup
	results := make([]loadResult, len(replicas))
	errs := make([]error, len(replicas))
	for i, r := range replicas {
		job := loadJob{Addr: r.listen, Connections: lastUsedConnections, Duration: d, Rate: float64(len(requests)),
			ExpectStatus: http.StatusOK, ExpectBody: `"active":true`}
		for _, req := range requests {
			job.Requests = append(job.Requests, []byte(req))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = runChild(ctx, "load", b.s.loadCPU, job, &results[i])
		}()
	}
	wg.Wait()
	total := 0
	for i, res := range results {
		if errs[i] != nil {
			return 0, errs[i]
		}
		if res.Errors > 0 {
			return 0, fmt.Errorf("replica %c: %d failed introspections; first: %s", 'a'+i, res.Errors, res.FirstError)
		}
		total += res.Requests
	}
	return total, nil
}

// lastUseCounters reads, in order: writes and skipped of replica A, of replica B,
// and the API server's PATCH apikeys/status requests.
func (b *bench) lastUseCounters(ctx context.Context, replicas []replica) ([]reading, error) {
	var out []reading
	apiKey := map[string]string{"kind": "APIKey"}
	for _, rep := range replicas {
		r, err := scrape(ctx, http.DefaultClient, rep.metrics,
			sample{"latchkey_tokenserver_last_used_writes_total", apiKey},
			sample{"latchkey_tokenserver_last_used_skipped_total", apiKey})
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	r, err := b.c.apiserverMetrics(ctx, sample{"apiserver_request_total",
		map[string]string{"verb": "PATCH", "resource": "apikeys", "subresource": "status"}})
	if err != nil {
		return nil, err
	}
	return append(out, r...), nil
}

// settledCounters reads the counters every second until three reads in a row
// agree: the replicas have nothing left to write.
func (b *bench) settledCounters(ctx context.Context, replicas []replica, timeout time.Duration) ([]reading, error) {
	deadline := time.Now().Add(timeout)
	var last []reading
	same := 0
	for {
		now, err := b.lastUseCounters(ctx, replicas)
		if err != nil {
			return nil, err
		}
		if equalReadings(now, last) {
			if same++; same == 2 {
				return now, nil
			}
		} else {
			same = 0
		}
		last = now
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("last-use counters still moving after %s", timeout)
		}
		if err := sleep(ctx, lastUsedFlush); err != nil {
			return nil, err
		}
	}
}

func equalReadings(a, b []reading) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// minus is the increase of a counter since before. A counter vector shows no
// family until its first sample, so one missing before counts as 0 so far.
func (r reading) minus(before reading) reading {
	return reading{value: r.value - before.value, ok: r.ok}
}

func (r reading) String() string {
	if !r.ok {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", r.value)
}

// lastUseWatch follows status.lastUsedAt of a set of APIKeys from a watch cache.
type lastUseWatch struct {
	names map[string]bool

	mu                sync.Mutex
	latest            map[string]time.Time // zero: never used
	changes, modified int
}

func (b *bench) watchLastUse(ctx context.Context, names map[string]bool) (*lastUseWatch, error) {
	informer, err := b.c.informer(ctx, benchNamespace, &latchkeyv1.APIKey{})
	if err != nil {
		return nil, err
	}
	w := &lastUseWatch{names: names, latest: map[string]time.Time{}}
	return w, watchHandler(ctx, informer, toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if key, ok := o.(*latchkeyv1.APIKey); ok && names[key.Name] {
				w.mu.Lock()
				defer w.mu.Unlock()
				w.latest[key.Name] = lastUsedAt(key)
			}
		},
		UpdateFunc: func(o, n any) {
			old, ok1 := o.(*latchkeyv1.APIKey)
			key, ok2 := n.(*latchkeyv1.APIKey)
			if !ok1 || !ok2 || !names[key.Name] {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if old.ResourceVersion != key.ResourceVersion {
				w.modified++
			}
			if !lastUsedAt(old).Equal(lastUsedAt(key)) {
				w.changes++
				w.latest[key.Name] = lastUsedAt(key)
			}
		},
	})
}

func lastUsedAt(key *latchkeyv1.APIKey) time.Time {
	if t := key.Status.LastUsedAt; t != nil {
		return t.Time
	}
	return time.Time{}
}

func (w *lastUseWatch) counts() (changes, modified int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changes, w.modified
}

// waitAll waits until every key's lastUsedAt is at or after bucket.
func (w *lastUseWatch) waitAll(ctx context.Context, bucket time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		behind := 0
		w.mu.Lock()
		for name := range w.names {
			if w.latest[name].Before(bucket) {
				behind++
			}
		}
		w.mu.Unlock()
		if behind == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d keys do not show a use in the bucket of %s after %s", behind, len(w.names), bucket.Format("15:04"), timeout)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// runLastUsedGranularity is --last-used-granularity of the run's token server
// and authorizer: the default.
const runLastUsedGranularity = time.Hour

// usedThisPeriod uses each key named once (use(i) for names[i]) and waits until
// every one's status.lastUsedAt shows the current period, before the measured
// loads that cycle through them. A key's first use in a period is written to its
// status: for the 1000 keys of a load, 1000 PATCHes at the data plane's client
// limit (--kube-api-qps 50), 20 s of writes that the API server, confined to the
// load core beside the load generator, would carry during the first measured
// loads. Those loads measure keys already used this period, the steady state;
// the writes have a measurement of their own (the last-use write budget).
func (b *bench) usedThisPeriod(ctx context.Context, names []string, use func(i int) error) error {
	set := make(map[string]bool, len(names))
	for _, name := range names {
		set[name] = true
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	watch, err := b.watchLastUse(watchCtx, set)
	if err != nil {
		return err
	}
	// The next period would bring the writes back during the loads: start them
	// in it instead, if it begins before a step's loads are done.
	if left := time.Until(time.Now().Truncate(runLastUsedGranularity).Add(runLastUsedGranularity)); left < b.stepLoads() {
		logf("  the hour ends in %s, within this step's loads: waiting for it", left.Round(time.Second))
		if err := sleep(ctx, left+time.Second); err != nil {
			return err
		}
	}
	period := time.Now().Truncate(runLastUsedGranularity)
	for i := range names {
		if err := use(i); err != nil {
			return fmt.Errorf("using %s before the loads: %w", names[i], err)
		}
	}
	start := time.Now()
	if err := watch.waitAll(ctx, period, 2*time.Minute); err != nil {
		return err
	}
	logf("  %d keys used once; every status.lastUsedAt showed it %s later", len(names), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// stepLoads bounds the time the introspection or authorizer step spends in its
// loads after usedThisPeriod: at most 14 loads, their before/after pairs included.
func (b *bench) stepLoads() time.Duration {
	return 14 * (b.s.warmup + b.s.duration)
}
