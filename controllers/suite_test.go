package controllers_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
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
)

// Name prefixes that mark an object for the suite's client (crashingClient). Names,
// because the manager's cache keeps no annotation of a credential but its own.
const (
	// failStatusPatchOnce: the object's first status patch fails, as if the manager
	// died between writing the Secret and writing the status.
	failStatusPatchOnce = "fail-status-patch-once-"
	// usedDuringRotation: the object's first status patch answering a rotate request
	// is preceded by a status.lastUsedAt patch, as a token server records a use at
	// that moment: the manager's patch then meets a conflict.
	usedDuringRotation = "used-during-rotation-"
)

// What the suite's manager writes into OAuthClient Secrets.
const (
	testIssuerURL = "https://auth.latchkey.test"
	testTokenURL  = "https://auth.latchkey.test/oauth2/token"
)

// Where and how the suite's manager keeps the token-signing keys.
const (
	operatorNamespace  = "latchkey-system"
	signingKeySecret   = "latchkey-signing-keys"
	jwksConfigMap      = "latchkey-jwks" // the name config/rbac/jwks_role.yaml allows
	signingKeyRotation = 2 * time.Hour
)

var (
	testEnv   *testenv.Env
	k8s       client.Client // the test's own client, uncached
	scheme    = runtime.NewScheme()
	testClock = &offsetClock{}
	logs      = &testenv.LogBuffer{}
	cancel    context.CancelFunc
	// failedOnce remembers the objects whose status patch was already failed.
	failedOnce sync.Map
	// managerCache is the manager's own cache, to check what it holds.
	managerCache cache.Cache
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(10 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	// Everything the manager logs goes to the Ginkgo output and to a buffer that the
	// no-plaintext spec searches.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(logs, GinkgoWriter)), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(latchkeyv1.AddToScheme(scheme)).To(Succeed())

	var err error
	testEnv, err = testenv.Start(os.Stderr)
	Expect(err).NotTo(HaveOccurred())
	cfg := testEnv.Config
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}})).To(Succeed())
	Expect(testEnv.InstallTenantRoles(context.Background(), k8s)).To(Succeed())

	// The manager runs as a user bound to exactly its production ClusterRole
	// (config/rbac/role.yaml, generated from the +kubebuilder:rbac markers) and its
	// Role in the operator's namespace (config/rbac/jwks_role.yaml): a call the
	// markers or the Role forgot fails here as it would in a cluster.
	const managerUser = "latchkey-manager-under-test"
	managerCfg, err := testEnv.BindClusterRole(context.Background(), k8s, managerUser, "../config/rbac/role.yaml")
	Expect(err).NotTo(HaveOccurred())
	Expect(testEnv.BindRole(context.Background(), k8s, managerUser, "../config/rbac/jwks_role.yaml", operatorNamespace)).To(Succeed())
	mgr, err := ctrl.NewManager(managerCfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   controllers.CacheOptions(client.ObjectKey{Namespace: operatorNamespace, Name: jwksConfigMap}),
	})
	Expect(err).NotTo(HaveOccurred())
	managerCache = mgr.GetCache()
	Expect(controllers.SetupAll(mgr, controllers.Options{
		DefaultKeyPrefix: "lk",
		IssuerURL:        testIssuerURL,
		TokenURL:         testTokenURL,
		Random:           rand.Reader,
		Clock:            testClock,
		Controller:       controller.Options{MaxConcurrentReconciles: 4},
		Client:           crashingClient{mgr.GetClient()},
		IssuanceKey:      controllers.IssuanceKeyOptions{Namespace: operatorNamespace, SecretName: "latchkey-issuance-key"},
		SigningKeys: &controllers.SigningKeyOptions{
			Namespace: operatorNamespace, SecretName: signingKeySecret, JWKSConfigMap: jwksConfigMap,
			Policy: signingkeys.Policy{
				Algorithms:       []string{signingkeys.ES256, signingkeys.EdDSA}, // RSA works the same and is slower to generate
				RotationInterval: signingKeyRotation,
				MaxTokenLifetime: time.Hour,
			},
		},
	})).To(Succeed())

	var ctx context.Context
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	// Stopped even when the check below fails (a focused run fails it, having read
	// few credentials), so that no control plane outlives the suite.
	defer func() {
		if cancel != nil {
			cancel()
		}
		if testEnv != nil {
			Expect(testEnv.Stop()).To(Succeed())
		}
	}()
	if k8s != nil {
		By("checking that no plaintext key reached a status, an Event or a log line")
		expectNoPlaintextLeaked(context.Background())
	}
})

// crashingClient wraps the real client: an object named failStatusPatchOnce… has
// its first status patch fail after everything before it (the Secret) was written.
type crashingClient struct{ client.Client }

// usedOnce records the objects whose rotation met an injected use.
var usedOnce sync.Map

func (c crashingClient) Status() client.SubResourceWriter { return crashingStatus{c.Client.Status()} }

type crashingStatus struct{ client.SubResourceWriter }

func (s crashingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if strings.HasPrefix(obj.GetName(), failStatusPatchOnce) {
		if _, done := failedOnce.LoadOrStore(obj.GetUID(), true); !done {
			return errors.New("injected: the manager died before writing status")
		}
	}
	if strings.HasPrefix(obj.GetName(), usedDuringRotation) && obj.GetAnnotations()[latchkeyv1.RotateAnnotation] != "" {
		if _, done := usedOnce.LoadOrStore(obj.GetUID(), true); !done {
			use := client.RawPatch(types.MergePatchType, []byte(`{"status":{"lastUsedAt":"`+time.Now().UTC().Truncate(time.Minute).Format(time.RFC3339)+`"}}`))
			if err := s.SubResourceWriter.Patch(ctx, obj.DeepCopyObject().(client.Object), use); err != nil {
				return err
			}
		}
	}
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// offsetClock is the real clock plus an offset the tests move forward.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// newNamespace gives each spec a namespace of its own.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "latchkey-test-"}}
	Expect(k8s.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}
