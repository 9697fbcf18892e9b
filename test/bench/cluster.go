package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

const (
	benchNamespace    = "bench"
	operatorNamespace = "latchkey-system"
	loadClients       = 16 // OAuthClients that request tokens under load, one per connection
)

// cluster is the local control plane with the manager running on it.
type cluster struct {
	env        *testenv.Env
	dir        string
	client     client.Client
	config     *rest.Config
	issuer     string // the token server's URL (fixed, so tokens name one issuer)
	tokenAddr  string
	manager    *process
	managerURL string // metrics
	pprofMgr   string
	// managerArgs and probeAddr start the manager again after the reconcile floor stopped it.
	managerArgs   []string
	probeAddr     string
	managerStarts int
}

func startCluster(ctx context.Context, dir string, withPprof bool, managerArgs []string) (*cluster, error) {
	gcLog, err := os.Create(filepath.Join(dir, "kube-controller-manager.log"))
	if err != nil {
		return nil, err
	}
	env, err := testenv.StartWith(testenv.Options{SkipCRDs: true, LogTo: gcLog})
	if err != nil {
		return nil, err
	}
	c := &cluster{env: env, dir: dir}
	for _, user := range []string{"latchkey-manager", "latchkey-tokenserver", authzUser} {
		if err := env.WriteUserKubeconfig(envtest.User{Name: user}, filepath.Join(dir, user+".kubeconfig")); err != nil {
			return c, err
		}
	}
	// The production CRDs and RBAC, bound to the processes' users, as make demo does.
	kubectl := repoPath("bin", "k8s", testenv.K8sVersion, "kubectl")
	for _, args := range [][]string{
		{"apply", "--server-side", "-k", repoPath("config", "local")},
		{"wait", "--for", "condition=established", "--timeout=60s", "crd/apikeys.latchkey.dev", "crd/oauthclients.latchkey.dev"},
	} {
		cmd := exec.CommandContext(ctx, kubectl, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			return c, fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	c.config = rest.CopyConfig(env.Config)
	c.config.QPS = -1 // the benchmark's own requests are not what is measured
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = latchkeyv1.AddToScheme(scheme)
	if c.client, err = client.New(c.config, client.Options{Scheme: scheme}); err != nil {
		return c, err
	}
	if err := c.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}); err != nil {
		return c, err
	}

	if c.tokenAddr, err = testenv.FreeAddr(); err != nil {
		return c, err
	}
	c.issuer = "http://" + c.tokenAddr
	metricsAddr, _ := testenv.FreeAddr()
	c.probeAddr, _ = testenv.FreeAddr()
	c.managerURL = "http://" + metricsAddr + "/metrics"
	c.managerArgs = []string{"manager",
		"--namespace=" + operatorNamespace,
		"--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=" + c.probeAddr,
		"--issuer-url=" + c.issuer,
		"--signing-algorithms=RS256,ES256,EdDSA",
	}
	c.managerArgs = append(c.managerArgs, managerArgs...)
	if withPprof {
		c.pprofMgr, _ = testenv.FreeAddr()
		c.managerArgs = append(c.managerArgs, "--pprof-bind-address="+c.pprofMgr)
	}
	return c, c.startManager(ctx)
}

// startManager starts the manager (on the same addresses each time) and waits until it is ready.
func (c *cluster) startManager(ctx context.Context) error {
	return c.startManagerFrom(ctx, repoPath("bin", "latchkey"))
}

// startManagerFrom starts the manager from binary (another build: -before).
func (c *cluster) startManagerFrom(ctx context.Context, binary string) error {
	name := "manager"
	if c.managerStarts++; c.managerStarts > 1 {
		name = fmt.Sprintf("manager-%d", c.managerStarts) // its own log
	}
	var err error
	c.manager, err = start(c.dir, name, "", []string{"KUBECONFIG=" + filepath.Join(c.dir, "latchkey-manager.kubeconfig")},
		binary, c.managerArgs...)
	if err != nil {
		return err
	}
	_, err = c.manager.waitReady(ctx, "http://"+c.probeAddr+"/readyz", time.Minute)
	return err
}

func (c *cluster) stop() {
	if c == nil {
		return
	}
	c.manager.stop()
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
	}
}

// tokenServer starts a token server signing with alg, pinned to cpu, and waits
// until it is ready. It returns the process and the time from start to ready.
func (c *cluster) tokenServer(ctx context.Context, alg, cpu, pprofAddr, binary string, extra ...string) (*process, time.Duration, error) {
	return c.tokenServerWith(ctx, tokenServerOptions{name: "tokenserver-" + alg, listen: c.tokenAddr, alg: alg, cpu: cpu,
		pprofAddr: pprofAddr, binary: binary, extra: extra})
}

