package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/serve"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// clientCredentials is one OAuthClient's id and secret, read from its Secret.
type clientCredentials struct{ name, id, secret string }

// bench holds the state of one run.
type bench struct {
	s       settings
	c       *cluster
	report  *report
	clients []clientCredentials // loadClients of them
	server  *process            // the running token server
	// pprofAddr is the token server's /debug/pprof address when profiling.
	pprofAddr string
	alg       string // its algorithm
}

func run(ctx context.Context, s settings) error {
	dir, err := os.MkdirTemp("", "latchkey-bench-")
	if err != nil {
		return err
	}
	if s.keepWorkDir {
		logf("work directory (kept): %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if s.profileDir != "" {
		if err := os.MkdirAll(s.profileDir, 0o755); err != nil {
			return err
		}
	}
	b := &bench{s: s, report: newReport(s)}
	if b.runs("introspection") {
		if err := canShareCore(); err != nil { // before minutes of setup, not after
			return fmt.Errorf("introspection measures two token servers together: %w", err)
		}
	}
	if s.before != "" {
		if b.s.before, b.report.beforeName, err = buildBefore(dir, s.before); err != nil {
			return err
		}
	}
	// pprof is always on: the envelope reads each process's heap after a GC there.
	if b.pprofAddr, err = testenv.FreeAddr(); err != nil {
		return err
	}

	logf("starting the control plane and the manager")
	b.c, err = startCluster(ctx, dir, true, s.managerArgs)
	defer func() { b.server.stop(); b.c.stop() }()
	if err != nil {
		return err
	}

	steps := []struct {
		id, name string
		run      func(context.Context) error
	}{
		{"setup", "OAuthClients for the load and the revocations", b.createClients},
		{"setup", "memory with no APIKeys", b.baseline},
		{"floor", "reconcile floor: the manager's writes by a bare client", b.floor},
		{"setup", "reconcile throughput", b.reconcile},
		{"coldstart", "token server cold start", b.coldStart},
		{"tokens", "token issuance", b.tokenIssuance},
		{"introspection", "API key introspection", b.introspection},
		{"revocation", "revocation latency", b.revocation},
		{"leaks", "leaked keys: reported tokens checked, report → refusal", b.leaks},
		{"authz", "edge authorizer (latchkey authz)", b.edgeAuthz},
		{"lastused", "last-use write budget (two token servers)", b.lastUsed},
		{"scale", "memory at larger sizes", b.memoryAtScale},
	}
	for _, step := range steps {
		if !b.runs(step.id) {
			continue
		}
		logf("== %s", step.name)
		if err := step.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
	}
	if s.profileDir != "" {
		b.report.profiles = readProfiles(s.profileDir)
	}
	if err := b.report.write(s.out); err != nil {
		return err
	}
	logf("wrote %s", s.out)
	fmt.Println(b.report.summary())
	return nil
}

// runs reports whether the run includes the step with this id (setup always runs).
func (b *bench) runs(id string) bool {
	return id == "setup" || len(b.s.steps) == 0 || slices.Contains(b.s.steps, id)
}

// largestKeys is the largest APIKey count this run measures the token server at.
func (b *bench) largestKeys() int {
	if len(b.s.memoryKeys) > 0 && b.runs("scale") {
		return b.s.memoryKeys[len(b.s.memoryKeys)-1]
	}
	return b.s.keys
}

// createClients creates the OAuthClients the load uses plus one per client revocation.
func (b *bench) createClients(ctx context.Context) error {
	n := loadClients + b.s.revocations
	objs := make([]client.Object, n)
	for i := range n {
		objs[i] = &latchkeyv1.OAuthClient{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: clientName(i)},
			Spec: latchkeyv1.OAuthClientSpec{
				DisplayName: "benchmark client",
				Scopes:      []string{"leads:read", "leads:write"},
				Audiences:   []string{"https://api.bench.example"},
				// Each is also a resource server: the introspection load authenticates as one.
				Introspection: &latchkeyv1.IntrospectionPolicy{
					Audiences: []string{"https://api.bench.example"}, Scopes: []string{"leads:*"},
				},
			},
		}
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := b.c.watchReady(watchCtx, benchNamespace, &latchkeyv1.OAuthClient{})
	if err != nil {
		return err
	}
	if err := b.c.createParallel(ctx, objs, 16); err != nil {
		return err
	}
	if err := watch.waitCount(ctx, n, 2*time.Minute); err != nil {
		return err
	}
	for i := range n {
		name := clientName(i) + "-oauthclient"
		id, err := b.c.secretData(ctx, name, latchkeyv1.ClientIDSecretKey)
		if err != nil {
			return err
		}
		secret, err := b.c.secretData(ctx, name, latchkeyv1.ClientSecretSecretKey)
		if err != nil {
			return err
		}
		b.clients = append(b.clients, clientCredentials{name: clientName(i), id: id, secret: secret})
	}
	return nil
}

func clientName(i int) string { return fmt.Sprintf("client-%04d", i) }
func keyName(i int) string    { return fmt.Sprintf("key-%06d", i) }

// restartTokenServer replaces the running token server with one signing with alg.
func (b *bench) restartTokenServer(ctx context.Context, alg string) (time.Duration, error) {
	return b.restartTokenServerFrom(ctx, alg, "")
}

// restartTokenServerFrom is restartTokenServer with another build (-before), or
// bin/latchkey with its floor endpoints when binary is "".
func (b *bench) restartTokenServerFrom(ctx context.Context, alg, binary string) (time.Duration, error) {
	b.server.stop()
	b.server = nil
	pprofAddr := b.pprofAddr
	var extra []string
	if binary == "" {
		extra = append(extra, "--benchmark-floor")
	}
	p, ready, err := b.c.tokenServer(ctx, alg, b.s.serverCPU, pprofAddr, binary, extra...)
	if err != nil {
		return 0, err
	}
	b.server, b.alg = p, alg
	return ready, nil
}

// reconcile applies s.keys APIKeys at once and waits until every one is Ready with its Secret.
func (b *bench) reconcile(ctx context.Context) error {
	r, err := b.createKeys(ctx, 0, b.s.keys)
	if err != nil {
		return err
	}
	b.report.reconcile = append(b.report.reconcile, r)
	logf("  %d APIKeys Ready with Secrets in %s (created in %s)", r.keys, r.total.Round(time.Millisecond), r.created.Round(time.Millisecond))
	if f := b.report.floor; f != nil {
		logf("  reconcile ÷ floor: %.2f× (%s ÷ %s)", r.total.Seconds()/f.total.Seconds(), r.total.Round(time.Millisecond), f.total.Round(time.Millisecond))
	}
	return b.floorSizesOfManager(ctx)
}

// createKeys creates APIKeys from..to-1 and measures how long they take to be Ready.
func (b *bench) createKeys(ctx context.Context, from, to int) (reconcileRun, error) {
	return b.createKeysIn(ctx, benchNamespace, from, to)
}

// createKeysIn is createKeys in namespace.
func (b *bench) createKeysIn(ctx context.Context, namespace string, from, to int) (reconcileRun, error) {
	objs := make([]client.Object, 0, to-from)
	for i := from; i < to; i++ {
		objs = append(objs, apiKeyObject(namespace, i))
	}
	if err := b.confine(allCPUs(), "0"); err != nil {
		return reconcileRun{}, err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch() // its events would cost CPU in the measurements that follow
	watch, err := b.c.watchReady(watchCtx, namespace, &latchkeyv1.APIKey{})
	if err != nil {
		return reconcileRun{}, err
	}
	already := int(watch.count.Load())
	pids := childPIDs()
	cpuBefore := processCPU(pids, b.c.manager, b.server)
	metricsBefore, _ := b.c.managerMetrics(ctx)
	profile := b.profile(ctx, "http://"+b.c.pprofMgr, fmt.Sprintf("manager-reconcile-%d.pprof", to-from), 30*time.Second)
	apiserverProfile := b.apiserverProfile(ctx, fmt.Sprintf("kube-apiserver-reconcile-%d.pprof", to-from), 30*time.Second)

	begin := time.Now()
	if err := b.c.createParallel(ctx, objs, createWorkers); err != nil {
		return reconcileRun{}, err
	}
	created := time.Since(begin)
	if err := watch.waitCount(ctx, already+len(objs), 30*time.Minute); err != nil {
		return reconcileRun{}, err
	}
	total := time.Since(begin)
	profile()
	apiserverProfile()
	secrets, err := b.c.countSecrets(ctx, namespace)
	if err != nil {
		return reconcileRun{}, err
	}
	if secrets < to-b.revokedKeys() {
		return reconcileRun{}, fmt.Errorf("%d APIKeys are Ready but only %d Secrets exist", to, secrets)
	}
	metricsAfter, _ := b.c.managerMetrics(ctx)
	return reconcileRun{
		keys: len(objs), created: created, total: total,
		cpu: difference(processCPU(pids, b.c.manager, b.server), cpuBefore), metrics: difference(metricsAfter, metricsBefore),
	}, nil
}

// apiKeyObject is the benchmark's APIKey number i in namespace.
func apiKeyObject(namespace string, i int) *latchkeyv1.APIKey {
	env := latchkeyv1.EnvironmentLive
	if i%4 == 3 {
		env = latchkeyv1.EnvironmentTest
	}
	return &latchkeyv1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: keyName(i),
			Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%50)}},
		Spec: latchkeyv1.APIKeySpec{
			DisplayName: fmt.Sprintf("benchmark key %d", i),
			Environment: env,
			Scopes:      []string{"leads:read", "leads:write"},
		},
	}
}

