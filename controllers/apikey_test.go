package controllers_test

import (
	"context"
	"encoding/json"
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
	"github.com/latchkey-dev/latchkey/internal/credential"
)

const (
	timeout  = 10 * time.Second
	interval = 100 * time.Millisecond
)

// plaintexts collects every key the specs read from a Secret, for the leak check.
var plaintexts sync.Map

var _ = Describe("APIKey lifecycle", func() {
	ctx := context.Background()
	var ns string

	BeforeEach(func() { ns = newNamespace() })

	It("issues a key into an owned Secret and keeps only its hash in status", func() {
		key := createAPIKey(ctx, ns, "billing", func(k *latchkeyv1.APIKey) {
			k.Spec.Scopes = []string{"leads:read", "leads:write"}
			k.Spec.SecretTemplate = &latchkeyv1.SecretTemplate{Labels: map[string]string{"team": "billing"}}
		})
		ready := waitReady(ctx, key, latchkeyv1.ReasonIssued)

		secret := getSecret(ctx, ns, "billing-apikey")
		plaintext := keyIn(secret)
		Expect(plaintext).To(MatchRegexp(`^lk_live_[0-9A-Za-z]{49}$`))
		Expect(credential.ParseAPIKey(plaintext)).Error().NotTo(HaveOccurred())
		Expect(metav1.IsControlledBy(secret, ready)).To(BeTrue(), "the APIKey controls its Secret")
		Expect(secret.Labels).To(HaveKeyWithValue("team", "billing"))
		Expect(secret.Annotations).To(HaveKeyWithValue(latchkeyv1.SerialAnnotation, "1"))

		Expect(ready.Status.Credentials).To(HaveLen(1))
		Expect(ready.Status.Credentials[0].Hash).To(Equal(credential.Hash(plaintext)))
		Expect(ready.Status.KeyID).To(Equal(credential.KeyID(credential.Hash(plaintext))))
		Expect(ready.Status.SecretRef.Name).To(Equal("billing-apikey"))
		Expect(ready.Status.ObservedGeneration).To(Equal(ready.Generation))
		Expect(statusJSON(ready)).NotTo(ContainSubstring(plaintext))
		Eventually(eventReasons).WithArguments(ctx, ns, "billing").Should(ContainElement(latchkeyv1.ReasonIssued))
	})

	It("takes the environment and prefix into the key", func() {
		key := createAPIKey(ctx, ns, "sandbox", func(k *latchkeyv1.APIKey) {
			k.Spec.Environment = latchkeyv1.EnvironmentTest
			k.Spec.Prefix = "acme"
			k.Spec.SecretName = "acme-sandbox-key"
		})
		waitReady(ctx, key, latchkeyv1.ReasonIssued)
		Expect(keyIn(getSecret(ctx, ns, "acme-sandbox-key"))).To(HavePrefix("acme_test_"))
	})

	It("changes nothing when reconciled again", func() {
		key := createAPIKey(ctx, ns, "steady", nil)
		ready := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		secret := getSecret(ctx, ns, "steady-apikey")

		// A label change triggers a reconcile without changing the spec.
		patchAPIKey(ctx, ready, func(k *latchkeyv1.APIKey) { k.Labels = map[string]string{"poke": "1"} })
		Consistently(func(g Gomega) {
			again := getSecret(ctx, ns, "steady-apikey")
			g.Expect(again.ResourceVersion).To(Equal(secret.ResourceVersion))
			g.Expect(getAPIKey(ctx, ns, "steady").Status.Credentials).To(Equal(ready.Status.Credentials))
		}, 2*time.Second, interval).Should(Succeed())
	})

	It("adopts the key it wrote when it died before writing the status", func() {
		key := createAPIKey(ctx, ns, "crash", func(k *latchkeyv1.APIKey) {
			k.Annotations = map[string]string{failStatusPatchOnce: ""}
		})
		ready := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		_, failed := failedOnce.Load(ready.UID)
		Expect(failed).To(BeTrue(), "the first status patch was made to fail")

		secret := getSecret(ctx, ns, "crash-apikey")
		Expect(secret.Annotations).To(HaveKeyWithValue(latchkeyv1.SerialAnnotation, "1"), "no second key was issued")
		Expect(ready.Status.Serial).To(Equal(int64(1)))
		Expect(ready.Status.Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(keyIn(secret)))))
	})

	It("never overwrites a Secret it does not own", func() {
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
			Data:       map[string][]byte{"password": []byte("someone else's")},
		}
		Expect(k8s.Create(ctx, foreign)).To(Succeed())
		key := createAPIKey(ctx, ns, "conflicted", func(k *latchkeyv1.APIKey) { k.Spec.SecretName = "taken" })

		Eventually(readyReason).WithArguments(ctx, key).Should(Equal(latchkeyv1.ReasonSecretConflict))
		Expect(getAPIKey(ctx, ns, "conflicted").Status.Credentials).To(BeEmpty())
		Eventually(eventReasons).WithArguments(ctx, ns, "conflicted").Should(ContainElement(latchkeyv1.ReasonSecretConflict))
		after := getSecret(ctx, ns, "taken")
		Expect(after.Data).To(Equal(foreign.Data))
		Expect(after.OwnerReferences).To(BeEmpty())
	})

	It("rotates on request and drops the old hash when the grace period ends", func() {
		key := createAPIKey(ctx, ns, "rotated", func(k *latchkeyv1.APIKey) {
			k.Spec.Rotation = &latchkeyv1.RotationPolicy{GracePeriod: &metav1.Duration{Duration: 3 * time.Second}}
		})
		first := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		oldKey := keyIn(getSecret(ctx, ns, "rotated-apikey"))

		patchAPIKey(ctx, first, func(k *latchkeyv1.APIKey) {
			k.Annotations = map[string]string{latchkeyv1.RotateAnnotation: "2026-11-22T10:00:00Z"}
		})
		rotating := waitReady(ctx, key, latchkeyv1.ReasonRotating)
		newKey := keyIn(getSecret(ctx, ns, "rotated-apikey"))
		Expect(newKey).NotTo(Equal(oldKey))
		Expect(rotating.Status.Credentials).To(HaveLen(2))
		Expect(rotating.Status.Credentials[0].Hash).To(Equal(credential.Hash(newKey)))
		Expect(rotating.Status.Credentials[0].NotAfter).To(BeNil())
		Expect(rotating.Status.Credentials[1].Hash).To(Equal(credential.Hash(oldKey)))
		Expect(rotating.Status.Credentials[1].NotAfter).NotTo(BeNil())
		Expect(rotating.Status.LastRotatedAt).NotTo(BeNil())
		Eventually(eventReasons).WithArguments(ctx, ns, "rotated").Should(ContainElement("Rotated"))

		// The reconciler wakes itself at the end of the grace period.
		settled := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		Expect(settled.Status.Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(newKey))))

		// The same annotation value is not a new request.
		patchAPIKey(ctx, settled, func(k *latchkeyv1.APIKey) { k.Labels = map[string]string{"poke": "1"} })
		Consistently(func() string { return keyIn(getSecret(ctx, ns, "rotated-apikey")) }, time.Second, interval).Should(Equal(newKey))
	})

	It("rotates when the interval elapses", func() {
		key := createAPIKey(ctx, ns, "scheduled", func(k *latchkeyv1.APIKey) {
			k.Spec.Rotation = &latchkeyv1.RotationPolicy{
				Interval:    &metav1.Duration{Duration: time.Hour},
				GracePeriod: &metav1.Duration{Duration: 10 * time.Minute},
			}
		})
		first := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		oldKey := keyIn(getSecret(ctx, ns, "scheduled-apikey"))

		testClock.Advance(time.Hour + time.Second)
		patchAPIKey(ctx, first, func(k *latchkeyv1.APIKey) { k.Labels = map[string]string{"poke": "1"} })
		rotating := waitReady(ctx, key, latchkeyv1.ReasonRotating)
		Expect(rotating.Status.Credentials[1].Hash).To(Equal(credential.Hash(oldKey)))
		Expect(keyIn(getSecret(ctx, ns, "scheduled-apikey"))).NotTo(Equal(oldKey))

		testClock.Advance(10*time.Minute + time.Second)
		patchAPIKey(ctx, rotating, func(k *latchkeyv1.APIKey) { k.Labels = map[string]string{"poke": "2"} })
		settled := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		Expect(settled.Status.Credentials).To(HaveLen(1))
	})

	It("expires: every hash removed, the Secret deleted", func() {
		expiresAt := metav1.NewTime(testClock.Now().Add(3 * time.Second))
		key := createAPIKey(ctx, ns, "shortlived", func(k *latchkeyv1.APIKey) { k.Spec.ExpiresAt = &expiresAt })
		waitReady(ctx, key, latchkeyv1.ReasonIssued)

		Eventually(readyReason).WithArguments(ctx, key).Should(Equal(latchkeyv1.ReasonExpired))
		expired := getAPIKey(ctx, ns, "shortlived")
		Expect(expired.Status.Credentials).To(BeEmpty())
		Expect(meta.IsStatusConditionFalse(expired.Status.Conditions, latchkeyv1.ConditionReady)).To(BeTrue())
		Eventually(secretExists).WithArguments(ctx, ns, "shortlived-apikey").Should(BeFalse())
	})

	It("revokes at once, and un-revoking issues a brand-new key", func() {
		key := createAPIKey(ctx, ns, "leaked", nil)
		issued := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		oldKey := keyIn(getSecret(ctx, ns, "leaked-apikey"))

		patchAPIKey(ctx, issued, func(k *latchkeyv1.APIKey) { k.Spec.Revoked = true })
		Eventually(readyReason).WithArguments(ctx, key).Should(Equal(latchkeyv1.ReasonRevoked))
		Expect(getAPIKey(ctx, ns, "leaked").Status.Credentials).To(BeEmpty())
		Eventually(secretExists).WithArguments(ctx, ns, "leaked-apikey").Should(BeFalse())
		Eventually(eventReasons).WithArguments(ctx, ns, "leaked").Should(ContainElement(latchkeyv1.ReasonRevoked))

		patchAPIKey(ctx, getAPIKey(ctx, ns, "leaked"), func(k *latchkeyv1.APIKey) { k.Spec.Revoked = false })
		restored := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		newKey := keyIn(getSecret(ctx, ns, "leaked-apikey"))
		Expect(newKey).NotTo(Equal(oldKey))
		Expect(restored.Status.Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(newKey))))
		Expect(restored.Status.Serial).To(Equal(int64(2)))
	})

	It("reissues when someone deletes the Secret, and drops the old hash", func() {
		key := createAPIKey(ctx, ns, "fragile", nil)
		waitReady(ctx, key, latchkeyv1.ReasonIssued)
		oldSecret := getSecret(ctx, ns, "fragile-apikey")
		oldKey := keyIn(oldSecret)

		Expect(k8s.Delete(ctx, oldSecret)).To(Succeed())
		Eventually(func(g Gomega) {
			secret := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fragile-apikey"}, secret)).To(Succeed())
			g.Expect(secret.UID).NotTo(Equal(oldSecret.UID))
		}, timeout, interval).Should(Succeed())
		newKey := keyIn(getSecret(ctx, ns, "fragile-apikey"))
		Expect(newKey).NotTo(Equal(oldKey))
		Eventually(func() []latchkeyv1.CredentialHash {
			return getAPIKey(ctx, ns, "fragile").Status.Credentials
		}, timeout, interval).Should(ConsistOf(HaveField("Hash", credential.Hash(newKey))))
		Eventually(eventReasons).WithArguments(ctx, ns, "fragile").Should(ContainElement("SecretDeleted"))
	})

	It("replaces a key that someone edited in the Secret", func() {
		key := createAPIKey(ctx, ns, "tampered", nil)
		waitReady(ctx, key, latchkeyv1.ReasonIssued)
		secret := getSecret(ctx, ns, "tampered-apikey")
		original := keyIn(secret)
		chosen, err := credential.NewAPIKey(strings.NewReader(strings.Repeat("x", 32)), "lk", "live")
		Expect(err).NotTo(HaveOccurred())
		secret.Data[latchkeyv1.APIKeySecretKey] = []byte(chosen) // well formed, but not issued by the operator
		Expect(k8s.Update(ctx, secret)).To(Succeed())

		Eventually(func() string { return keyIn(getSecret(ctx, ns, "tampered-apikey")) }, timeout, interval).
			Should(And(Not(Equal(chosen)), Not(Equal(original))))
		Eventually(func(g Gomega) {
			g.Expect(getAPIKey(ctx, ns, "tampered").Status.Credentials).To(
				ConsistOf(HaveField("Hash", credential.Hash(keyIn(getSecret(ctx, ns, "tampered-apikey"))))))
		}, timeout, interval).Should(Succeed())
		Eventually(eventReasons).WithArguments(ctx, ns, "tampered").Should(ContainElement("SecretModified"))
	})

	It("owns its Secret so that deleting the APIKey deletes the Secret", func() {
		key := createAPIKey(ctx, ns, "owned", nil)
		ready := waitReady(ctx, key, latchkeyv1.ReasonIssued)
		refs := getSecret(ctx, ns, "owned-apikey").OwnerReferences
		Expect(refs).To(HaveLen(1))
		Expect(refs[0].UID).To(Equal(ready.UID))
		Expect(*refs[0].Controller).To(BeTrue())
		Expect(*refs[0].BlockOwnerDeletion).To(BeTrue())
		Expect(refs[0].Kind).To(Equal("APIKey"))
		Expect(refs[0].APIVersion).To(Equal("latchkey.dev/v1alpha1"))
	})
})