// tokenServerOptions are what differ between the token servers of a run.
type tokenServerOptions struct {
	name, listen, alg, cpu string
	pprofAddr, metricsAddr string // "" for none
	binary                 string // "" for bin/latchkey
	extra                  []string
}

func (c *cluster) tokenServerWith(ctx context.Context, o tokenServerOptions) (*process, time.Duration, error) {
	metrics := o.metricsAddr
	if metrics == "" {
		metrics = "0"
	}
	args := []string{"tokenserver",
		"--listen-address=" + o.listen,
		"--metrics-bind-address=" + metrics,
		"--issuer-url=" + c.issuer,
		"--signing-key-namespace=" + operatorNamespace,
		"--signing-algorithm=" + o.alg,
	}
	if o.pprofAddr != "" {
		args = append(args, "--pprof-bind-address="+o.pprofAddr)
	}
	args = append(args, o.extra...)
	binary := o.binary
	if binary == "" {
		binary = repoPath("bin", "latchkey")
	}
	p, err := start(c.dir, o.name, o.cpu, []string{"KUBECONFIG=" + filepath.Join(c.dir, "latchkey-tokenserver.kubeconfig")},
		binary, args...)
	if err != nil {
		return nil, 0, err
	}
	ready, err := p.waitReady(ctx, "http://"+o.listen+"/readyz", 2*time.Minute)
	if err != nil {
		p.stop()
		return nil, 0, err
	}
	return p, ready, nil
}

// createParallel creates objects with the given parallelism and returns the first error.
func (c *cluster) createParallel(ctx context.Context, objs []client.Object, parallelism int) error {
	return parallel(ctx, len(objs), parallelism, func(i int) error {
		if err := c.client.Create(ctx, objs[i]); err != nil {
			return fmt.Errorf("creating %s: %w", objs[i].GetName(), err)
		}
		return nil
	})
}

// parallel runs do(0..n-1) on workers goroutines and returns the first error;
// after one, the workers take no further items.
func parallel(ctx context.Context, n, workers int, do func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil || failed.Load() {
					return
				}
				if err := do(i); err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// readyWatch counts objects of one kind in one namespace whose Ready
// condition is True for their current generation, from a watch cache.
type readyWatch struct {
	mu    sync.Mutex
	ready map[string]bool
	count atomic.Int64
}

func (c *cluster) watchReady(ctx context.Context, namespace string, obj client.Object) (*readyWatch, error) {
	informer, err := c.informer(ctx, namespace, obj)
	if err != nil {
		return nil, err
	}
	w := &readyWatch{ready: map[string]bool{}}
	update := func(o any) {
		cred, ok := o.(interface {
			client.Object
			CredentialStatus() *latchkeyv1.CredentialStatus
		})
		if !ok {
			return
		}
		status := cred.CredentialStatus()
		ready := status.ObservedGeneration == cred.GetGeneration() &&
			apimeta.IsStatusConditionTrue(status.Conditions, latchkeyv1.ConditionReady)
		w.mu.Lock()
		defer w.mu.Unlock()
		if ready != w.ready[cred.GetName()] {
			w.ready[cred.GetName()] = ready
			if ready {
				w.count.Add(1)
			} else {
				w.count.Add(-1)
			}
		}
	}
	return w, watchHandler(ctx, informer, toolscache.ResourceEventHandlerFuncs{
		AddFunc: update, UpdateFunc: func(_, o any) { update(o) },
	})
}

// informer starts a watch cache of obj's kind in namespace; it runs until ctx ends.
func (c *cluster) informer(ctx context.Context, namespace string, obj client.Object) (cache.Informer, error) {
	informers, err := cache.New(c.config, cache.Options{
		Scheme:            c.client.Scheme(),
		DefaultNamespaces: map[string]cache.Config{namespace: {}},
	})
	if err != nil {
		return nil, err
	}
	informer, err := informers.GetInformer(ctx, obj)
	if err != nil {
		return nil, err
	}
	go func() { _ = informers.Start(ctx) }()
	return informer, nil
}

// watchHandler adds handler to informer and waits until it has seen the initial list.
func watchHandler(ctx context.Context, informer cache.Informer, handler toolscache.ResourceEventHandler) error {
	registration, err := informer.AddEventHandler(handler)
	if err != nil {
		return err
	}
	// The handler's own sync, not the informer's: the store can be synced while the
	// handler has yet to see part of the initial list, and a count read then is short
	// (a full run once waited for 96,962 of 100,000 keys and found Secrets missing).
	if !toolscache.WaitForCacheSync(ctx.Done(), registration.HasSynced) {
		return fmt.Errorf("watch cache did not sync")
	}
	return nil
}

// waitCount waits until n objects are ready, logging progress.
func (w *readyWatch) waitCount(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for int(w.count.Load()) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d ready after %s", w.count.Load(), n, timeout)
		}
		if time.Since(lastLog) > 10*time.Second {
			logf("  %d of %d ready", w.count.Load(), n)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// countSecrets counts the operator's Secrets in namespace (metadata only).
func (c *cluster) countSecrets(ctx context.Context, namespace string) (int, error) {
	return c.count(ctx, namespace, corev1.SchemeGroupVersion.WithKind("SecretList"),
		client.MatchingLabels{controllers.ManagedByLabel: controllers.ManagedByValue})
}

// count counts the objects of a list kind in namespace (metadata only).
func (c *cluster) count(ctx context.Context, namespace string, listKind schema.GroupVersionKind, opts ...client.ListOption) (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(listKind)
	err := c.client.List(ctx, list, append(opts, client.InNamespace(namespace))...)
	return len(list.Items), err
}

func (c *cluster) secretData(ctx context.Context, name, key string) (string, error) {
	var s corev1.Secret
	if err := c.client.Get(ctx, client.ObjectKey{Namespace: benchNamespace, Name: name}, &s); err != nil {
		return "", err
	}
	v, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("secret %s has no %s", name, key)
	}
	return string(v), nil
}

// managerMetrics sums the manager's metric samples by name and controller label.
func (c *cluster) managerMetrics(ctx context.Context) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.managerURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	sums := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" || l.GetName() == "name" || l.GetName() == "method" {
					key += "{" + l.GetValue() + "}"
				}
			}
			switch {
			case m.Counter != nil:
				sums[key] += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sums[key] += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sums[key+"_sum"] += m.GetHistogram().GetSampleSum()
				sums[key+"_count"] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sums, nil
}