// revokedKeys is how many APIKeys the revocation steps (token server and authorizer) revoked: their Secrets are gone.
func (b *bench) revokedKeys() int {
	n := 0
	if b.report.revocations.apiKeys != nil {
		n += b.s.revocations
	}
	if b.report.authz != nil {
		n += len(b.report.authz.revocations)
	}
	if b.report.leaks != nil {
		n += len(b.report.leaks.fromSend)
	}
	return n
}

// processCPU is the CPU time so far of each process of the run; manager and
// tokenServer may be nil (not running).
func processCPU(children map[string]int, manager, tokenServer *process) map[string]float64 {
	cpu := map[string]float64{"benchmark (creates, watch)": cpuSeconds(os.Getpid())}
	if manager != nil {
		cpu["manager"] = cpuSeconds(manager.cmd.Process.Pid)
	}
	if tokenServer != nil {
		cpu["token server (watching)"] = cpuSeconds(tokenServer.cmd.Process.Pid)
	}
	for name, pid := range children {
		switch name {
		case "etcd", "kube-apiserver":
			cpu[name] = cpuSeconds(pid)
		case "kube-controller-manager":
			cpu[name+" (garbage collector)"] = cpuSeconds(pid)
		}
	}
	return cpu
}

// difference is after minus before, per name (CPU seconds, metric samples).
func difference(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// coldStart restarts the token server s.coldStarts times with the keys in place.
func (b *bench) coldStart(ctx context.Context) error {
	var times []time.Duration
	for range b.s.coldStarts {
		ready, err := b.restartTokenServer(ctx, "RS256")
		if err != nil {
			return err
		}
		times = append(times, ready)
		logf("  ready %s after start (token server CPU %.2f s)", ready.Round(time.Millisecond), cpuSeconds(b.server.cmd.Process.Pid))
	}
	b.report.coldStarts = append(b.report.coldStarts, coldStartRun{keys: b.s.keys, times: times})
	if err := b.measureMemory(ctx, b.s.keys); err != nil {
		return err
	}
	if b.largestKeys() == b.s.keys {
		return b.profiledColdStart(ctx, b.s.keys)
	}
	return nil
}

// confine moves the control plane, the manager and the benchmark itself (every
// thread) onto cpus. The load measurements confine them to the load core at the
// lowest priority, so that nothing but the token server runs on its core and the
// load generator comes first on its own (the token server's lastUsedAt writes set
// the API server and the manager to work during the loads); the reconcile
// measurement gives them every core at normal priority.
func (b *bench) confine(cpus, niceness string) error {
	pids := []int{os.Getpid(), b.c.manager.cmd.Process.Pid}
	for name, pid := range childPIDs() {
		if name == "etcd" || name == "kube-apiserver" || name == "kube-controller-manager" {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset -a -p -c %s %d: %w: %s", cpus, pid, err, out)
		}
		if pid == os.Getpid() {
			continue // its children, the load generator among them, inherit its priority
		}
		// renice sets one thread; every thread of the process is under /proc/<pid>/task.
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			_ = exec.Command("renice", "-n", niceness, "-p", task.Name()).Run()
		}
	}
	return nil
}

