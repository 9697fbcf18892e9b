package controllers_test

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

const interval = 100 * time.Millisecond

// credentialKind describes one kind to the lifecycle specs, which run for every kind.
type credentialKind struct {
	name string
	// newObject returns an object with the spec fields the kind requires.
	newObject func(ns, name string) controllers.CredentialObject
	// secretKey is the Secret data key that holds the plaintext credential.
	secretKey string
	// forge returns a well-formed credential the operator did not issue.
	forge func() string
}

var kinds = []credentialKind{
	{
		name: "APIKey",
		newObject: func(ns, name string) controllers.CredentialObject {
			return &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		},
		secretKey: latchkeyv1.APIKeySecretKey,
		forge: func() string {
			key, err := credential.NewAPIKey(strings.NewReader(strings.Repeat("x", 32)), "lk", "live")
			Expect(err).NotTo(HaveOccurred())
			return key
		},
	},
	{
		name: "OAuthClient",
		newObject: func(ns, name string) controllers.CredentialObject {
			return &latchkeyv1.OAuthClient{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec:       latchkeyv1.OAuthClientSpec{Audiences: []string{"https://api.example.com"}},
			}
		},
		secretKey: latchkeyv1.ClientSecretSecretKey,
		forge:     func() string { return strings.Repeat("ab", 32) },
	},
}

// plaintexts collects every credential the specs read from a Secret, for the leak check.
var plaintexts sync.Map

var _ = Describe("Credential lifecycle", func() {
	for _, kind := range kinds {
		Context(kind.name, func() { describeLifecycle(kind) })
	}
})

