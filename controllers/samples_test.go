package controllers_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

var _ = Describe("Samples", func() {
	DescribeTable("apply as they are and become Ready",
		func(file string, kind credentialKind, count int) {
			ctx := context.Background()
			ns := newNamespace()
			objects := applySamples(ctx, ns, file)
			Expect(objects).To(HaveLen(count))
			for _, obj := range objects {
				Eventually(func(g Gomega) {
					latest := get(ctx, kind, ns, obj.GetName())
					g.Expect(meta.IsStatusConditionTrue(latest.CredentialStatus().Conditions, latchkeyv1.ConditionReady)).To(BeTrue())
					g.Expect(credentialIn(kind, getSecret(ctx, ns, latest.SecretName()))).NotTo(BeEmpty())
				}).Should(Succeed())
			}
		},
		Entry("APIKeys", "latchkey_v1alpha1_apikey.yaml", kinds[0], 2),
		Entry("OAuthClients", "latchkey_v1alpha1_oauthclient.yaml", kinds[1], 2),
	)

	It("apply the API as it is, and it becomes Ready (Accepted)", func() {
		ctx := context.Background()
		ns := newNamespace()
		objects := applySamples(ctx, ns, "latchkey_v1alpha1_api.yaml")
		Expect(objects).To(HaveLen(1))
		api := &latchkeyv1.API{}
		// Other specs count on which APIs exist (ScopesKnown's NoCatalogue).
		DeferCleanup(func() {
			Expect(k8s.Delete(ctx, api)).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(api), api)) }).Should(BeTrue())
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: objects[0].GetName()}, api)).To(Succeed())
			ready := meta.FindStatusCondition(api.Status.Conditions, latchkeyv1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Reason).To(Equal(latchkeyv1.ReasonAccepted))
			g.Expect(api.Status.ScopeCount).To(Equal(int32(2)))
		}).Should(Succeed())
	})
})

// applySamples server-side-applies every document of a sample file into namespace ns.
func applySamples(ctx context.Context, ns, file string) []*unstructured.Unstructured {
	raw, err := os.ReadFile(filepath.Join("..", "config", "samples", file))
	Expect(err).NotTo(HaveOccurred())
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var objects []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		err := decoder.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		if len(obj.Object) == 0 {
			continue
		}
		obj.SetNamespace(ns)
		Expect(k8s.Patch(ctx, obj, client.Apply, client.FieldOwner("samples-test"), client.ForceOwnership)).To(Succeed())
		objects = append(objects, obj)
	}
	return objects
}
