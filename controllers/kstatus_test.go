package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
)

// kstatus is what Flux (Kustomization wait, health checks), kubectl wait's
// successors and cli-utils appliers compute from an object. These specs compute it
// with cli-utils itself, on the objects as the API server returns them.
var _ = Describe("kstatus", func() {
	for _, kind := range kinds {
		Context(kind.name, func() { describeKstatus(kind) })
	}

	It("reads an API holding its identifier as Current and one refused it as Failed", func() {
		ctx := context.Background()
		ns := newNamespace()
		identifier := "https://" + ns + ".example.com/kstatus"
		older := waitAPI(ctx, createAPI(ctx, ns, "a-older", func(a *latchkeyv1.API) { a.Spec.Identifier = identifier }),
			metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, older))).To(Succeed()) })
		Expect(kstatusOf(ctx, older).Status).To(Equal(status.CurrentStatus))

		waitPastCreationSecond(older)
		newer := createAPI(ctx, ns, "b-newer", func(a *latchkeyv1.API) { a.Spec.Identifier = identifier })
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, newer))).To(Succeed()) })
		waitAPI(ctx, newer, metav1.ConditionFalse, latchkeyv1.ReasonIdentifierConflict)
		failed := kstatusOf(ctx, newer)
		Expect(failed.Status).To(Equal(status.FailedStatus))
		Expect(failed.Message).To(ContainSubstring("is held by API " + ns + "/a-older"))

		Expect(k8s.Delete(ctx, older)).To(Succeed())
		Eventually(func() status.Status { return kstatusOf(ctx, newer).Status }).Should(Equal(status.CurrentStatus))
	})
})

