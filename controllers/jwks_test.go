package controllers_test

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// Ordered: the specs share the one JWKS ConfigMap and the signing keys behind it.
var _ = Describe("JWKS ConfigMap", Ordered, func() {
	ctx := context.Background()
	key := client.ObjectKey{Namespace: operatorNamespace, Name: jwksConfigMap}

	readConfigMap := func(g Gomega) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{}
		g.Expect(k8s.Get(ctx, key, cm)).To(Succeed())
		return cm
	}
	// expectPublished checks that the ConfigMap holds the public half of the Secret's
	// key set, exactly as the token server serves it at /oauth2/jwks, and returns it.
	expectPublished := func(g Gomega) signingkeys.Set {
		set := readSigningKeys(ctx, g)
		cm := readConfigMap(g)
		want, err := json.Marshal(set.Public())
		g.Expect(err).NotTo(HaveOccurred())
		// A boolean: were a private member published (the bug this guards against),
		// printing the ConfigMap would print it.
		g.Expect(reflect.DeepEqual(cm.Data, map[string]string{controllers.JWKSDataKey: string(want)})).
			To(BeTrue(), "the ConfigMap holds exactly the public key set (its keys: %v)", slices.Sorted(maps.Keys(cm.Data)))
		g.Expect(cm.BinaryData).To(BeEmpty())
		g.Expect(cm.Labels).To(HaveKeyWithValue(controllers.ManagedByLabel, controllers.ManagedByValue))
		return set
	}

	It("publishes the public keys of the signing-key Secret, and no private parameter", func() {
		var set signingkeys.Set
		Eventually(func(g Gomega) { set = expectPublished(g) }).Should(Succeed())
		raw := []byte(readConfigMap(Default).Data[controllers.JWKSDataKey])

		var jwks jose.JSONWebKeySet
		Expect(json.Unmarshal(raw, &jwks)).To(Succeed())
		Expect(jwks.Keys).To(HaveLen(len(set.Keys)))
		for i, k := range jwks.Keys {
			Expect(k.KeyID).To(Equal(set.Keys[i].KID))
			Expect(k.Algorithm).To(Equal(set.Keys[i].Algorithm))
			Expect(k.Valid()).To(BeTrue(), k.KeyID)
			Expect(k.IsPublic()).To(BeTrue(), "%s is a public key", k.KeyID)
		}
		// And by member name, whatever a JOSE library makes of them (RFC 7518 §6).
		var members struct {
			Keys []map[string]any `json:"keys"`
		}
		Expect(json.Unmarshal(raw, &members)).To(Succeed())
		for _, k := range members.Keys {
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
				_, has := k[private]
				Expect(has).To(BeFalse(), "kid %v carries private member %s", k["kid"], private)
			}
		}
	})

	It("follows a rotation", func() {
		var before signingkeys.Set
		Eventually(func(g Gomega) { before = expectPublished(g) }).Should(Succeed())
		testClock.Advance(signingKeyRotation + time.Second)
		touchSigningKeys(ctx)
		Eventually(func(g Gomega) {
			after := expectPublished(g)
			g.Expect(after.Fingerprint()).NotTo(Equal(before.Fingerprint()), "a new next key is published")
		}).Should(Succeed())
	})

	It("is recreated when deleted", func() {
		old := readConfigMap(Default)
		Expect(k8s.Delete(ctx, old)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(readConfigMap(g).UID).NotTo(Equal(old.UID))
			expectPublished(g)
		}).Should(Succeed())
	})

	It("is restored when edited, keeping metadata others added", func() {
		cm := readConfigMap(Default)
		base := cm.DeepCopy()
		cm.Data[controllers.JWKSDataKey] = `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"planted"}]}`
		cm.Data["extra.json"] = "{}"
		cm.Annotations = map[string]string{"reflector.example.com/allowed": "true"}
		Expect(k8s.Patch(ctx, cm, client.MergeFrom(base))).To(Succeed())
		Eventually(func(g Gomega) {
			expectPublished(g)
			g.Expect(readConfigMap(g).Annotations).To(HaveKeyWithValue("reflector.example.com/allowed", "true"))
		}).Should(Succeed())
	})

	It("is the only ConfigMap the manager caches", func() {
		for _, other := range []types.NamespacedName{{Namespace: operatorNamespace, Name: "unrelated"}, {Namespace: newNamespace(), Name: jwksConfigMap}} {
			Expect(k8s.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: other.Namespace, Name: other.Name,
					Labels: map[string]string{controllers.ManagedByLabel: controllers.ManagedByValue}},
			})).To(Succeed())
		}
		Consistently(func(g Gomega) {
			var cached corev1.ConfigMapList
			g.Expect(managerCache.List(ctx, &cached)).To(Succeed())
			g.Expect(cached.Items).To(ConsistOf(HaveField("ObjectMeta.Name", jwksConfigMap)))
			g.Expect(cached.Items[0].Namespace).To(Equal(operatorNamespace))
		}, time.Second).Should(Succeed())
	})
})