var _ = Describe("APIKey schema", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("rejects bad input with a clear API server error",
		func(mutate func(*latchkeyv1.APIKey), message string) {
			key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"}}
			mutate(key)
			err := k8s.Create(ctx, key)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("scope without an action", func(k *latchkeyv1.APIKey) { k.Spec.Scopes = []string{"leads"} }, "spec.scopes[0]"),
		Entry("upper-case scope", func(k *latchkeyv1.APIKey) { k.Spec.Scopes = []string{"Leads:read"} }, "spec.scopes[0]"),
		Entry("duplicate scopes", func(k *latchkeyv1.APIKey) { k.Spec.Scopes = []string{"leads:read", "leads:read"} }, "Duplicate value"),
		Entry("prefix with an underscore", func(k *latchkeyv1.APIKey) { k.Spec.Prefix = "my_co" }, "spec.prefix"),
		Entry("prefix too long", func(k *latchkeyv1.APIKey) { k.Spec.Prefix = "abcdefghijklm" }, "spec.prefix"),
		Entry("unknown environment", func(k *latchkeyv1.APIKey) { k.Spec.Environment = "prod" }, `supported values: "live", "test"`),
		Entry("rotation interval under a minute", func(k *latchkeyv1.APIKey) {
			k.Spec.Rotation = &latchkeyv1.RotationPolicy{Interval: &metav1.Duration{Duration: time.Second}}
		}, "interval must be at least 1m"),
		Entry("grace period not shorter than the interval", func(k *latchkeyv1.APIKey) {
			k.Spec.Rotation = &latchkeyv1.RotationPolicy{
				Interval: &metav1.Duration{Duration: time.Hour}, GracePeriod: &metav1.Duration{Duration: 2 * time.Hour},
			}
		}, "gracePeriod must be shorter than interval"),
		Entry("Secret name that is not a DNS name", func(k *latchkeyv1.APIKey) { k.Spec.SecretName = "Not_A_Name" }, "spec.secretName"),
	)

	It("defaults the environment and the grace period", func() {
		key := &latchkeyv1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "defaults"},
			Spec: latchkeyv1.APIKeySpec{CredentialSpec: latchkeyv1.CredentialSpec{
				Rotation: &latchkeyv1.RotationPolicy{Interval: &metav1.Duration{Duration: 24 * time.Hour}},
			}},
		}
		Expect(k8s.Create(ctx, key)).To(Succeed())
		Expect(key.Spec.Environment).To(Equal(latchkeyv1.EnvironmentLive))
		Expect(key.Spec.Rotation.GracePeriod.Duration).To(Equal(time.Hour))
	})

	DescribeTable("keeps the identity of an issued key immutable",
		func(mutate func(*latchkeyv1.APIKey), message string) {
			key := createAPIKey(ctx, ns, "fixed", func(k *latchkeyv1.APIKey) { k.Spec.Prefix = "acme" })
			mutate(key)
			err := k8s.Update(ctx, key)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("environment", func(k *latchkeyv1.APIKey) { k.Spec.Environment = latchkeyv1.EnvironmentTest }, "environment is immutable"),
		Entry("prefix", func(k *latchkeyv1.APIKey) { k.Spec.Prefix = "other" }, "prefix is immutable"),
		Entry("secretName", func(k *latchkeyv1.APIKey) { k.Spec.SecretName = "elsewhere" }, "secretName is immutable"),
	)
})

