package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
)

var _ = Describe("Credential metrics", func() {
	ctx := context.Background()

	// gather scrapes a collector reading the live objects, as the manager's reads its cache.
	gather := func() map[string]map[string]float64 {
		reg := prometheus.NewRegistry()
		Expect(reg.Register(&controllers.CredentialCollector{Reader: k8s})).To(Succeed())
		families, err := reg.Gather()
		Expect(err).NotTo(HaveOccurred())
		out := map[string]map[string]float64{}
		for _, f := range families {
			out[f.GetName()] = map[string]float64{}
			for _, m := range f.GetMetric() {
				out[f.GetName()][labelsOf(m)] = m.GetGauge().GetValue()
			}
		}
		return out
	}

	It("exports each credential's readiness, expiry, grace-period end and last use, from the objects", func() {
		ns := newNamespace()
		expires := metav1.NewTime(time.Now().Add(48 * time.Hour).Truncate(time.Second))
		key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "metered"},
			Spec: latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}, CredentialSpec: latchkeyv1.CredentialSpec{ExpiresAt: &expires}}}
		Expect(k8s.Create(ctx, key)).To(Succeed())
		revoked := &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "retired"},
			Spec: latchkeyv1.OAuthClientSpec{Audiences: []string{"https://api.acme.test"}, CredentialSpec: latchkeyv1.CredentialSpec{Revoked: true}}}
		Expect(k8s.Create(ctx, revoked)).To(Succeed())
		series := "kind=APIKey,name=metered,namespace=" + ns
		Eventually(func() float64 { return gather()["latchkey_credential_ready"][series] }).Should(Equal(1.0))
		Eventually(func() map[string]float64 { return gather()["latchkey_credential_withdrawn"] }).
			Should(HaveKeyWithValue("kind=OAuthClient,name=retired,namespace="+ns, 1.0))
		Expect(gather()["latchkey_credential_ready"]).To(HaveKeyWithValue("kind=OAuthClient,name=retired,namespace="+ns, 1.0),
			"revoked as declared is Ready")
		Expect(gather()["latchkey_credential_withdrawn"]).To(HaveKeyWithValue(series, 0.0))
		Expect(gather()["latchkey_credential_expiration_timestamp_seconds"]).To(HaveKeyWithValue(series, float64(expires.Unix())))
		Expect(gather()["latchkey_credential_grace_period_end_timestamp_seconds"]).NotTo(HaveKey(series), "no previous key yet")

		By("rotating: the previous key's grace period ends at its notAfter")
		patched := key.DeepCopy()
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(key), patched)).To(Succeed())
		base := patched.DeepCopy()
		patched.Annotations = map[string]string{latchkeyv1.RotateAnnotation: "m1"}
		Expect(k8s.Patch(ctx, patched, client.MergeFrom(base))).To(Succeed())
		Eventually(func() map[string]float64 { return gather()["latchkey_credential_grace_period_end_timestamp_seconds"] }).Should(HaveKey(series))

		By("recording a use")
		used := metav1.NewTime(time.Now().Truncate(time.Hour))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(key), patched)).To(Succeed())
		base = patched.DeepCopy()
		patched.Status.LastUsedAt = &used
		Expect(k8s.Status().Patch(ctx, patched, client.MergeFrom(base))).To(Succeed())
		Eventually(func() map[string]float64 { return gather()["latchkey_credential_last_used_timestamp_seconds"] }).
			Should(HaveKeyWithValue(series, float64(used.Unix())))
	})
})

func labelsOf(m *dto.Metric) string {
	s := ""
	for i, l := range m.GetLabel() {
		if i > 0 {
			s += ","
		}
		s += l.GetName() + "=" + l.GetValue()
	}
	return s
}
