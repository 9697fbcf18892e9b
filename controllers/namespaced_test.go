package controllers_test

import (
	"context"
	"crypto/rand"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/latchkey-dev/latchkey/controllers"
)

// A namespace-scoped install (--namespaces, config/namespaced) gives the manager
// one cache per namespace behind each informer: its controllers set up and see
// the Secrets of those namespaces as a cluster-wide one does.
var _ = Describe("A manager watching only some namespaces", func() {
	It("sets up its controllers and reads its Secrets' records", func(ctx SpecContext) {
		watched := newNamespace()
		options := controllers.CacheOptions()
		options.DefaultNamespaces = map[string]cache.Config{operatorNamespace: {}, watched: {}}
		mgr, err := ctrl.NewManager(testEnv.Config, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, Cache: options})
		Expect(err).NotTo(HaveOccurred())
		// No signing keys: the suite's manager keeps those. Nothing is issued in the
		// watched namespace, which the suite's manager watches too.
		Expect(controllers.SetupAll(mgr, controllers.Options{
			DefaultKeyPrefix: "lk", IssuerURL: testIssuerURL, TokenURL: testTokenURL, Random: rand.Reader, Clock: testClock,
			IssuanceKey: controllers.IssuanceKeyOptions{Namespace: operatorNamespace, SecretName: "latchkey-issuance-key"},
			Controller:  controller.Options{SkipNameValidation: ptr.To(true)}, // the suite's manager has the same names
		})).To(Succeed())
		mgrCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mgrCtx) }()
		DeferCleanup(func() { stop(); Expect(<-done).To(Succeed()) })

		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "labelled",
			Labels: map[string]string{controllers.ManagedByLabel: controllers.ManagedByValue}}}
		Expect(k8s.Create(ctx, secret)).To(Succeed())
		Eventually(func() (string, error) {
			return controllers.CachedSecret(ctx, mgr.GetCache(), types.NamespacedName{Namespace: watched, Name: "labelled"})
		}).ShouldNot(BeEmpty(), "the namespace-scoped cache holds a record of the labelled Secret")
		Expect(mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})).NotTo(Succeed(),
			"nothing reads a Secret from the cache as if it held the Secret")
	})
})
