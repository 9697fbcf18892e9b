package tokenserver_test

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/internal/testenv"
	"github.com/latchkey-dev/latchkey/tokenserver"
)

const (
	operatorNamespace = "latchkey-system"
	issuer            = "https://auth.latchkey.test"
	tokenServerUser   = "latchkey-tokenserver-under-test"
)

var (
	env         *testenv.Env
	k8s         client.Client
	scheme      = runtime.NewScheme()
	logs        = &testenv.LogBuffer{}
	stopManager context.CancelFunc
	// tokenServerConfig authenticates as a user bound only to config/tokenserver's roles.
	tokenServerConfig *rest.Config
	// server is the token server most specs talk to (RS256).
	server *runningServer
)

func TestTokenServer(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Token Server Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(10 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(logs, GinkgoWriter)), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(latchkeyv1.AddToScheme(scheme)).To(Succeed())

	var err error
	env, err = testenv.Start(os.Stderr)
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(env.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}})).To(Succeed())

	Expect(env.InstallTenantRoles(context.Background(), k8s)).To(Succeed())
	startManager(env.Config)
	tokenServerConfig = bindTokenServerRBAC(env)
	installPolicies()
	server = startServer(signingkeys.RS256)
})

var _ = AfterSuite(func() {
	if server != nil {
		server.Stop()
	}
	if stopManager != nil {
		stopManager()
	}
	// The control plane stops whatever the checks below find: a failed check must
	// not leave kube-apiserver and etcd running.
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
	// No credential the suite handled may appear in what the servers and the manager logged.
	logged := logs.String()
	Expect(plaintexts).NotTo(BeEmpty())
	for _, p := range plaintexts {
		Expect(strings.Contains(logged, p)).To(BeFalse(), "a plaintext credential reached the logs")
	}
})

// startManager runs the real manager, with signing keys for every algorithm.
func startManager(cfg *rest.Config) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   cache.Options{ByObject: controllers.CacheByObject()},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(controllers.SetupAll(mgr, controllers.Options{
		DefaultKeyPrefix: "lk",
		IssuerURL:        issuer,
		TokenURL:         issuer + "/oauth2/token",
		Random:           rand.Reader,
		Clock:            clock.RealClock{},
		Controller:       controller.Options{MaxConcurrentReconciles: 4},
		IssuanceKey:      controllers.IssuanceKeyOptions{Namespace: operatorNamespace, SecretName: "latchkey-issuance-key"},
		SigningKeys: &controllers.SigningKeyOptions{
			Namespace: operatorNamespace, SecretName: "latchkey-signing-keys",
			Policy: signingkeys.Policy{
				Algorithms:       signingkeys.SupportedAlgorithms,
				RotationInterval: 30 * 24 * time.Hour,
				MaxTokenLifetime: latchkeyv1.MaxAccessTokenTTL,
			},
		},
	})).To(Succeed())
	var ctx context.Context
	ctx, stopManager = context.WithCancel(context.Background())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
}

// bindTokenServerRBAC binds config/tokenserver's roles (its ClusterRole, and its
// Role in the operator namespace) to a test user: the suite's token servers run
// with exactly those.
func bindTokenServerRBAC(env *testenv.Env) *rest.Config {
	ctx := context.Background()
	rbac := filepath.Join("..", "config", "tokenserver", "rbac", "rbac.yaml")
	cfg, err := env.BindClusterRole(ctx, k8s, tokenServerUser, rbac)
	Expect(err).NotTo(HaveOccurred())
	Expect(env.BindRole(ctx, k8s, tokenServerUser, rbac, operatorNamespace)).To(Succeed())
	return cfg
}

// runningServer is a token server started in-process on a loopback port.
type runningServer struct {
	URL      string
	Metrics  string
	Registry *prometheus.Registry
	stop     context.CancelFunc
	done     chan error
}

// startServer starts a token server with the token server's RBAC and waits until it is ready.
func startServer(alg string) *runningServer {
	return startServerWith(tokenServerConfig, alg, nil, true)
}

func startServerWith(cfg *rest.Config, alg string, mutate func(*tokenserver.Options), waitReady bool) *runningServer {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	metricsListener, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningServer{
		URL:      "http://" + listener.Addr().String(),
		Metrics:  "http://" + metricsListener.Addr().String() + "/metrics",
		Registry: prometheus.NewRegistry(),
		stop:     cancel,
		done:     make(chan error, 1),
	}
	opts := tokenserver.Options{
		Config:                tokenserver.Config{IssuerURL: issuer, SigningAlgorithm: alg},
		Listener:              listener,
		MetricsListener:       metricsListener,
		SigningKeyNamespace:   operatorNamespace,
		SigningKeySecret:      "latchkey-signing-keys",
		LastUsedFlushInterval: 200 * time.Millisecond,
		LastUsedGranularity:   time.Minute,
		Log:                   ctrl.Log.WithName("tokenserver-" + alg),
		Registry:              s.Registry,
	}
	if mutate != nil {
		mutate(&opts)
	}
	go func() { s.done <- tokenserver.Run(ctx, cfg, opts) }()
	if waitReady {
		Eventually(func() int { return get(s.URL + "/readyz").StatusCode }).Should(Equal(200), "the token server becomes ready")
	} else {
		Eventually(func() int { return get(s.URL + "/healthz").StatusCode }).Should(Equal(200), "the token server serves")
	}
	return s
}

func (s *runningServer) Stop() {
	s.stop()
	Eventually(s.done).Should(Receive(BeNil()), "the server shuts down cleanly")
}