// expectNoPlaintextLeaked runs from AfterSuite, once every spec has issued, rotated and
// revoked its keys: no key read from a Secret may appear in any APIKey (status
// included), any Event, or anything the manager logged.
func expectNoPlaintextLeaked(ctx context.Context) {
	var keys latchkeyv1.APIKeyList
	Expect(k8s.List(ctx, &keys)).To(Succeed())
	var events eventsv1.EventList
	Expect(k8s.List(ctx, &events)).To(Succeed())
	var coreEvents corev1.EventList
	Expect(k8s.List(ctx, &coreEvents)).To(Succeed())
	Expect(events.Items).NotTo(BeEmpty())
	Expect(logs.String()).NotTo(BeEmpty())
	haystack := strings.Join([]string{mustJSON(keys), mustJSON(events), mustJSON(coreEvents), logs.String()}, "\n")

	checked := 0
	plaintexts.Range(func(k, _ any) bool {
		plaintext := k.(string)
		body := plaintext[strings.LastIndex(plaintext, "_")+1:]
		Expect(strings.Contains(haystack, body)).To(BeFalse(), "a key leaked outside its Secret")
		checked++
		return true
	})
	Expect(checked).To(BeNumerically(">", 10), "the specs read keys from their Secrets")
}

func createAPIKey(ctx context.Context, ns, name string, mutate func(*latchkeyv1.APIKey)) *latchkeyv1.APIKey {
	key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if mutate != nil {
		mutate(key)
	}
	ExpectWithOffset(1, k8s.Create(ctx, key)).To(Succeed())
	return key
}