func describeLifecycle(kind credentialKind) {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("issues a credential into an owned Secret and keeps only its hash in status", func() {
		obj := create(ctx, kind, ns, "issued", func(o controllers.CredentialObject) {
			o.Lifecycle().SecretTemplate = &latchkeyv1.SecretTemplate{Labels: map[string]string{"team": "billing"}}
		})
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)

		secret := getSecret(ctx, ns, ready.SecretName())
		plaintext := credentialIn(kind, secret)
		Expect(plaintext).NotTo(BeEmpty())
		Expect(metav1.IsControlledBy(secret, ready)).To(BeTrue(), "the resource controls its Secret")
		Expect(secret.Labels).To(HaveKeyWithValue("team", "billing"))
		Expect(secret.Labels).To(HaveKeyWithValue(controllers.ManagedByLabel, controllers.ManagedByValue))
		Expect(secret.Annotations).To(HaveKeyWithValue(latchkeyv1.SerialAnnotation, "1"))

		status := ready.CredentialStatus()
		Expect(status.Credentials).To(HaveLen(1))
		Expect(status.Credentials[0].Hash).To(Equal(credential.Hash(plaintext)))
		Expect(status.SecretRef.Name).To(Equal(ready.SecretName()))
		Expect(status.ObservedGeneration).To(Equal(ready.GetGeneration()))
		Expect(strings.Contains(mustJSON(ready), plaintext)).To(BeFalse(), "the resource carries its plaintext credential")
		readyCond := meta.FindStatusCondition(status.Conditions, latchkeyv1.ConditionReady)
		Expect(readyCond.Message).To(ContainSubstring(credential.KeyID(status.Credentials[0].Hash)), "Ready names the key ID (no Event for a routine issuance)")
	})

	It("removes from the Secret what is dropped from spec.secretTemplate, and nothing anyone else put there", func() {
		obj := create(ctx, kind, ns, "templated", func(o controllers.CredentialObject) {
			o.Lifecycle().SecretTemplate = &latchkeyv1.SecretTemplate{
				Labels: map[string]string{"team": "billing", "replicate": "all"}, Annotations: map[string]string{"note": "x"}}
		})
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		secret := getSecret(ctx, ns, ready.SecretName())
		issued := credentialIn(kind, secret)
		Expect(secret.Labels).To(HaveKeyWithValue("replicate", "all"))
		// Someone else labels and annotates the Secret too.
		secret.Labels["backup"], secret.Annotations["seen-by"] = "daily", "scanner"
		Expect(k8s.Update(ctx, secret)).To(Succeed())

		patch(ctx, kind, ready, func(o controllers.CredentialObject) {
			o.Lifecycle().SecretTemplate = &latchkeyv1.SecretTemplate{Labels: map[string]string{"team": "payments"}}
		})
		ready = waitReady(ctx, kind, ready, latchkeyv1.ReasonIssued) // the Secret is written before the status
		secret = getSecret(ctx, ns, ready.SecretName())
		Expect(secret.Labels).NotTo(HaveKey("replicate"), "a label dropped from the template stays on the Secret")
		Expect(secret.Annotations).NotTo(HaveKey("note"), "an annotation dropped from the template stays on the Secret")
		Expect(secret.Labels).To(HaveKeyWithValue("team", "payments"))
		Expect(secret.Labels).To(HaveKeyWithValue("backup", "daily"))
		Expect(secret.Annotations).To(HaveKeyWithValue("seen-by", "scanner"))
		Expect(credentialIn(kind, secret)).To(Equal(issued), "the credential stays")

		patch(ctx, kind, ready, func(o controllers.CredentialObject) { o.Lifecycle().SecretTemplate = nil })
		ready = waitReady(ctx, kind, ready, latchkeyv1.ReasonIssued)
		secret = getSecret(ctx, ns, ready.SecretName())
		Expect(secret.Labels).NotTo(HaveKey("team"))
		Expect(secret.Annotations).NotTo(HaveKey(latchkeyv1.SecretTemplateKeysAnnotation), "a Secret without a template carries no record of one")
		Expect(secret.Labels).To(HaveKeyWithValue("backup", "daily"))
		Expect(secret.Labels).To(HaveKeyWithValue(controllers.ManagedByLabel, controllers.ManagedByValue))
		Expect(credentialIn(kind, secret)).To(Equal(issued), "the credential stays")
	})

	It("changes nothing when reconciled again", func() {
		obj := create(ctx, kind, ns, "steady", nil)
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		secret := getSecret(ctx, ns, ready.SecretName())

		// A reconcile request triggers a reconcile without changing the spec.
		patch(ctx, kind, ready, requestReconcile("1"))
		Consistently(func(g Gomega) {
			g.Expect(getSecret(ctx, ns, ready.SecretName()).ResourceVersion).To(Equal(secret.ResourceVersion))
			g.Expect(get(ctx, kind, ns, "steady").CredentialStatus().Credentials).To(Equal(ready.CredentialStatus().Credentials))
		}, 2*time.Second, interval).Should(Succeed())
	})

	It("adopts the credential it wrote when it died before writing the status", func() {
		obj := create(ctx, kind, ns, failStatusPatchOnce+"crash", nil)
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		_, failed := failedOnce.Load(ready.GetUID())
		Expect(failed).To(BeTrue(), "the first status patch was made to fail")

		secret := getSecret(ctx, ns, ready.SecretName())
		Expect(secret.Annotations).To(HaveKeyWithValue(latchkeyv1.SerialAnnotation, "1"), "no second credential was issued")
		Expect(ready.CredentialStatus().Serial).To(Equal(int64(1)))
		Expect(ready.CredentialStatus().Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(credentialIn(kind, secret)))))
	})

	It("rotates once when a last-use write races the rotation's status write", func() {
		obj := create(ctx, kind, ns, usedDuringRotation+"r", nil)
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		patch(ctx, kind, ready, func(o controllers.CredentialObject) {
			o.SetAnnotations(map[string]string{latchkeyv1.RotateAnnotation: "r1"})
		})
		rotated := waitReady(ctx, kind, ready, latchkeyv1.ReasonRotating)
		_, used := usedOnce.Load(ready.GetUID())
		Expect(used).To(BeTrue(), "a use was recorded between the manager's read and its status patch")
		Consistently(func() int64 { return get(ctx, kind, ns, usedDuringRotation+"r").CredentialStatus().Serial }, time.Second, interval).
			Should(Equal(int64(2)), "one rotation: the status patch was written again on the fresh object, not adopted and rotated once more")
		Expect(rotated.CredentialStatus().LastUsedAt).NotTo(BeNil(), "and the recorded use was kept")
		Expect(rotated.CredentialStatus().LastRotateRequest).To(Equal("r1"))
	})

	It("rotates once when a last-use write races the rotation of an object applied with kubectl (last-applied annotation)", func() {
		// The manager's cache leaves kubectl's last-applied-configuration out; the
		// live read that rebases a conflicting status patch must compare alike.
		applied := func(more map[string]string) map[string]string {
			a := map[string]string{corev1.LastAppliedConfigAnnotation: `{"apiVersion":"latchkey.dev/v1alpha1"}`}
			maps.Copy(a, more)
			return a
		}
		obj := create(ctx, kind, ns, usedDuringRotation+"applied", func(o controllers.CredentialObject) { o.SetAnnotations(applied(nil)) })
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		patch(ctx, kind, ready, func(o controllers.CredentialObject) {
			o.SetAnnotations(applied(map[string]string{latchkeyv1.RotateAnnotation: "r1"}))
		})
		rotated := waitReady(ctx, kind, ready, latchkeyv1.ReasonRotating)
		_, used := usedOnce.Load(ready.GetUID())
		Expect(used).To(BeTrue(), "a use was recorded between the manager's read and its status patch")
		Consistently(func() int64 { return get(ctx, kind, ns, usedDuringRotation+"applied").CredentialStatus().Serial }, time.Second, interval).
			Should(Equal(int64(2)), "one rotation: the status patch was written again on the fresh object, not adopted and rotated once more")
		Expect(rotated.CredentialStatus().LastRotateRequest).To(Equal("r1"))
	})

	It("never overwrites a Secret it does not own", func() {
		foreign, obj := createSecretConflict(ctx, kind, ns)

		Eventually(readyReason).WithArguments(ctx, kind, obj).Should(Equal(latchkeyv1.ReasonSecretConflict))
		Expect(get(ctx, kind, ns, "conflicted").CredentialStatus().Credentials).To(BeEmpty())
		Eventually(eventReasons).WithArguments(ctx, ns, "conflicted").Should(ContainElement(latchkeyv1.ReasonSecretConflict))
		after := getSecret(ctx, ns, "taken")
		Expect(reflect.DeepEqual(after.Data, foreign.Data)).To(BeTrue(), "the foreign Secret's data was changed")
		Expect(after.OwnerReferences).To(BeEmpty())
	})

	It("rotates on request and drops the old hash when the grace period ends", func() {
		obj := create(ctx, kind, ns, "rotated", func(o controllers.CredentialObject) {
			// Long enough for a loaded machine to show Rotating first; the
			// reconciler's own wake-up ends it (below).
			o.Lifecycle().Rotation = &latchkeyv1.RotationPolicy{GracePeriod: &metav1.Duration{Duration: 6 * time.Second}}
		})
		first := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		old := credentialIn(kind, getSecret(ctx, ns, first.SecretName()))

		patch(ctx, kind, first, func(o controllers.CredentialObject) {
			o.SetAnnotations(map[string]string{latchkeyv1.RotateAnnotation: "2026-11-22T10:00:00Z"})
		})
		rotating := waitReady(ctx, kind, obj, latchkeyv1.ReasonRotating)
		current := credentialIn(kind, getSecret(ctx, ns, first.SecretName()))
		Expect(credential.Hash(current)).NotTo(Equal(credential.Hash(old)), "the credential was not replaced")
		accepted := rotating.CredentialStatus().Credentials
		Expect(accepted).To(HaveLen(2))
		Expect(accepted[0].Hash).To(Equal(credential.Hash(current)))
		Expect(accepted[0].NotAfter).To(BeNil())
		Expect(accepted[1].Hash).To(Equal(credential.Hash(old)))
		Expect(accepted[1].NotAfter).NotTo(BeNil())
		Expect(rotating.CredentialStatus().LastRotatedAt).NotTo(BeNil())
		Eventually(eventReasons).WithArguments(ctx, ns, "rotated").Should(ContainElement("Rotated"))

		// The reconciler wakes itself at the end of the grace period.
		settled := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		Expect(settled.CredentialStatus().Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(current))))

		// The same annotation value is not a new request.
		patch(ctx, kind, settled, requestReconcile("1"))
		Consistently(func() string { return credential.Hash(credentialIn(kind, getSecret(ctx, ns, first.SecretName()))) }, time.Second, interval).
			Should(Equal(credential.Hash(current)), "the credential was rotated again")
	})

	It("rotates when the interval elapses", func() {
		obj := create(ctx, kind, ns, "scheduled", func(o controllers.CredentialObject) {
			o.Lifecycle().Rotation = &latchkeyv1.RotationPolicy{
				Interval:    &metav1.Duration{Duration: time.Hour},
				GracePeriod: &metav1.Duration{Duration: 10 * time.Minute},
			}
		})
		first := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		old := credentialIn(kind, getSecret(ctx, ns, first.SecretName()))

		testClock.Advance(time.Hour + time.Second)
		patch(ctx, kind, first, requestReconcile("1"))
		rotating := waitReady(ctx, kind, obj, latchkeyv1.ReasonRotating)
		Expect(rotating.CredentialStatus().Credentials[1].Hash).To(Equal(credential.Hash(old)))
		Expect(credential.Hash(credentialIn(kind, getSecret(ctx, ns, first.SecretName())))).NotTo(Equal(credential.Hash(old)), "the credential was not rotated")

		testClock.Advance(10*time.Minute + time.Second)
		patch(ctx, kind, rotating, requestReconcile("2"))
		settled := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		Expect(settled.CredentialStatus().Credentials).To(HaveLen(1))
	})

	It("expires: every hash removed, the Secret deleted", func() {
		expiresAt := metav1.NewTime(testClock.Now().Add(6 * time.Second)) // room for a loaded machine to issue it first
		obj := create(ctx, kind, ns, "shortlived", func(o controllers.CredentialObject) { o.Lifecycle().ExpiresAt = &expiresAt })
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)

		Eventually(readyReason).WithArguments(ctx, kind, obj).Should(Equal(latchkeyv1.ReasonExpired))
		expired := get(ctx, kind, ns, "shortlived")
		Expect(expired.CredentialStatus().Credentials).To(BeEmpty())
		Expect(meta.IsStatusConditionTrue(expired.CredentialStatus().Conditions, latchkeyv1.ConditionReady)).
			To(BeTrue(), "expired as declared: the desired state (ConditionReady)")
		Eventually(secretExists).WithArguments(ctx, ns, ready.SecretName()).Should(BeFalse())
	})

	It("revokes at once, and un-revoking issues a brand-new credential", func() {
		obj := create(ctx, kind, ns, "leaked", nil)
		issued := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		old := credentialIn(kind, getSecret(ctx, ns, issued.SecretName()))

		patch(ctx, kind, issued, func(o controllers.CredentialObject) { o.Lifecycle().Revoked = true })
		Eventually(readyReason).WithArguments(ctx, kind, obj).Should(Equal(latchkeyv1.ReasonRevoked))
		Expect(get(ctx, kind, ns, "leaked").CredentialStatus().Credentials).To(BeEmpty())
		Eventually(secretExists).WithArguments(ctx, ns, issued.SecretName()).Should(BeFalse())
		Eventually(eventReasons).WithArguments(ctx, ns, "leaked").Should(ContainElement(latchkeyv1.ReasonRevoked))

		patch(ctx, kind, issued, func(o controllers.CredentialObject) { o.Lifecycle().Revoked = false })
		restored := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		current := credentialIn(kind, getSecret(ctx, ns, issued.SecretName()))
		Expect(credential.Hash(current)).NotTo(Equal(credential.Hash(old)), "the credential was not replaced")
		Expect(restored.CredentialStatus().Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(current))))
		// The revocation retired serial 2: a credential written for it but never
		// recorded (a revocation racing an issuance) can never be adopted later.
		Expect(restored.CredentialStatus().Serial).To(Equal(int64(3)))
	})

	It("reissues when someone deletes the Secret, and drops the old hash", func() {
		obj := create(ctx, kind, ns, "fragile", nil)
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		oldSecret := getSecret(ctx, ns, ready.SecretName())
		old := credentialIn(kind, oldSecret)

		Expect(k8s.Delete(ctx, oldSecret)).To(Succeed())
		Eventually(func(g Gomega) {
			secret := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(oldSecret), secret)).To(Succeed())
			g.Expect(secret.UID).NotTo(Equal(oldSecret.UID))
		}).Should(Succeed())
		current := credentialIn(kind, getSecret(ctx, ns, ready.SecretName()))
		Expect(credential.Hash(current)).NotTo(Equal(credential.Hash(old)), "the credential was not replaced")
		Eventually(func() []latchkeyv1.CredentialHash {
			return get(ctx, kind, ns, "fragile").CredentialStatus().Credentials
		}).Should(ConsistOf(HaveField("Hash", credential.Hash(current))))
		Eventually(eventReasons).WithArguments(ctx, ns, "fragile").Should(ContainElement("SecretDeleted"))
	})

	It("replaces a credential that someone edited in the Secret", func() {
		obj := create(ctx, kind, ns, "tampered", nil)
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		secret := getSecret(ctx, ns, ready.SecretName())
		original := credentialIn(kind, secret)
		chosen := kind.forge() // well formed, but not issued by the operator
		secret.Data[kind.secretKey] = []byte(chosen)
		Expect(k8s.Update(ctx, secret)).To(Succeed())

		Eventually(func() string { return credential.Hash(credentialIn(kind, getSecret(ctx, ns, ready.SecretName()))) }).
			Should(And(Not(Equal(credential.Hash(chosen))), Not(Equal(credential.Hash(original)))), "the edited credential was not replaced by a new one")
		Eventually(func(g Gomega) {
			current := credentialIn(kind, getSecret(ctx, ns, ready.SecretName()))
			g.Expect(get(ctx, kind, ns, "tampered").CredentialStatus().Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(current))))
		}).Should(Succeed())
		Eventually(eventReasons).WithArguments(ctx, ns, "tampered").Should(ContainElement("SecretModified"))
	})

	It("owns its Secret, so deleting the resource deletes the Secret", func() {
		obj := create(ctx, kind, ns, "owned", nil)
		ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
		refs := getSecret(ctx, ns, ready.SecretName()).OwnerReferences
		Expect(refs).To(HaveLen(1))
		Expect(refs[0].UID).To(Equal(ready.GetUID()))
		Expect(*refs[0].Controller).To(BeTrue())
		Expect(*refs[0].BlockOwnerDeletion).To(BeTrue())
		Expect(refs[0].Kind).To(Equal(kind.name))

		Expect(k8s.Delete(ctx, ready)).To(Succeed())
		// kube-controller-manager's garbage collector runs beside the API server.
		Eventually(secretExists).WithArguments(ctx, ns, ready.SecretName()).WithTimeout(30 * time.Second).Should(BeFalse())
	})
}