func allCPUs() string { return fmt.Sprintf("0-%d", runtime.NumCPU()-1) }

// rawAround measures work raw on the server core right before and right after
// measure (each for a quarter of a load's time, at most 5 s): the reference of
// a together ratio at the machine's speed of those seconds, where the raw rate
// measured before the loads is minutes older, and how far that speed moved.
func (b *bench) rawAround(ctx context.Context, work serve.FloorWork, measure func() error) ([2]workResult, error) {
	var around [2]workResult
	job := workJob{Work: work, Duration: min(b.s.duration/4, 5*time.Second)}
	if err := runChild(ctx, "work", b.s.serverCPU, job, &around[0]); err != nil {
		return around, err
	}
	if err := measure(); err != nil {
		return around, err
	}
	if err := runChild(ctx, "work", b.s.serverCPU, job, &around[1]); err != nil {
		return around, err
	}
	logf("  raw work around the pair: %.0f and %.0f per CPU-second", around[0].perCPU(), around[1].perCPU())
	return around, nil
}

// tokenIssuance loads the token endpoint once per algorithm, after the raw
// signing reference and the /healthz reference on the same core.
func (b *bench) tokenIssuance(ctx context.Context) error {
	if err := b.confine(b.s.loadCPU, "19"); err != nil {
		return err
	}
	for _, alg := range b.s.algorithms {
		if _, err := b.restartTokenServer(ctx, alg); err != nil {
			return err
		}
		if err := b.checkTokenAlgorithm(alg); err != nil {
			return err
		}
		var sign workResult
		if err := runChild(ctx, "work", b.s.serverCPU, workJob{Work: signWork(alg), Duration: b.s.duration}, &sign); err != nil {
			return err
		}
		logf("  %s raw signing on core %s: %.0f/s, %.0f per CPU-second", alg, b.s.serverCPU, sign.Rate, sign.PerCPUSecond)
		health, err := b.load(ctx, "healthz-"+alg, []string{b.request(http.MethodGet, "/healthz", "", "")}, http.StatusOK, "ok")
		if err != nil {
			return err
		}
		var requests []string
		for _, c := range b.clients[:loadClients] {
			requests = append(requests, b.request(http.MethodPost, "/oauth2/token", "grant_type=client_credentials", basicAuth(c)))
		}
		run := tokenRun{alg: alg, sign: sign, healthz: health}
		if run.floor, run.load, run.paired, run.working, err = shapeLoads("token-"+alg, b.c.tokenAddr, requests, `"access_token":"`,
			signWork(alg), b.loader(ctx), b.pairedLoader(ctx)); err != nil {
			return err
		}
		// The row and its floor together on two fresh servers, with the raw work
		// right before and after, and the row on both (A/A).
		if run.togetherRaw, err = b.rawAround(ctx, signWork(alg), func() (err error) {
			run.together, err = b.togetherPair(ctx, "together-token-"+alg, requests, `"access_token":"`, theFloor(requests))
			return err
		}); err != nil {
			return err
		}
		if run.togetherAA, err = b.togetherPair(ctx, "together-aa-token-"+alg, requests, `"access_token":"`, theSame(requests, `"access_token":"`)); err != nil {
			return err
		}
		// The working floor together with the plain floor: whether signing in a
		// handler, on a core shared with another process, costs what it costs raw.
		// Its raw work is read around it too: the machine's speed a minute later is
		// not the row's.
		if run.togetherWorkingRaw, err = b.rawAround(ctx, signWork(alg), func() (err error) {
			run.togetherWorking, err = b.togetherWith(ctx, "together-working-token-"+alg, theWorkingFloor(requests, signWork(alg)), "", theFloor(requests))
			return err
		}); err != nil {
			return err
		}
		if b.s.before != "" {
			if run.beforePair, err = b.tokenServerPair(ctx, "before-token-"+alg, requests, `"access_token":"`, b.s.before); err != nil {
				return err
			}
			if run.togetherBefore, err = b.togetherBefore(ctx, "together-before-token-"+alg, requests, `"access_token":"`); err != nil {
				return err
			}
		}
		b.report.tokens = append(b.report.tokens, run)
	}
	return nil
}