// waitManagerIdle waits until the manager's work queues are empty and no
// reconcile is under way, in two readings 250 ms apart, and returns how long that took.
func (c *cluster) waitManagerIdle(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	idleReadings := 0
	for idleReadings < 2 {
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("the manager still had work queued %s later", timeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return 0, err
		}
		r, err := scrape(ctx, http.DefaultClient, c.managerURL, sample{name: "workqueue_depth"}, sample{name: "workqueue_unfinished_work_seconds"})
		if err != nil {
			return 0, err
		}
		if !r[0].ok || !r[1].ok {
			return 0, fmt.Errorf("the manager's metrics have no work queue gauges to tell it idle")
		}
		if r[0].value+r[1].value == 0 {
			idleReadings++
		} else {
			idleReadings = 0
		}
	}
	return time.Since(start), nil
}

// sample selects the samples of one metric family whose labels include labels.
type sample struct {
	name   string
	labels map[string]string
}

// reading is the sum of the samples a sample selects; ok is false when the
// endpoint has no such family (a build without that metric).
type reading struct {
	value float64
	ok    bool
}

// scrape reads a Prometheus text endpoint with hc and sums the counters and gauges each of selected picks.
func scrape(ctx context.Context, hc *http.Client, url string, selected ...sample) ([]reading, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := make([]reading, len(selected))
	for i, sel := range selected {
		f, ok := families[sel.name]
		if !ok {
			continue
		}
		out[i].ok = true
	samples:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range sel.labels {
				if have[k] != v {
					continue samples
				}
			}
			out[i].value += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out, nil
}

// apiserverMetrics scrapes kube-apiserver's own /metrics as the admin.
func (c *cluster) apiserverMetrics(ctx context.Context, selected ...sample) ([]reading, error) {
	hc, err := rest.HTTPClientFor(c.config)
	if err != nil {
		return nil, err
	}
	return scrape(ctx, hc, c.apiserverURL("/metrics"), selected...)
}

// apiserverURL is path on kube-apiserver.
func (c *cluster) apiserverURL(path string) string {
	return strings.TrimSuffix(c.config.Host, "/") + path
}

// apiserverGet GETs path from kube-apiserver as the admin, asking for accept
// ("" for the server's default).
func (c *cluster) apiserverGet(ctx context.Context, path, accept string) ([]byte, error) {
	hc, err := rest.HTTPClientFor(c.config)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.apiserverURL(path), nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return getOK(hc, req, path)
}

// getOK sends req with hc and returns the body of a 200 answer; any other
// status is an error naming path.
func getOK(hc *http.Client, req *http.Request, path string) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}
