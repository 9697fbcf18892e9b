package controllers_test

import (
	"context"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

var apiKeyKind = kinds[0]

var _ = Describe("APIKey", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("issues a well-formed live key with the default prefix and publishes its key ID", func() {
		obj := create(ctx, apiKeyKind, ns, "billing", func(o controllers.CredentialObject) {
			o.(*latchkeyv1.APIKey).Spec.Scopes = []string{"leads:read", "leads:write"}
		})
		ready := waitReady(ctx, apiKeyKind, obj, latchkeyv1.ReasonIssued).(*latchkeyv1.APIKey)
		key := credentialIn(apiKeyKind, getSecret(ctx, ns, "billing-apikey"))
		Expect(regexp.MustCompile(`^lk_live_[0-9A-Za-z]{49}$`).MatchString(key)).To(BeTrue(), "an API key of the form lk_live_<49 base62>")
		Expect(credential.ParseAPIKey(key)).Error().NotTo(HaveOccurred())
		Expect(ready.Status.KeyID).To(Equal(credential.KeyID(credential.Hash(key))))
	})

	It("is held in the manager's cache as a compact record that gives the object exactly", func() {
		expires := metav1.NewTime(time.Now().Add(24 * time.Hour).Truncate(time.Second))
		obj := create(ctx, apiKeyKind, ns, "compact", func(o controllers.CredentialObject) {
			key := o.(*latchkeyv1.APIKey)
			key.Spec.Scopes = []string{"leads:read", "leads:write"}
			key.Spec.ExpiresAt = &expires
			key.Spec.Rotation = &latchkeyv1.RotationPolicy{Interval: &metav1.Duration{Duration: 720 * time.Hour}}
			key.Annotations = map[string]string{latchkeyv1.RotateAnnotation: "first"}
		})
		waitReady(ctx, apiKeyKind, obj, latchkeyv1.ReasonIssued)
		Eventually(func(g Gomega) {
			live := get(ctx, apiKeyKind, ns, "compact").(*latchkeyv1.APIKey)
			isRecord, cached, want, err := controllers.CachedAPIKey(ctx, managerCache, live)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(isRecord).To(BeTrue(), "an issued key, as the API server sends it, is held as a record")
			g.Expect(cached).To(Equal(want), "the record gives the object in the cache's form")
		}).Should(Succeed())
	})

	It("takes the environment and prefix into the key", func() {
		obj := create(ctx, apiKeyKind, ns, "sandbox", func(o controllers.CredentialObject) {
			key := o.(*latchkeyv1.APIKey)
			key.Spec.Environment = latchkeyv1.EnvironmentTest
			key.Spec.Prefix = "acme"
			key.Spec.SecretName = "acme-sandbox-key"
		})
		waitReady(ctx, apiKeyKind, obj, latchkeyv1.ReasonIssued)
		Expect(strings.HasPrefix(credentialIn(apiKeyKind, getSecret(ctx, ns, "acme-sandbox-key")), "acme_test_")).To(BeTrue(), "the key starts with acme_test_")
	})

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
		Entry("an expiry past the year 9000", func(k *latchkeyv1.APIKey) {
			k.Spec.ExpiresAt = &metav1.Time{Time: time.Date(9500, 1, 1, 0, 0, 0, 0, time.UTC)}
		}, "must be between 1970 and 9000 (UTC)"),
		Entry("an expiry before 1970", func(k *latchkeyv1.APIKey) {
			k.Spec.ExpiresAt = &metav1.Time{Time: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}
		}, "must be between 1970 and 9000 (UTC)"),
		Entry("Secret name that is not a DNS name", func(k *latchkeyv1.APIKey) { k.Spec.SecretName = "Not_A_Name" }, "spec.secretName"),
		Entry("a templated annotation of the operator's", func(k *latchkeyv1.APIKey) {
			k.Spec.SecretTemplate = &latchkeyv1.SecretTemplate{Annotations: map[string]string{"latchkey.dev/cache-digests": "x"}}
		}, "annotations under latchkey.dev/ are the operator's"),
		Entry("a templated annotation too long to hold", func(k *latchkeyv1.APIKey) {
			k.Spec.SecretTemplate = &latchkeyv1.SecretTemplate{Annotations: map[string]string{"example.com/note": strings.Repeat("x", 4097)}}
		}, "spec.secretTemplate.annotations"),
		Entry("a templated label of the operator's", func(k *latchkeyv1.APIKey) {
			k.Spec.SecretTemplate = &latchkeyv1.SecretTemplate{Labels: map[string]string{"latchkey.dev/x": "y"}}
		}, "labels under latchkey.dev/ are the operator's"),
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
			obj := create(ctx, apiKeyKind, ns, "fixed", func(o controllers.CredentialObject) { o.(*latchkeyv1.APIKey).Spec.Prefix = "acme" })
			key := obj.(*latchkeyv1.APIKey)
			// A merge patch carries no resourceVersion, so the answer is the API server's
			// validation verdict and never a conflict with the reconciler's status write.
			base := key.DeepCopy()
			mutate(key)
			err := k8s.Patch(ctx, key, client.MergeFrom(base))
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("environment", func(k *latchkeyv1.APIKey) { k.Spec.Environment = latchkeyv1.EnvironmentTest }, "environment is immutable"),
		Entry("prefix", func(k *latchkeyv1.APIKey) { k.Spec.Prefix = "other" }, "prefix is immutable"),
		Entry("secretName", func(k *latchkeyv1.APIKey) { k.Spec.SecretName = "elsewhere" }, "secretName is immutable"),
	)
})