// checkTokenAlgorithm gets one token and checks that its header names alg: the
// load below measures what it says it measures.
func (b *bench) checkTokenAlgorithm(alg string) error {
	token, err := b.accessToken(b.clients[0])
	if err != nil {
		return err
	}
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		return err
	}
	var h struct{ Alg string }
	if err := json.Unmarshal(header, &h); err != nil || h.Alg != alg {
		return fmt.Errorf("token signed with %q, want %s", h.Alg, alg)
	}
	return nil
}

// accessToken is a client_credentials token of client c from the running token server.
func (b *bench) accessToken(c clientCredentials) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, b.c.issuer+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		return "", fmt.Errorf("no access token (status %d)", resp.StatusCode)
	}
	return body.AccessToken, nil
}

// introspection loads /oauth2/introspect with s.introspected distinct API keys.
func (b *bench) introspection(ctx context.Context) error {
	if err := b.confine(b.s.loadCPU, "19"); err != nil {
		return err
	}
	var requests, names []string
	first := b.s.revocations // keys below are revoked later; these stay active
	for i := first; i < first+b.s.introspected; i++ {
		key, err := b.c.secretData(ctx, keyName(i)+"-apikey", latchkeyv1.APIKeySecretKey)
		if err != nil {
			return err
		}
		rs := b.clients[i%loadClients]
		requests = append(requests, b.request(http.MethodPost, "/oauth2/introspect", url.Values{"token": {key}}.Encode(), basicAuth(rs)))
		names = append(names, keyName(i))
	}
	if err := b.usedThisPeriod(ctx, names, func(i int) error {
		status, _, body, err := realAnswer(b.c.tokenAddr, []byte(requests[i]))
		if err == nil && (status != http.StatusOK || !strings.Contains(string(body), `"active":true`)) {
			err = fmt.Errorf("introspection answered %d", status)
		}
		return err
	}); err != nil {
		return err
	}
	health, err := b.load(ctx, "healthz-introspection", []string{b.request(http.MethodGet, "/healthz", "", "")}, http.StatusOK, "ok")
	if err != nil {
		return err
	}
	run := &introspectionRun{healthz: health, keys: b.s.keys}
	// The unavoidable work beyond the floor: a SHA-256 of the client secret and one of the key.
	key, _ := url.ParseQuery(requests[0][strings.Index(requests[0], "\r\n\r\n")+4:])
	hash := hashWork(b.clients[0].secret, key.Get("token"))
	if err := runChild(ctx, "work", b.s.serverCPU, workJob{Work: hash, Duration: b.s.duration}, &run.hash); err != nil {
		return err
	}
	logf("  raw SHA-256 of a client secret and of a key on core %s: %.0f pairs/s, %.0f per CPU-second", b.s.serverCPU, run.hash.Rate, run.hash.PerCPUSecond)
	if run.floor, run.load, run.paired, run.working, err = shapeLoads("introspect-apikey", b.c.tokenAddr, requests, `"active":true`,
		hash, b.loader(ctx), b.pairedLoader(ctx)); err != nil {
		return err
	}
	// The row and its floor together on two fresh servers, with the raw work
	// right before and after, and the row on both (A/A).
	if run.togetherRaw, err = b.rawAround(ctx, hash, func() (err error) {
		run.together, err = b.togetherPair(ctx, "together-introspect-apikey", requests, `"active":true`, theFloor(requests))
		return err
	}); err != nil {
		return err
	}
	if run.togetherAA, err = b.togetherPair(ctx, "together-aa-introspect-apikey", requests, `"active":true`, theSame(requests, `"active":true`)); err != nil {
		return err
	}
	if b.s.before != "" {
		if run.beforePair, err = b.tokenServerPair(ctx, "before-introspect-apikey", requests, `"active":true`, b.s.before); err != nil {
			return err
		}
		if run.togetherBefore, err = b.togetherBefore(ctx, "together-before-introspect-apikey", requests, `"active":true`); err != nil {
			return err
		}
		// The same pairing with this build on both sides: what pairing alone reads.
		if run.selfPair, err = b.tokenServerPair(ctx, "self-introspect-apikey", requests, `"active":true`, ""); err != nil {
			return err
		}
		// And the run's own server against a fresh one: what its history reads.
		if run.historyPair, err = b.historyPair(ctx, "history-introspect-apikey", requests, `"active":true`); err != nil {
			return err
		}
	}
	b.report.introspection = run
	return nil
}

