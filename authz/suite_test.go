package authz_test

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
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/authz"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/internal/testenv"
	"github.com/latchkey-dev/latchkey/tokenserver"
)

const (
	operatorNamespace = "latchkey-system"
	issuer            = "https://auth.authz.test"
	authzUser         = "latchkey-authz-under-test"
	jwksConfigMap     = "latchkey-jwks"
)

var (
	env    *testenv.Env
	k8s    client.Client
	scheme = runtime.NewScheme()
	logs   = &testenv.LogBuffer{}
	stop   []context.CancelFunc
	// authorizer is the authorizer under test, running with config/authz's RBAC only.
	authorizer *runningAuthz
	// tokenServerURL issues the access tokens the specs present (ES256).
	tokenServerURL string
	// plaintexts collects every credential the suite handled: none may reach a log or a metric.
	plaintexts []string
)

func TestAuthz(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Authorizer Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(10 * time.Second)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
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
	startManager()
	tokenServerURL = startTokenServer()
	authzConfig = bindAuthzRBAC()
	authorizer = startAuthz(authzConfig)
})

var _ = AfterSuite(func() {
	// Stopped even when a check below fails (a focused run may see no credential),
	// so that no control plane outlives the suite.
	defer func() {
		for _, cancel := range stop {
			cancel()
		}
		if env != nil {
			Expect(env.Stop()).To(Succeed())
		}
	}()
	if authorizer != nil {
		// Scrape before stopping: metrics must not carry a credential either.
		metrics := get(authorizer.Metrics).Body
		for _, p := range plaintexts {
			Expect(strings.Contains(metrics, p)).To(BeFalse(), "a plaintext credential reached the metrics")
		}
		authorizer.Stop()
	}
	logged := logs.String()
	Expect(plaintexts).NotTo(BeEmpty())
	for _, p := range plaintexts {
		Expect(strings.Contains(logged, p)).To(BeFalse(), "a plaintext credential reached the logs")
	}
})

// startManager runs the real manager: credentials, signing keys and the JWKS ConfigMap.
func startManager() {
	jwks := client.ObjectKey{Namespace: operatorNamespace, Name: jwksConfigMap}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   controllers.CacheOptions(jwks),
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
			Namespace: operatorNamespace, SecretName: "latchkey-signing-keys", JWKSConfigMap: jwksConfigMap,
			Policy: signingkeys.Policy{
				Algorithms:       []string{signingkeys.ES256, signingkeys.EdDSA},
				RotationInterval: 30 * 24 * time.Hour,
				MaxTokenLifetime: latchkeyv1.MaxAccessTokenTTL,
			},
		},
	})).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	stop = append(stop, cancel)
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
}

// startTokenServer runs a token server (ES256) to get access tokens from.
func startTokenServer() string {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	stop = append(stop, cancel)
	go func() {
		defer GinkgoRecover()
		Expect(tokenserver.Run(ctx, env.Config, tokenserver.Options{
			Config:              tokenserver.Config{IssuerURL: issuer, SigningAlgorithm: signingkeys.ES256},
			Listener:            listener,
			SigningKeyNamespace: operatorNamespace, SigningKeySecret: "latchkey-signing-keys",
			LastUsedFlushInterval: time.Second, LastUsedGranularity: time.Minute,
			Log: ctrl.Log.WithName("tokenserver"), Registry: prometheus.NewRegistry(),
		})).To(Succeed())
	}()
	url := "http://" + listener.Addr().String()
	Eventually(func() int { return get(url + "/readyz").Status }).Should(Equal(200), "the token server becomes ready")
	return url
}

// bindAuthzRBAC binds config/authz's roles (its ClusterRole, and its Role in the
// operator namespace) to a test user: the authorizer runs with exactly those.
// authzConfig authenticates as a user bound only to config/authz's roles.
var authzConfig *rest.Config

func bindAuthzRBAC() *rest.Config {
	ctx := context.Background()
	rbac := filepath.Join("..", "config", "authz", "rbac", "rbac.yaml")
	cfg, err := env.BindClusterRole(ctx, k8s, authzUser, rbac)
	Expect(err).NotTo(HaveOccurred())
	Expect(env.BindRole(ctx, k8s, authzUser, rbac, operatorNamespace)).To(Succeed())
	return cfg
}

// runningAuthz is an authorizer started in-process on loopback ports.
type runningAuthz struct {
	HTTP, GRPC, Metrics string
	stop                context.CancelFunc
	done                chan error
}

func startAuthz(cfg *rest.Config) *runningAuthz { return startAuthzWith(cfg, nil) }

// startAuthzWith starts an authorizer with options changed by mutate.
func startAuthzWith(cfg *rest.Config, mutate func(*authz.Options)) *runningAuthz {
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		return l
	}
	httpL, grpcL, metricsL := listen(), listen(), listen()
	ctx, cancel := context.WithCancel(context.Background())
	a := &runningAuthz{
		HTTP: "http://" + httpL.Addr().String(), GRPC: grpcL.Addr().String(),
		Metrics: "http://" + metricsL.Addr().String() + "/metrics",
		stop:    cancel, done: make(chan error, 1),
	}
	o := authz.Options{
		GRPCListener: grpcL, HTTPListener: httpL, MetricsListener: metricsL,
		IssuerURL: issuer, APIKeyHeader: "X-API-Key", Realm: "latchkey", TokenCacheSize: 100,
		JWKSNamespace: operatorNamespace, JWKSConfigMap: jwksConfigMap,
		LastUsedFlushInterval: 200 * time.Millisecond, LastUsedGranularity: time.Minute,
		Log: ctrl.Log.WithName("authz"), Registry: prometheus.NewRegistry(),
	}
	if mutate != nil {
		mutate(&o)
	}
	go func() { a.done <- authz.Run(ctx, cfg, o) }()
	Eventually(func() int { return get(a.HTTP + "/readyz").Status }).Should(Equal(200), "the authorizer becomes ready")
	return a
}

func (a *runningAuthz) Stop() {
	a.stop()
	Eventually(a.done).Should(Receive(BeNil()), "the authorizer shuts down cleanly")
}