// expectNoPlaintextLeaked runs from AfterSuite, once every spec has issued, rotated and
// revoked its credentials: none read from a Secret may appear in any resource (status
// included), any Event, or anything the manager logged.
func expectNoPlaintextLeaked(ctx context.Context) {
	var apiKeys latchkeyv1.APIKeyList
	Expect(k8s.List(ctx, &apiKeys)).To(Succeed())
	var oauthClients latchkeyv1.OAuthClientList
	Expect(k8s.List(ctx, &oauthClients)).To(Succeed())
	var events eventsv1.EventList
	Expect(k8s.List(ctx, &events)).To(Succeed())
	var coreEvents corev1.EventList
	Expect(k8s.List(ctx, &coreEvents)).To(Succeed())
	Expect(events.Items).NotTo(BeEmpty())
	Expect(logs.String()).NotTo(BeEmpty())
	haystack := strings.Join([]string{
		mustJSON(apiKeys), mustJSON(oauthClients), mustJSON(events), mustJSON(coreEvents), logs.String(),
	}, "\n")

	checked := 0
	plaintexts.Range(func(k, _ any) bool {
		plaintext := k.(string)
		secretPart := plaintext[strings.LastIndex(plaintext, "_")+1:] // an API key's body, or a whole client secret
		Expect(strings.Contains(haystack, secretPart)).To(BeFalse(), "a credential leaked outside its Secret")
		checked++
		return true
	})
	Expect(checked).To(BeNumerically(">", 20), "the specs read credentials from their Secrets")
}