// tokenServerPair starts two token servers beside the run's (idle meanwhile),
// each fresh, at addresses of their own: this build's and binary's (the -before
// build's; "": this build's again, the A/A pair). It loads both interleaved with
// requests (pairWithBefore) and stops them after. Both sides alike: neither has
// the run's server's history (its earlier loads and profiles) or its floor. Paired
// with the run's server instead, the A/A pair read -3.3% and -5.1% (a full and a
// quick run at 62e8935); whether that history was the cause, historyPair's A/A
// row keeps measuring beside this one's.
func (b *bench) tokenServerPair(ctx context.Context, name string, requests []string, body, binary string) (*loadResult, error) {
	after, afterAddr, err := b.freshTokenServer(ctx, name+"-after", "")
	if err != nil {
		return nil, err
	}
	defer after.stop()
	before, beforeAddr, err := b.freshTokenServer(ctx, name, binary)
	if err != nil {
		return nil, err
	}
	defer before.stop()
	return b.pairWithBefore(ctx, name, after, afterAddr, before, beforeAddr, rawRequests(requests), body)
}

// historyPair is the A/A pair as it was first made: the run's own token server
// (after every load before it) interleaved with a fresh one of this build.
func (b *bench) historyPair(ctx context.Context, name string, requests []string, body string) (*loadResult, error) {
	fresh, addr, err := b.freshTokenServer(ctx, name, "")
	if err != nil {
		return nil, err
	}
	defer fresh.stop()
	return b.pairWithBefore(ctx, name, b.server, b.c.tokenAddr, fresh, addr, rawRequests(requests), body)
}

// freshTokenServer starts binary's token server ("": this build's), with neither
// floor nor pprof, on the server core at an address of its own.
func (b *bench) freshTokenServer(ctx context.Context, name, binary string) (*process, string, error) {
	return b.freshTokenServerWith(ctx, name, binary, nil, "")
}

// freshTokenServerWith is freshTokenServer with extra flags, and pprof at pprofAddr unless "".
func (b *bench) freshTokenServerWith(ctx context.Context, name, binary string, extra []string, pprofAddr string) (*process, string, error) {
	addr, err := testenv.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	p, _, err := b.c.tokenServerWith(ctx, tokenServerOptions{name: "tokenserver-" + name, listen: addr, alg: b.alg,
		cpu: b.s.serverCPU, binary: binary, extra: extra, pprofAddr: pprofAddr})
	return p, addr, err
}

// load runs one closed-loop load of the token server from the load core and logs it.
func (b *bench) load(ctx context.Context, name string, requests []string, status int, body string) (loadResult, error) {
	job := loadJob{Addr: b.c.tokenAddr, Requests: rawRequests(requests), Connections: b.s.connections, Warmup: b.s.warmup,
		Duration: b.s.duration, ExpectStatus: status, ExpectBody: body}
	done := b.profile(ctx, "http://"+b.pprofAddr, name+".pprof", b.s.warmup+b.s.duration)
	defer done()
	return b.measure(ctx, name, "load", b.server, job)
}

// loader is load of a 200 answer, for shapeLoads.
func (b *bench) loader(ctx context.Context) func(name string, requests []string, body string) (loadResult, error) {
	return func(name string, requests []string, body string) (loadResult, error) {
		return b.load(ctx, name, requests, http.StatusOK, body)
	}
}

