package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// Ordered: the specs share the one signing-key Secret and move the clock forward.
var _ = Describe("Signing keys", Ordered, func() {
	ctx := context.Background()
	key := client.ObjectKey{Namespace: operatorNamespace, Name: signingKeySecret}

	readSet := func(g Gomega) signingkeys.Set { return readSigningKeys(ctx, g) }
	kidsOf := func(set signingkeys.Set, alg string) []string {
		var kids []string
		for _, k := range set.Keys {
			if k.Algorithm == alg {
				kids = append(kids, k.KID)
			}
		}
		return kids
	}
	touch := func() { touchSigningKeys(ctx) }

	It("creates an active and a next key per algorithm, the next published an interval ahead", func() {
		// Other specs move the suite's clock; make the manager look at the keys at the current time.
		Eventually(func(g Gomega) { readSet(g) }).Should(Succeed())
		touch()
		Eventually(func(g Gomega) {
			set := readSet(g)
			now := testClock.Now()
			for _, alg := range []string{signingkeys.ES256, signingkeys.EdDSA} {
				active, ok := set.Active(alg, now)
				g.Expect(ok).To(BeTrue(), alg)
				next, ok := set.Active(alg, active.RetiresAt)
				g.Expect(ok).To(BeTrue(), "%s: a key follows the active one without a gap", alg)
				g.Expect(next.KID).NotTo(Equal(active.KID))
				g.Expect(next.ActivatesAt).To(Equal(active.RetiresAt))
				g.Expect(next.RetiresAt.Sub(next.ActivatesAt)).To(Equal(signingKeyRotation))
			}
		}).Should(Succeed())
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, key, secret)).To(Succeed())
		Expect(secret.Labels).To(HaveKeyWithValue(controllers.ManagedByLabel, controllers.ManagedByValue))
	})

	It("rotates on schedule and keeps a retired key until its tokens have expired", func() {
		var before signingkeys.Set
		Eventually(func(g Gomega) { before = readSet(g) }).Should(Succeed())
		oldActive, _ := before.Active(signingkeys.ES256, testClock.Now())
		oldNext, _ := before.Active(signingkeys.ES256, oldActive.RetiresAt)

		testClock.Advance(signingKeyRotation + time.Second)
		touch()
		Eventually(func(g Gomega) {
			set := readSet(g)
			active, ok := set.Active(signingkeys.ES256, testClock.Now())
			g.Expect(ok).To(BeTrue())
			g.Expect(active.KID).To(Equal(oldNext.KID), "the published next key now signs")
			g.Expect(kidsOf(set, signingkeys.ES256)).To(ContainElement(oldActive.KID), "the retired key stays for verification")
			following, ok := set.Active(signingkeys.ES256, active.RetiresAt)
			g.Expect(ok).To(BeTrue(), "a new next key is published")
			g.Expect(following.KID).NotTo(BeElementOf(oldActive.KID, oldNext.KID))
		}).Should(Succeed())

		testClock.Advance(time.Hour + 2*time.Minute) // past the longest token lifetime and the skew allowance
		touch()
		Eventually(func(g Gomega) {
			g.Expect(kidsOf(readSet(g), signingkeys.ES256)).NotTo(ContainElement(oldActive.KID))
		}).Should(Succeed())
	})

	It("recreates the keys when the Secret is deleted", func() {
		var before signingkeys.Set
		Eventually(func(g Gomega) { before = readSet(g) }).Should(Succeed())
		Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(kidsOf(readSet(g), signingkeys.EdDSA)).To(HaveLen(2))
			g.Expect(kidsOf(readSet(g), signingkeys.EdDSA)).NotTo(ContainElements(kidsOf(before, signingkeys.EdDSA)))
		}).Should(Succeed())
	})

	It("never replaces a key set it cannot read, so tokens it signed keep verifying once fixed", func() {
		secret := &corev1.Secret{}
		Eventually(func() error { return k8s.Get(ctx, key, secret) }).Should(Succeed())
		good := secret.Data[signingkeys.SecretDataKey]
		base := secret.DeepCopy()
		secret.Data[signingkeys.SecretDataKey] = []byte(`{"keys": [{"kid": "x", "alg": "ES256", "jwk": {}}]}`)
		Expect(k8s.Patch(ctx, secret, client.MergeFrom(base))).To(Succeed())
		Consistently(func(g Gomega) bool {
			g.Expect(k8s.Get(ctx, key, secret)).To(Succeed())
			return bytes.Contains(secret.Data[signingkeys.SecretDataKey], []byte(`"kid": "x"`))
		}, "2s").Should(BeTrue(), "the unreadable key set was replaced")
		Expect(logs.String()).To(ContainSubstring("fix or delete Secret " + operatorNamespace + "/" + signingKeySecret))

		base = secret.DeepCopy()
		secret.Data[signingkeys.SecretDataKey] = good
		Expect(k8s.Patch(ctx, secret, client.MergeFrom(base))).To(Succeed())
		Eventually(func(g Gomega) { readSet(g) }).Should(Succeed())
	})

	It("never logs private key material", func() {
		var set signingkeys.Set
		Eventually(func(g Gomega) { set = readSet(g) }).Should(Succeed())
		logged := logs.String()
		for _, k := range set.Keys {
			raw, err := json.Marshal(k.Private)
			Expect(err).NotTo(HaveOccurred())
			var fields struct {
				D string `json:"d"`
			}
			Expect(json.Unmarshal(raw, &fields)).To(Succeed())
			Expect(fields.D).NotTo(BeEmpty())
			Expect(strings.Contains(logged, fields.D)).To(BeFalse(), "kid %s: the private key reached the logs", k.KID)
		}
	})
})

// readSigningKeys reads the signing-key Secret's set.
func readSigningKeys(ctx context.Context, g Gomega) signingkeys.Set {
	secret := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: signingKeySecret}, secret)).To(Succeed())
	set, err := signingkeys.Parse(secret.Data[signingkeys.SecretDataKey])
	g.Expect(err).NotTo(HaveOccurred())
	return set
}

// touchSigningKeys changes the Secret's metadata, which makes the manager look at
// it at once (rather than at its next scheduled wake-up, in real time).
func touchSigningKeys(ctx context.Context) {
	secret := &corev1.Secret{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: signingKeySecret}, secret)).To(Succeed())
	base := secret.DeepCopy()
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	secret.Annotations["test.latchkey.dev/touched"] = time.Now().String()
	ExpectWithOffset(1, k8s.Patch(ctx, secret, client.MergeFrom(base))).To(Succeed())
}