func create(ctx context.Context, kind credentialKind, ns, name string, mutate func(controllers.CredentialObject)) controllers.CredentialObject {
	obj := kind.newObject(ns, name)
	if mutate != nil {
		mutate(obj)
	}
	ExpectWithOffset(1, k8s.Create(ctx, obj)).To(Succeed())
	return obj
}

// createSecretConflict creates a Secret "taken" that is not the operator's, and an
// object "conflicted" that names it.
func createSecretConflict(ctx context.Context, kind credentialKind, ns string) (*corev1.Secret, controllers.CredentialObject) {
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
		Data:       map[string][]byte{"password": []byte("someone else's")},
	}
	ExpectWithOffset(1, k8s.Create(ctx, foreign)).To(Succeed())
	obj := kind.newObject(ns, "conflicted")
	obj.Lifecycle().SecretName = "taken"
	ExpectWithOffset(1, k8s.Create(ctx, obj)).To(Succeed())
	return foreign, obj
}

func get(ctx context.Context, kind credentialKind, ns, name string) controllers.CredentialObject {
	obj := kind.newObject(ns, name)
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
	return obj
}

// requestReconcile sets the reconcile request to value, keeping the other annotations.
func requestReconcile(value string) func(controllers.CredentialObject) {
	return func(o controllers.CredentialObject) {
		annotations := o.GetAnnotations()
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[latchkeyv1.ReconcileAnnotation] = value
		o.SetAnnotations(annotations)
	}
}