// pairedLoader loads the token server with requests interleaved with floor
// (200 answers, not profiled: the profile would mix both), and raw work in a
// slice of its own after each pair when raw is set, for shapeLoads.
func (b *bench) pairedLoader(ctx context.Context) func(name string, requests, floor []string, body, floorBody string, raw serve.FloorWork) (loadResult, error) {
	return func(name string, requests, floor []string, body, floorBody string, raw serve.FloorWork) (loadResult, error) {
		job := loadJob{Addr: b.c.tokenAddr, Requests: rawRequests(requests), Connections: b.s.connections, Warmup: b.s.warmup,
			Duration: b.s.duration, ExpectStatus: http.StatusOK, ExpectBody: body}
		return b.measureInterleaved(ctx, name, b.server, b.interleave(job, b.server, rawRequests(floor), floorBody), raw)
	}
}

// rawSlice is the length of the raw slice after each pair of slices of an
// interleaved load that measures its row's raw work too (loadJob.RawSlice):
// hundreds of RSA signatures, and short beside the pair. Its first rawSettle
// is not timed: the server still answers the requests in flight when it
// begins (16 RSA signatures: ~16 ms; timed, they read the raw rate ~4% low).
const (
	rawSlice  = 400 * time.Millisecond
	rawSettle = 50 * time.Millisecond
)

// measureInterleaved runs the interleaved load job against server, and, when
// raw is set, `bench work` doing raw on the server core in the raw slice the
// load leaves to it after each pair: the row, its floor and the raw reference
// a target combines with the floor, each measured in the same seconds rather
// than minutes apart. The raw rates land in the result's Raw and in each
// pair's third.
func (b *bench) measureInterleaved(ctx context.Context, name string, server *process, job loadJob, raw serve.FloorWork) (loadResult, error) {
	if raw.IsZero() {
		return b.measure(ctx, name, "load", server, job)
	}
	// Both children count their slices from the same moment, after both have
	// started. The warm-up ends in a raw slice: it is longer by one, so that
	// the server is warmed as long as without.
	job.RawSlice, job.RawSettle, job.Start = rawSlice, rawSettle, time.Now().Add(time.Second)
	job.Warmup += rawSlice
	sched := job.schedule(job.Start.Add(job.Warmup))
	var work workResult
	var workErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		workErr = runChild(ctx, "work", b.s.serverCPU, workJob{Work: raw, Schedule: &sched, Pairs: int(job.Duration / (2 * job.Slice))}, &work)
	})
	res, err := b.measure(ctx, name, "load", server, job)
	wg.Wait()
	if err = errors.Join(err, workErr); err != nil {
		return res, err
	}
	if len(work.PerPair) != len(res.Pairs) {
		return res, fmt.Errorf("%s: raw work in %d slices, %d pairs of slices", name, len(work.PerPair), len(res.Pairs))
	}
	res.Raw = work.Rate
	for i := range res.Pairs {
		res.Pairs[i][2] = work.PerPair[i]
	}
	logf("  %-22s raw work in a slice of %s after each of the %d pairs, timed after %s: %.0f/s (the server busy %.0f%% of that time)",
		name, rawSlice, len(work.PerPair), rawSettle, work.Rate, 100*res.RawServerBusy)
	return res, nil
}

// measure runs one load child of kind (load, grpcload) with job from the load core
// against server, and logs it with how busy each core was.
func (b *bench) measure(ctx context.Context, name, kind string, server *process, job any) (loadResult, error) {
	serverCPU := cpuSeconds(server.cmd.Process.Pid)
	var res loadResult
	if err := runChild(ctx, kind, b.s.loadCPU, job, &res); err != nil {
		return res, err
	}
	if res.Errors > 0 {
		return res, fmt.Errorf("%s: %d failed requests; first: %s", name, res.Errors, res.FirstError)
	}
	if f := res.Floor; f != nil && f.Errors > 0 { // a side on a server of its own fails on its own
		return res, fmt.Errorf("%s (other side): %d failed requests; first: %s", name, f.Errors, f.FirstError)
	}
	window := (b.s.warmup + b.s.duration).Seconds()
	if res.Floor == nil {
		res.ServerCPU = cpuSeconds(server.cmd.Process.Pid) - serverCPU
	} else {
		f := res.Floor
		how := "interleaved with the row below"
		if j, ok := job.(loadJob); ok && j.Together {
			how = "on a server of its own, at the same time as the row below"
		}
		logf("  %-22s %8.0f/s  p50 %-9s p99 %-9s (server core busy %.0f%%; %s)", name+" (other side)", f.Rate,
			f.P50.Round(time.Microsecond), f.P99.Round(time.Microsecond), 100*f.ServerCPU/window, how)
		logf("  %-22s row ÷ other side%s", name, pairSpread(res, 0))
	}
	logf("  %-22s %8.0f/s  p50 %-9s p99 %-9s (server core busy %.0f%%, load core %.0f%%)", name, res.Rate,
		res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), 100*res.ServerCPU/window, 100*res.CPUSeconds/window)
	return res, nil
}

