package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
)

// managerFlags are the manager's settings, documented in the README.
type managerFlags struct {
	metricsAddr, probeAddr string
	leaderElection         bool
	leaderElectionID       string
	defaultKeyPrefix       string
	issuerURL, tokenURL    string
	concurrency            int
	kubeAPIQPS             float64
	kubeAPIBurst           int
}

func runManager(args []string) error {
	var f managerFlags
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; \"0\" disables it")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&f.leaderElection, "leader-elect", false, "elect one active manager among replicas")
	fs.StringVar(&f.leaderElectionID, "leader-election-id", "manager.latchkey.dev", "name of the leader-election Lease")
	fs.StringVar(&f.defaultKeyPrefix, "default-key-prefix", "lk", "prefix of API keys whose spec.prefix is empty")
	fs.StringVar(&f.issuerURL, "issuer-url", "http://latchkey-tokenserver.latchkey-system.svc", "issuer of access tokens, written into OAuthClient Secrets (must match the token server's --issuer-url)")
	fs.StringVar(&f.tokenURL, "token-url", "", "token endpoint written into OAuthClient Secrets; default <issuer-url>/oauth2/token")
	fs.IntVar(&f.concurrency, "concurrency", 8, "reconciles run in parallel per kind")
	fs.Float64Var(&f.kubeAPIQPS, "kube-api-qps", 200, "client-side QPS limit towards the API server (the server's own priority and fairness still applies)")
	fs.IntVar(&f.kubeAPIBurst, "kube-api-burst", 400, "client-side burst towards the API server")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if f.tokenURL == "" {
		f.tokenURL = strings.TrimSuffix(f.issuerURL, "/") + "/oauth2/token"
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(f.kubeAPIQPS), f.kubeAPIBurst

	mgr, err := ctrl.NewManager(cfg, ManagerOptions(f))
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := controllers.SetupAll(mgr, controllers.Options{
		DefaultKeyPrefix: f.defaultKeyPrefix,
		IssuerURL:        f.issuerURL,
		TokenURL:         f.tokenURL,
		Random:           rand.Reader,
		Clock:            clock.RealClock{},
		Controller:       controller.Options{MaxConcurrentReconciles: f.concurrency},
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

// ManagerOptions builds the manager's options. The Secret cache holds only the
// Secrets the operator labelled, so memory does not grow with unrelated Secrets.
func ManagerOptions(f managerFlags) ctrl.Options {
	return ctrl.Options{
		Scheme:                        newScheme(),
		Metrics:                       metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:        f.probeAddr,
		LeaderElection:                f.leaderElection,
		LeaderElectionID:              f.leaderElectionID,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptrDuration(30 * time.Second),
		Cache:                         cache.Options{ByObject: controllers.CacheByObject()},
	}
}

func newScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = latchkeyv1.AddToScheme(scheme)
	return scheme
}

func ptrDuration(d time.Duration) *time.Duration { return &d }
