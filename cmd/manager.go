package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// managerFlags are the manager's settings, documented in the README.
type managerFlags struct {
	metricsAddr, probeAddr string
	pprofAddr              string
	leaderElection         bool
	leaderElectionID       string
	leaseDuration          time.Duration
	renewDeadline          time.Duration
	retryPeriod            time.Duration
	defaultKeyPrefix       string
	issuerURL, tokenURL    string
	namespace              string
	signingKeySecret       string
	jwksConfigMap          string
	issuanceKeySecret      string
	namespaces             []string
	signingAlgorithms      string
	signingKeyRotation     time.Duration
	sealingKeyRotation     time.Duration
	concurrency            int
	kubeAPIQPS             float64
	kubeAPIBurst           int
	kubeAPICompression     bool
}

func runManager(args []string) error {
	var f managerFlags
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; \"0\" disables it")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "0", "address of Go's /debug/pprof endpoints, for profiling; \"0\" (the default) disables them")
	fs.BoolVar(&f.leaderElection, "leader-elect", false, "elect one active manager among replicas")
	fs.StringVar(&f.leaderElectionID, "leader-election-id", "manager.latchkey.dev", "name of the leader-election Lease")
	// A standby takes over at most a lease duration after the leader dies without
	// releasing the Lease (a crash, SIGKILL). The defaults are controller-runtime's:
	// short enough for a credential operator, long enough not to flap on a slow API server.
	fs.DurationVar(&f.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long standbys wait, after the last renewal, before taking the Lease from a leader that stopped renewing it")
	fs.DurationVar(&f.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader keeps retrying to renew the Lease before it gives up leadership (and exits); shorter than the lease duration")
	fs.DurationVar(&f.retryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try to acquire or renew the Lease")
	fs.StringVar(&f.defaultKeyPrefix, "default-key-prefix", "lk", "prefix of API keys whose spec.prefix is empty")
	fs.StringVar(&f.issuerURL, "issuer-url", "http://latchkey-tokenserver.latchkey-system.svc", "issuer of access tokens, written into OAuthClient Secrets (must match the token server's --issuer-url)")
	fs.StringVar(&f.tokenURL, "token-url", "", "token endpoint written into OAuthClient Secrets; default <issuer-url>/oauth2/token")
	fs.StringVar(&f.namespace, "namespace", envOr("POD_NAMESPACE", "latchkey-system"), "the operator's namespace, which holds the signing-key Secret")
	fs.StringVar(&f.signingKeySecret, "signing-key-secret", "latchkey-signing-keys", "name of the Secret that holds the token-signing keys")
	fs.StringVar(&f.jwksConfigMap, "jwks-configmap", "latchkey-jwks", "name of the ConfigMap, in --namespace, where the manager publishes the signing keys' public JWK Set (data key jwks.json) for resource servers that verify tokens offline; \"\" publishes none. The manager's Role (config/rbac/jwks_role.yaml) names it: change both together")
	fs.StringVar(&f.issuanceKeySecret, "issuance-key-secret", "latchkey-issuance-key", "name of the Secret, in --namespace, that holds the issuance key: it proves which credentials in tenants' Secrets the manager wrote, and derives client_ids")
	fs.StringVar(&f.signingAlgorithms, "signing-algorithms", signingkeys.RS256, "comma-separated algorithms to keep signing keys for: RS256, ES256, EdDSA")
	fs.DurationVar(&f.signingKeyRotation, "signing-key-rotation", 30*24*time.Hour, "how long each signing key signs before the next one takes over")
	fs.DurationVar(&f.sealingKeyRotation, "sealing-key-rotation", signingkeys.DefaultSealingRotation, "how long each sealing key (login cookies, authorization codes; kept in the signing-key Secret) seals before the next one takes over")
	fs.IntVar(&f.concurrency, "concurrency", 8, "reconciles run in parallel per kind")
	fs.Float64Var(&f.kubeAPIQPS, "kube-api-qps", -1, "client-side QPS limit towards the API server; negative (the default) means none, as in controller-runtime: the API server's priority and fairness paces the manager")
	fs.IntVar(&f.kubeAPIBurst, "kube-api-burst", 400, "client-side burst towards the API server, with --kube-api-qps")
	fs.BoolVar(&f.kubeAPICompression, "kube-api-compression", true, kubeAPICompressionHelp)
	fs.Func("namespaces", "comma-separated namespaces to manage credentials in (namespace-scoped install: config/namespaced); empty (the default) means all", func(v string) error {
		f.namespaces = splitList(v)
		return nil
	})
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	limitMemory(ctrl.Log.WithName("manager"))
	if f.tokenURL == "" {
		f.tokenURL = strings.TrimSuffix(f.issuerURL, "/") + "/oauth2/token"
	}

	algorithms, err := parseAlgorithms(f.signingAlgorithms)
	if err != nil {
		return err
	}
	if f.signingKeyRotation < time.Hour {
		return fmt.Errorf("--signing-key-rotation must be at least 1h")
	}

	cfg, err := kubeConfig(f.kubeAPIQPS, f.kubeAPIBurst, f.kubeAPICompression)
	if err != nil {
		return err
	}

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
		IssuanceKey:      controllers.IssuanceKeyOptions{Namespace: f.namespace, SecretName: f.issuanceKeySecret},
		SigningKeys: &controllers.SigningKeyOptions{
			Namespace:     f.namespace,
			SecretName:    f.signingKeySecret,
			JWKSConfigMap: f.jwksConfigMap,
			Policy: signingkeys.Policy{
				Algorithms:       algorithms,
				RotationInterval: f.signingKeyRotation,
				SealingRotation:  f.sealingKeyRotation,
				MaxTokenLifetime: latchkeyv1.MaxAccessTokenTTL,
			},
		},
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
// Secrets the operator labelled, each as a small record (controllers.CacheByObject),
// so memory does not grow with unrelated Secrets or with what is in them; the ConfigMap cache holds the JWKS ConfigMap alone. With
// --namespaces, every cache watches only those namespaces
// and the operator's own (signing and issuance keys), so that the manager needs
// RBAC in those namespaces alone. On SIGTERM the leader gives up its Lease, so a
// standby takes over at once instead of a lease duration later: safe, because the
// manager stops its controllers before it lets go, and the process exits right after.
func ManagerOptions(f managerFlags) ctrl.Options {
	jwks := client.ObjectKey{Namespace: f.namespace, Name: f.jwksConfigMap}
	cacheOptions := controllers.CacheOptions(jwks)
	if len(f.namespaces) > 0 {
		cacheOptions.DefaultNamespaces = map[string]cache.Config{f.namespace: {}}
		for _, ns := range f.namespaces {
			cacheOptions.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return ctrl.Options{
		Scheme:                        newScheme(),
		Metrics:                       metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:        f.probeAddr,
		PprofBindAddress:              f.pprofAddr,
		LeaderElection:                f.leaderElection,
		LeaderElectionID:              f.leaderElectionID,
		LeaderElectionNamespace:       f.namespace, // in a pod as well as outside one (make demo)
		LeaseDuration:                 &f.leaseDuration,
		RenewDeadline:                 &f.renewDeadline,
		RetryPeriod:                   &f.retryPeriod,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptrDuration(30 * time.Second),
		Cache:                         cacheOptions,
	}
}

func newScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = latchkeyv1.AddToScheme(scheme)
	return scheme
}

func parseAlgorithms(list string) ([]string, error) {
	var algs []string
	for _, alg := range strings.Split(list, ",") {
		alg = strings.TrimSpace(alg)
		if !slices.Contains(signingkeys.SupportedAlgorithms, alg) {
			return nil, fmt.Errorf("unsupported signing algorithm %q (want %s)", alg, strings.Join(signingkeys.SupportedAlgorithms, ", "))
		}
		algs = append(algs, alg)
	}
	return algs, nil
}

// kubeConfig loads the kubeconfig (in-cluster, $KUBECONFIG or ~/.kube/config) with
// a command's client-side settings towards the API server (--kube-api-qps,
// --kube-api-burst, --kube-api-compression).
func kubeConfig(qps float64, burst int, compression bool) (*rest.Config, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	cfg.DisableCompression = !compression
	return cfg, nil
}

// kubeAPICompressionHelp describes --kube-api-compression, which every command
// that talks to the API server has.
const kubeAPICompressionHelp = "ask the API server to gzip large responses (a Kubernetes client's default). Off saves the API server the CPU of compressing a large list (kubernetes/kubernetes#80919), at the cost of ~12x the bytes to receive: make bench's token server, on one core, took 0.9 s more CPU and ~2.5 s longer to start at 100,000 APIKeys without it"

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func ptrDuration(d time.Duration) *time.Duration { return &d }