// interleavedSlice is the length of each slice of an interleaved load
// (loadJob.Floor): short against the machine's drift (minutes), long against
// what a switch of side costs. Half-second slices read the row 10–20% lower
// than the same row alone in three quick runs out of three, while its floor
// read the same; at 2.5 s the row read as alone. Counted by 50 ms (a quick
// run of the authorizer with 20 s loads), forward-auth ran ~10% below the rest
// of its slice for about half a second after each switch, and its floor ~10%
// above for about a second: each side carries something of the other over.
// Introspection showed no such step. What carries over was not found: the
// authorizer's GC (gctrace) ran as often per request on both sides.
const interleavedSlice = 2 * time.Second

// interleave makes job alternate its requests with floor's, answered with
// floorBody, in slices of about interleavedSlice that fill its duration.
func (b *bench) interleave(job loadJob, server *process, floor [][]byte, floorBody string) loadJob {
	job.Floor, job.FloorExpectBody, job.ServerPID = floor, floorBody, server.cmd.Process.Pid
	job.Slice, job.Duration = interleavedWindow(job.Duration)
	return job
}

// interleavedWindow is the slice of an interleaved load of duration d and the
// duration it then runs: whole pairs of slices (see sliceOf).
func interleavedWindow(d time.Duration) (slice, duration time.Duration) {
	slice = sliceOf(d)
	return slice, slice * (d / slice)
}

// sliceOf is the slice of an interleaved load of duration d: about
// interleavedSlice, and a whole number of pairs of it in d.
func sliceOf(d time.Duration) time.Duration {
	pairs := max(1, int(d/(2*interleavedSlice)))
	return d / time.Duration(2*pairs)
}

// profile, when profiling is on, records a CPU profile and an allocation profile
// (the allocations over the same seconds: file with .allocs before .pprof) from a
// pprof endpoint in the background; the returned function waits for both.
func (b *bench) profile(ctx context.Context, base, file string, d time.Duration) func() {
	if b.s.profileDir == "" || strings.HasSuffix(base, "//") {
		return func() {}
	}
	seconds := max(1, int(d.Seconds()))
	fetch := func(endpoint, file string, done chan<- struct{}) {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", base, endpoint, seconds))
		if err != nil {
			logf("  profile %s: %v", file, err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(b.s.profileDir, file))
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}
	cpu, allocs := make(chan struct{}), make(chan struct{})
	go fetch("profile", file, cpu)
	go fetch("allocs", strings.TrimSuffix(file, ".pprof")+".allocs.pprof", allocs)
	return func() { <-cpu; <-allocs }
}

// apiserverProfile records a CPU profile of kube-apiserver (its /debug/pprof, as admin, through kubectl).
func (b *bench) apiserverProfile(ctx context.Context, file string, d time.Duration) func() {
	if b.s.profileDir == "" {
		return func() {}
	}
	cmd := exec.CommandContext(ctx, repoPath("bin", "k8s", testenv.K8sVersion, "kubectl"), "get", "--raw",
		fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+b.c.env.Kubeconfig)
	out, err := os.Create(filepath.Join(b.s.profileDir, file))
	if err != nil {
		return func() {}
	}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		out.Close()
		return func() {}
	}
	return func() { _ = cmd.Wait(); out.Close() }
}

// request renders a raw HTTP/1.1 request to the token server.
func (b *bench) request(method, path, form, authorization string) string {
	var r strings.Builder
	fmt.Fprintf(&r, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, b.c.tokenAddr)
	if authorization != "" {
		fmt.Fprintf(&r, "Authorization: %s\r\n", authorization)
	}
	if method == http.MethodPost {
		fmt.Fprintf(&r, "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n", len(form))
	}
	r.WriteString("\r\n")
	r.WriteString(form)
	return r.String()
}

// basicAuth is client_secret_basic: id and secret form-urlencoded, then Basic (RFC 6749 §2.3.1).
func basicAuth(c clientCredentials) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.id)+":"+url.QueryEscape(c.secret)))
}

// revocation revokes s.revocations APIKeys while a poller introspects each, and
// s.revocations OAuthClients while a poller requests tokens with each, and
// measures from sending the patch to the first refused request.
func (b *bench) revocation(ctx context.Context) error {
	// The API server carries the revocation: normal priority here.
	if err := b.confine(b.s.loadCPU, "0"); err != nil {
		return err
	}
	rs := b.clients[0]
	var keyLatencies, clientLatencies, keyFromAnswer, clientFromAnswer []time.Duration
	for i := range b.s.revocations {
		key, err := b.c.secretData(ctx, keyName(i)+"-apikey", latchkeyv1.APIKeySecretKey)
		if err != nil {
			return err
		}
		req := b.request(http.MethodPost, "/oauth2/introspect", url.Values{"token": {key}}.Encode(), basicAuth(rs))
		d, fromAnswer, err := b.revokeAndPoll(ctx, b.c.tokenAddr, &latchkeyv1.APIKey{}, keyName(i), req, func(status int, body []byte) bool {
			return status == http.StatusOK && strings.Contains(string(body), `"active":false`)
		})
		if err != nil {
			return fmt.Errorf("APIKey %s: %w", keyName(i), err)
		}
		keyLatencies, keyFromAnswer = append(keyLatencies, d), append(keyFromAnswer, fromAnswer)
	}
	for i := range b.s.revocations {
		c := b.clients[loadClients+i]
		req := b.request(http.MethodPost, "/oauth2/token", "grant_type=client_credentials", basicAuth(c))
		d, fromAnswer, err := b.revokeAndPoll(ctx, b.c.tokenAddr, &latchkeyv1.OAuthClient{}, c.name, req, func(status int, _ []byte) bool {
			return status == http.StatusUnauthorized
		})
		if err != nil {
			return fmt.Errorf("OAuthClient %s: %w", c.name, err)
		}
		clientLatencies, clientFromAnswer = append(clientLatencies, d), append(clientFromAnswer, fromAnswer)
	}
	b.report.revocations = revocationRun{apiKeys: keyLatencies, clients: clientLatencies, apiKeysFromAnswer: keyFromAnswer, clientsFromAnswer: clientFromAnswer}
	logf("  from the patch's answer: API keys (introspection): p50 %s p99 %s; OAuth clients (token endpoint): p50 %s p99 %s",
		pct(keyFromAnswer, 0.5), pct(keyFromAnswer, 0.99), pct(clientFromAnswer, 0.5), pct(clientFromAnswer, 0.99))
	return nil
}