func getAPIKey(ctx context.Context, ns, name string) *latchkeyv1.APIKey {
	key := &latchkeyv1.APIKey{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, key)).To(Succeed())
	return key
}

// patchAPIKey applies mutate to the latest version, retrying on conflicts.
func patchAPIKey(ctx context.Context, key *latchkeyv1.APIKey, mutate func(*latchkeyv1.APIKey)) {
	EventuallyWithOffset(1, func() error {
		latest := getAPIKey(ctx, key.Namespace, key.Name)
		mutate(latest)
		return k8s.Update(ctx, latest)
	}, timeout, interval).Should(Succeed())
}

func readyReason(ctx context.Context, key *latchkeyv1.APIKey) string {
	latest := getAPIKey(ctx, key.Namespace, key.Name)
	if c := meta.FindStatusCondition(latest.Status.Conditions, latchkeyv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// waitReady waits until Ready=True with reason and the Secret matches the status.
func waitReady(ctx context.Context, key *latchkeyv1.APIKey, reason string) *latchkeyv1.APIKey {
	var latest *latchkeyv1.APIKey
	EventuallyWithOffset(1, func(g Gomega) {
		latest = getAPIKey(ctx, key.Namespace, key.Name)
		g.Expect(meta.IsStatusConditionTrue(latest.Status.Conditions, latchkeyv1.ConditionReady)).To(BeTrue())
		g.Expect(meta.FindStatusCondition(latest.Status.Conditions, latchkeyv1.ConditionReady).Reason).To(Equal(reason))
		g.Expect(latest.Status.ObservedGeneration).To(Equal(latest.Generation))
	}, timeout, interval).Should(Succeed())
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

// keyIn returns the key a Secret holds and remembers it for the leak check.
func keyIn(secret *corev1.Secret) string {
	plaintext := string(secret.Data[latchkeyv1.APIKeySecretKey])
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

func statusJSON(key *latchkeyv1.APIKey) string { return mustJSON(key.Status) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}