func describeKstatus(kind credentialKind) {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("reads a new object as InProgress until the manager has reconciled it", func() {
		// The response to the create is the object as stored, before any reconcile:
		// the status default (observedGeneration 0) tells kstatus it is not yet observed.
		created := toUnstructured(kind.newObject(ns, "fresh"))
		Expect(k8s.Create(ctx, created)).To(Succeed())
		Expect(created.Object["status"]).To(HaveKeyWithValue("observedGeneration", BeNumerically("==", 0)))
		result, err := status.Compute(created)
		Expect(err).NotTo(HaveOccurred())
		Expect(result.Status).To(Equal(status.InProgressStatus))

		waitReady(ctx, kind, kind.newObject(ns, "fresh"), latchkeyv1.ReasonIssued)
		Expect(kstatusOf(ctx, kind.newObject(ns, "fresh")).Status).To(Equal(status.CurrentStatus))
	})

	It("reads issued, rotating, revoked and expired as Current: each is the state the spec declares", func() {
		obj := create(ctx, kind, ns, "lifecycle", func(o controllers.CredentialObject) {
			o.Lifecycle().Rotation = &latchkeyv1.RotationPolicy{GracePeriod: &metav1.Duration{Duration: time.Hour}}
		})
		issued := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		Expect(kstatusOf(ctx, issued).Status).To(Equal(status.CurrentStatus))

		patch(ctx, kind, issued, func(o controllers.CredentialObject) {
			o.SetAnnotations(map[string]string{latchkeyv1.RotateAnnotation: "r1"})
		})
		rotating := waitReady(ctx, kind, obj, latchkeyv1.ReasonRotating)
		Expect(kstatusOf(ctx, rotating).Status).To(Equal(status.CurrentStatus))

		patch(ctx, kind, rotating, func(o controllers.CredentialObject) { o.Lifecycle().Revoked = true })
		revoked := waitReady(ctx, kind, obj, latchkeyv1.ReasonRevoked)
		Expect(revoked.CredentialStatus().Credentials).To(BeEmpty(), "Ready=True here means revoked as declared, not accepted")
		result := kstatusOf(ctx, revoked)
		Expect(result.Status).To(Equal(status.CurrentStatus), "a revocation synced from Git must not leave Flux waiting")

		// Not waiting to see it issued first: on a slow machine the first reconcile
		// may come after the expiry, and Expired is the state under test.
		expiresAt := metav1.NewTime(testClock.Now().Add(2 * time.Second))
		expiring := create(ctx, kind, ns, "expiring", func(o controllers.CredentialObject) { o.Lifecycle().ExpiresAt = &expiresAt })
		expired := waitReady(ctx, kind, expiring, latchkeyv1.ReasonExpired)
		Expect(kstatusOf(ctx, expired).Status).To(Equal(status.CurrentStatus))
	})

	It("reads a Secret conflict as Failed (Stalled), and Current once it is resolved", func() {
		foreign, obj := createSecretConflict(ctx, kind, ns)
		Eventually(readyReason).WithArguments(ctx, kind, obj).Should(Equal(latchkeyv1.ReasonSecretConflict))
		failed := kstatusOf(ctx, obj)
		Expect(failed.Status).To(Equal(status.FailedStatus))
		Expect(failed.Message).To(ContainSubstring("Secret taken exists and is not controlled by this"))
		Expect(conditionOf(ctx, kind, obj, latchkeyv1.ConditionReconciling)).To(BeNil())

		Expect(k8s.Delete(ctx, foreign)).To(Succeed())
		// A reconcile request reconciles it now, rather than on the 30 s conflict recheck
		// (lifecycle_test.go waits that out).
		patch(ctx, kind, obj, requestReconcile("1"))
		waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		Expect(kstatusOf(ctx, obj).Status).To(Equal(status.CurrentStatus))
		Expect(conditionOf(ctx, kind, obj, latchkeyv1.ConditionStalled)).To(BeNil(), "Stalled is removed, not left False")
	})

	It("reads a Secret it cannot write yet as InProgress (Reconciling), retried until it can", func() {
		// A ResourceQuota of no Secrets makes the API server refuse every Secret
		// create in the namespace: a failure outside the object, which the manager
		// retries. Its status is written here, as the quota controller (not run by
		// envtest) would.
		none := corev1.ResourceList{corev1.ResourceSecrets: resource.MustParse("0")}
		quota := &corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-secrets"},
			Spec:       corev1.ResourceQuotaSpec{Hard: none},
		}
		Expect(k8s.Create(ctx, quota)).To(Succeed())
		quota.Status = corev1.ResourceQuotaStatus{Hard: none, Used: none}
		Expect(k8s.Status().Update(ctx, quota)).To(Succeed())
		// The quota admission reads quotas from its own informer (and, while that has
		// none for the namespace, from a lookup it caches for 30 s): wait until it
		// refuses a Secret, so that the manager's first create meets the quota.
		Eventually(func() error {
			probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "quota-probe"}}
			return k8s.Create(ctx, probe, client.DryRunAll)
		}).Should(MatchError(ContainSubstring("exceeded quota")))
		obj := create(ctx, kind, ns, "blocked", nil)
		Eventually(readyReason).WithArguments(ctx, kind, obj).Should(Equal(latchkeyv1.ReasonIssueFailed))
		Expect(get(ctx, kind, ns, "blocked").CredentialStatus().ObservedGeneration).To(Equal(int64(1)),
			"the verdict is this generation's: kstatus shows why, not only that the spec is unobserved")
		retrying := kstatusOf(ctx, obj)
		Expect(retrying.Status).To(Equal(status.InProgressStatus))
		Expect(retrying.Message).To(ContainSubstring("exceeded quota"))
		reconciling := conditionOf(ctx, kind, obj, latchkeyv1.ConditionReconciling)
		Expect(reconciling).NotTo(BeNil())
		Expect(reconciling.Reason).To(Equal(latchkeyv1.ReasonIssueFailed))
		Expect(conditionOf(ctx, kind, obj, latchkeyv1.ConditionStalled)).To(BeNil())

		Expect(k8s.Delete(ctx, quota)).To(Succeed())
		// A reconcile request reconciles it now, not at the end of a backoff that grows
		// with every failed retry.
		patch(ctx, kind, obj, requestReconcile("1"))
		waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		Expect(kstatusOf(ctx, obj).Status).To(Equal(status.CurrentStatus))
		Expect(conditionOf(ctx, kind, obj, latchkeyv1.ConditionReconciling)).To(BeNil())
	})

	It("reads a Secret the API server refuses as the spec shapes it as Failed (Stalled), and Current once the spec is fixed", func() {
		obj := create(ctx, kind, ns, "rejected", func(o controllers.CredentialObject) {
			o.Lifecycle().SecretTemplate = &latchkeyv1.SecretTemplate{Labels: map[string]string{"not a label key": "x"}}
		})
		Eventually(readyReason).WithArguments(ctx, kind, obj).Should(Equal(latchkeyv1.ReasonSecretRejected))
		failed := kstatusOf(ctx, obj)
		Expect(failed.Status).To(Equal(status.FailedStatus), "retrying the same write cannot help: a person must change the spec")
		Expect(failed.Message).To(ContainSubstring("not a label key"))
		Eventually(eventReasons).WithArguments(ctx, ns, "rejected").Should(ContainElement(latchkeyv1.ReasonSecretRejected))

		patch(ctx, kind, obj, func(o controllers.CredentialObject) { o.Lifecycle().SecretTemplate = nil })
		fixed := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		Expect(kstatusOf(ctx, fixed).Status).To(Equal(status.CurrentStatus))
	})
}

// kstatusOf computes kstatus on the object as the API server returns it now.
func kstatusOf(ctx context.Context, obj client.Object) *status.Result {
	live := toUnstructured(obj)
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKeyFromObject(obj), live)).To(Succeed())
	result, err := status.Compute(live)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return result
}

// toUnstructured is obj with its GVK set, as cli-utils and Flux see objects; typed
// structs would drop a zero observedGeneration.
func toUnstructured(obj client.Object) *unstructured.Unstructured {
	gvk, err := apiutil.GVKForObject(obj, k8s.Scheme())
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	u := &unstructured.Unstructured{}
	u.Object, err = runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	u.SetGroupVersionKind(gvk)
	return u
}

func conditionOf(ctx context.Context, kind credentialKind, obj client.Object, t string) *metav1.Condition {
	for _, c := range get(ctx, kind, obj.GetNamespace(), obj.GetName()).CredentialStatus().Conditions {
		if c.Type == t {
			return &c
		}
	}
	return nil
}