// revokeAndPoll sends request to addr in a loop on one keep-alive connection, checks that it
// is accepted, patches spec.revoked=true, and returns the time from sending the
// patch to receiving the first refusal. That bound includes the API server's own
// write, so it overstates the time from acceptance slightly. It also returns the
// time from the patch's response to the first refusal (0 if the refusal came first).
func (b *bench) revokeAndPoll(ctx context.Context, addr string, obj client.Object, name, request string, refused func(int, []byte) bool) (time.Duration, time.Duration, error) {
	obj.SetNamespace(benchNamespace)
	obj.SetName(name)
	return pollUntilRefused(addr, request, refused, func() (time.Time, time.Time, error) {
		sent := time.Now()
		err := b.c.client.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"revoked":true}}`)))
		return sent, time.Now(), err
	})
}

// pollUntilRefused sends request to addr in a loop on one keep-alive connection,
// checks that it is accepted, runs act (a revocation: it returns when it sent it
// and when it was answered), and returns the times from act's sending, and from
// its answer, to the first refused answer (refused).
func pollUntilRefused(addr, request string, refused func(int, []byte) bool, act func() (sent, answered time.Time, err error)) (time.Duration, time.Duration, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	reader := bufio.NewReader(conn)
	send := func() (bool, time.Time, error) {
		if _, err := conn.Write([]byte(request)); err != nil {
			return false, time.Time{}, err
		}
		resp, err := http.ReadResponse(reader, nil)
		if err != nil {
			return false, time.Time{}, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return refused(resp.StatusCode, body), time.Now(), err
	}
	if r, _, err := send(); err != nil || r {
		return 0, 0, fmt.Errorf("refused before the revocation (err %v)", err)
	}
	type result struct {
		at  time.Time
		err error
	}
	first := make(chan result, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, at, err := send()
			if err != nil || r {
				first <- result{at, err}
				return
			}
			// One request per millisecond: resolution enough for a 200 ms target,
			// without taking the load core from the API server that carries the revocation.
			time.Sleep(time.Millisecond)
		}
	}()
	sent, answered, err := act()
	if err != nil {
		return 0, 0, err
	}
	select {
	case r := <-first:
		if r.err != nil {
			return 0, 0, r.err
		}
		return r.at.Sub(sent), max(0, r.at.Sub(answered)), nil
	case <-time.After(10 * time.Second):
		return 0, 0, fmt.Errorf("still accepted 10 s after the revocation")
	}
}

// memoryAtScale grows the APIKeys to each of s.memoryKeys and measures the token
// server's cold start and the processes' RSS there.
func (b *bench) memoryAtScale(ctx context.Context) error {
	have := b.s.keys
	for _, total := range b.s.memoryKeys {
		logf("  creating APIKeys %d..%d", have, total-1)
		r, err := b.createKeys(ctx, have, total)
		if err != nil {
			return err
		}
		b.report.reconcile = append(b.report.reconcile, r)
		logf("  %d more APIKeys Ready in %s", r.keys, r.total.Round(time.Millisecond))
		have = total
		var times []time.Duration
		for range min(3, b.s.coldStarts) {
			ready, err := b.restartTokenServer(ctx, "RS256")
			if err != nil {
				return err
			}
			times = append(times, ready)
			logf("  ready %s after start", ready.Round(time.Millisecond))
		}
		b.report.coldStarts = append(b.report.coldStarts, coldStartRun{keys: total, times: times})
		if err := b.measureMemory(ctx, total); err != nil {
			return err
		}
		if total == b.largestKeys() {
			if err := b.profiledColdStart(ctx, total); err != nil {
				return err
			}
		}
	}
	return nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sorted := slices.Clone(d)
	slices.Sort(sorted)
	return percentile(sorted, p).Round(10 * time.Microsecond)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