// patch applies mutate to the latest version, retrying on conflicts.
func patch(ctx context.Context, kind credentialKind, obj controllers.CredentialObject, mutate func(controllers.CredentialObject)) {
	EventuallyWithOffset(1, func() error {
		latest := get(ctx, kind, obj.GetNamespace(), obj.GetName())
		mutate(latest)
		return k8s.Update(ctx, latest)
	}).Should(Succeed())
}

func readyReason(ctx context.Context, kind credentialKind, obj controllers.CredentialObject) string {
	latest := get(ctx, kind, obj.GetNamespace(), obj.GetName())
	if c := meta.FindStatusCondition(latest.CredentialStatus().Conditions, latchkeyv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// waitReady waits until Ready=True with reason, for the object's current generation.
func waitReady(ctx context.Context, kind credentialKind, obj controllers.CredentialObject, reason string) controllers.CredentialObject {
	var latest controllers.CredentialObject
	EventuallyWithOffset(1, func(g Gomega) {
		latest = get(ctx, kind, obj.GetNamespace(), obj.GetName())
		status := latest.CredentialStatus()
		g.Expect(meta.IsStatusConditionTrue(status.Conditions, latchkeyv1.ConditionReady)).To(BeTrue())
		g.Expect(meta.FindStatusCondition(status.Conditions, latchkeyv1.ConditionReady).Reason).To(Equal(reason))
		g.Expect(status.ObservedGeneration).To(Equal(latest.GetGeneration()))
	}).Should(Succeed())
	return latest
}

func getSecret(ctx context.Context, ns, name string) *corev1.Secret {
	secret := &corev1.Secret{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, secret)).To(Succeed())
	return secret
}

func secretExists(ctx context.Context, ns, name string) bool {
	err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{})
	return !apierrors.IsNotFound(err)
}

// credentialIn returns the credential a Secret holds and remembers it for the leak check.
func credentialIn(kind credentialKind, secret *corev1.Secret) string {
	plaintext := string(secret.Data[kind.secretKey])
	if plaintext != "" {
		plaintexts.Store(plaintext, true)
	}
	return plaintext
}

// eventReasons lists the reasons of the Events about an object.
func eventReasons(ctx context.Context, ns, name string) []string {
	var events eventsv1.EventList
	Expect(k8s.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
	var reasons []string
	for _, e := range events.Items {
		if e.Regarding.Name == name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}
