package main

import (
	"context"
	"fmt"
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
	for _, user := range []string{"latchkey-manager", "latchkey-tokenserver"} {
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
	probeAddr, _ := testenv.FreeAddr()
	c.managerURL = "http://" + metricsAddr + "/metrics"
	args := []string{"manager",
		"--namespace=" + operatorNamespace,
		"--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=" + probeAddr,
		"--issuer-url=" + c.issuer,
		"--signing-algorithms=RS256,ES256,EdDSA",
	}
	args = append(args, managerArgs...)
	if withPprof {
		c.pprofMgr, _ = testenv.FreeAddr()
		args = append(args, "--pprof-bind-address="+c.pprofMgr)
	}
	c.manager, err = start(dir, "manager", "", []string{"KUBECONFIG=" + filepath.Join(dir, "latchkey-manager.kubeconfig")},
		repoPath("bin", "latchkey"), args...)
	if err != nil {
		return c, err
	}
	if _, err := c.manager.waitReady(ctx, "http://"+probeAddr+"/readyz", time.Minute); err != nil {
		return c, err
	}
	return c, nil
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
func (c *cluster) tokenServer(ctx context.Context, alg, cpu, pprofAddr string) (*process, time.Duration, error) {
	args := []string{"tokenserver",
		"--listen-address=" + c.tokenAddr,
		"--metrics-bind-address=0",
		"--issuer-url=" + c.issuer,
		"--signing-key-namespace=" + operatorNamespace,
		"--signing-algorithm=" + alg,
	}
	if pprofAddr != "" {
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	p, err := start(c.dir, "tokenserver-"+alg, cpu, []string{"KUBECONFIG=" + filepath.Join(c.dir, "latchkey-tokenserver.kubeconfig")},
		repoPath("bin", "latchkey"), args...)
	if err != nil {
		return nil, 0, err
	}
	ready, err := p.waitReady(ctx, c.issuer+"/readyz", 2*time.Minute)
	if err != nil {
		p.stop()
		return nil, 0, err
	}
	return p, ready, nil
}

// createParallel creates objects with the given parallelism and returns the first error.
func (c *cluster) createParallel(ctx context.Context, objs []client.Object, parallelism int) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range parallelism {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(objs) || ctx.Err() != nil {
					return
				}
				if err := c.client.Create(ctx, objs[i]); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("creating %s: %w", objs[i].GetName(), err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// readyWatch counts objects of one kind in the bench namespace whose Ready
// condition is True for their current generation, from a watch cache.
type readyWatch struct {
	mu    sync.Mutex
	ready map[string]bool
	count atomic.Int64
}

func (c *cluster) watchReady(ctx context.Context, obj client.Object) (*readyWatch, error) {
	informers, err := cache.New(c.config, cache.Options{
		Scheme:            c.client.Scheme(),
		DefaultNamespaces: map[string]cache.Config{benchNamespace: {}},
	})
	if err != nil {
		return nil, err
	}
	informer, err := informers.GetInformer(ctx, obj)
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
	registration, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: update, UpdateFunc: func(_, o any) { update(o) },
	})
	if err != nil {
		return nil, err
	}
	go func() { _ = informers.Start(ctx) }()
	// The handler's own sync, not the informer's: the store can be synced while the
	// handler has yet to see part of the initial list, and a count read then is short
	// (a full run once waited for 96,962 of 100,000 keys and found Secrets missing).
	if !toolscache.WaitForCacheSync(ctx.Done(), registration.HasSynced) {
		return nil, fmt.Errorf("watch cache did not sync")
	}
	return w, nil
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

// countSecrets counts the operator's Secrets in the bench namespace (metadata only).
func (c *cluster) countSecrets(ctx context.Context) (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	err := c.client.List(ctx, list, client.InNamespace(benchNamespace),
		client.MatchingLabels{controllers.ManagedByLabel: controllers.ManagedByValue})
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
