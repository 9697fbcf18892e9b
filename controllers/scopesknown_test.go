package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
)

// Ordered: the specs move the cluster from no API to one and back, and every
// credential's verdict depends on that.
var _ = Describe("ScopesKnown", Ordered, func() {
	ctx := context.Background()
	var ns string
	var api *latchkeyv1.API
	withScopes := func(scopes ...string) func(controllers.CredentialObject) {
		return func(o controllers.CredentialObject) {
			switch obj := o.(type) {
			case *latchkeyv1.APIKey:
				obj.Spec.Scopes = scopes
			case *latchkeyv1.OAuthClient:
				obj.Spec.Scopes = scopes
			}
		}
	}

	BeforeAll(func() {
		ns = newNamespace()
		// Other specs delete the APIs they create; make sure none is left.
		var all latchkeyv1.APIList
		Expect(k8s.List(ctx, &all)).To(Succeed())
		for i := range all.Items {
			Expect(k8s.Delete(ctx, &all.Items[i])).To(Succeed())
		}
		Eventually(func(g Gomega) {
			g.Expect(k8s.List(ctx, &all)).To(Succeed())
			g.Expect(all.Items).To(BeEmpty())
		}).Should(Succeed())
	})

	AfterAll(func() {
		if api != nil {
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, api))).To(Succeed())
		}
	})

	It("is True (NoCatalogue) while no API exists", func() {
		create(ctx, apiKeyKind, ns, "early", withScopes("orders:read"))
		waitScopesKnown(ctx, apiKeyKind, ns, "early", metav1.ConditionTrue, latchkeyv1.ReasonNoCatalogue)
	})

	It("is False for a scope no API lists, naming it, with a Warning Event, and the credential still works", func() {
		// Not createAPI: the API outlives this spec, until the last one deletes it.
		api = &latchkeyv1.API{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "leads"},
			Spec: latchkeyv1.APISpec{
				Identifier: "https://" + ns + ".example.com/leads",
				Scopes:     []latchkeyv1.APIScope{{Name: "leads:read"}},
			},
		}
		Expect(k8s.Create(ctx, api)).To(Succeed())
		// The first API changes every credential's verdict, unasked.
		waitScopesKnown(ctx, apiKeyKind, ns, "early", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)

		typo := create(ctx, apiKeyKind, ns, "typo", withScopes("leads:read", "leads:raed"))
		unknown := waitScopesKnown(ctx, apiKeyKind, ns, "typo", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
		Expect(unknown.Message).To(Equal("scope leads:raed is in no API's catalogue"))
		Eventually(eventReasons).WithArguments(ctx, ns, "typo").Should(ContainElement(latchkeyv1.ReasonUnknownScope))
		issued := waitReady(ctx, apiKeyKind, typo, latchkeyv1.ReasonIssued)
		Expect(credentialIn(apiKeyKind, getSecret(ctx, ns, issued.SecretName()))).NotTo(BeEmpty())
		stalled := kstatusOf(ctx, issued)
		Expect(stalled.Status).To(Equal(status.FailedStatus), "a typo in Git is for a person to fix: Stalled")
		Expect(stalled.Message).To(Equal("scope leads:raed is in no API's catalogue"))

		patch(ctx, apiKeyKind, typo, withScopes("leads:read"))
		waitScopesKnown(ctx, apiKeyKind, ns, "typo", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)
		fixed := waitReady(ctx, apiKeyKind, typo, latchkeyv1.ReasonIssued)
		Expect(kstatusOf(ctx, fixed).Status).To(Equal(status.CurrentStatus))
	})

	It("names every unknown scope", func() {
		create(ctx, oauthClientKind, ns, "typos", withScopes("leads:raed", "leads:read", "ledas:read"))
		unknown := waitScopesKnown(ctx, oauthClientKind, ns, "typos", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
		Expect(unknown.Message).To(Equal("scopes leads:raed, ledas:read are in no API's catalogue"))
	})

	It("knows a resource wildcard by any scope of that resource", func() {
		create(ctx, oauthClientKind, ns, "wildcard", withScopes("leads:*"))
		waitScopesKnown(ctx, oauthClientKind, ns, "wildcard", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)
		create(ctx, oauthClientKind, ns, "other-wildcard", withScopes("billing:*"))
		waitScopesKnown(ctx, oauthClientKind, ns, "other-wildcard", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
	})

	It("rechecks the credentials a catalogue edit concerns", func() {
		create(ctx, apiKeyKind, ns, "writer", withScopes("billing:write"))
		waitScopesKnown(ctx, apiKeyKind, ns, "writer", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)

		updateAPI(ctx, api, func(a *latchkeyv1.API) {
			a.Spec.Scopes = append(a.Spec.Scopes, latchkeyv1.APIScope{Name: "billing:write"})
		})
		waitScopesKnown(ctx, apiKeyKind, ns, "writer", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)
		waitScopesKnown(ctx, oauthClientKind, ns, "other-wildcard", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)
	})

	It("is reported on a credential that is revoked", func() {
		create(ctx, apiKeyKind, ns, "revoked", func(o controllers.CredentialObject) {
			withScopes("leads:raed")(o)
			o.Lifecycle().Revoked = true
		})
		Eventually(readyReason).WithArguments(ctx, apiKeyKind, apiKeyKind.newObject(ns, "revoked")).Should(Equal(latchkeyv1.ReasonRevoked))
		waitScopesKnown(ctx, apiKeyKind, ns, "revoked", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
	})

	It("is True (NoCatalogue) again once the last API is gone", func() {
		Expect(k8s.Delete(ctx, api)).To(Succeed())
		for _, name := range []string{"early", "typo", "writer", "revoked"} {
			waitScopesKnown(ctx, apiKeyKind, ns, name, metav1.ConditionTrue, latchkeyv1.ReasonNoCatalogue)
		}
		for _, name := range []string{"typos", "wildcard", "other-wildcard"} {
			waitScopesKnown(ctx, oauthClientKind, ns, name, metav1.ConditionTrue, latchkeyv1.ReasonNoCatalogue)
		}
	})
})

// waitScopesKnown waits until the credential's ScopesKnown condition has status and
// reason for its current generation, and returns the condition.
func waitScopesKnown(ctx context.Context, kind credentialKind, ns, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	var condition metav1.Condition
	EventuallyWithOffset(1, func(g Gomega) {
		latest := get(ctx, kind, ns, name)
		c := meta.FindStatusCondition(latest.CredentialStatus().Conditions, latchkeyv1.ConditionScopesKnown)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status))
		g.Expect(c.Reason).To(Equal(reason))
		g.Expect(c.ObservedGeneration).To(Equal(latest.GetGeneration()))
		condition = *c
	}).Should(Succeed())
	return condition
}
