package controllers_test

import (
	"context"
	"math"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/testenv"
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
		Expect(unknown.Message).To(Equal("scope leads:raed is in the catalogue of no API that accepts this namespace"))
		Eventually(eventReasons).WithArguments(ctx, ns, "typo").Should(ContainElement(latchkeyv1.ReasonUnknownScope))
		issued := waitReady(ctx, apiKeyKind, typo, latchkeyv1.ReasonIssued)
		Expect(credentialIn(apiKeyKind, getSecret(ctx, ns, issued.SecretName()))).NotTo(BeEmpty())
		stalled := kstatusOf(ctx, issued)
		Expect(stalled.Status).To(Equal(status.FailedStatus), "a typo in Git is for a person to fix: Stalled")
		Expect(stalled.Message).To(Equal("scope leads:raed is in the catalogue of no API that accepts this namespace"))

		patch(ctx, apiKeyKind, typo, withScopes("leads:read"))
		waitScopesKnown(ctx, apiKeyKind, ns, "typo", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)
		fixed := waitReady(ctx, apiKeyKind, typo, latchkeyv1.ReasonIssued)
		Expect(kstatusOf(ctx, fixed).Status).To(Equal(status.CurrentStatus))
	})

	It("names every unknown scope", func() {
		create(ctx, oauthClientKind, ns, "typos", withScopes("leads:raed", "leads:read", "ledas:read"))
		unknown := waitScopesKnown(ctx, oauthClientKind, ns, "typos", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
		Expect(unknown.Message).To(Equal("scopes leads:raed, ledas:read are in the catalogue of no API that accepts this namespace"))
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

// A tenant with edit rights in its own namespace edits APIs of its own to disturb
// another tenant's credentials, or to learn the scope names another tenant's APIs
// define. A credential is checked only against the APIs that accept its
// namespace, and only a namespace's own APIs decide whether it is checked at all.
var _ = Describe("A tenant's API catalogue, against another tenant's credentials", func() {
	ctx := context.Background()
	apiAs := func(tenant *testenv.Tenant, name string, mutate func(*latchkeyv1.API)) *latchkeyv1.API {
		api := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: name},
			Spec: latchkeyv1.APISpec{Identifier: "https://" + tenant.Namespace + ".example.com/" + name}}
		mutate(api)
		ExpectWithOffset(1, tenant.Client.Create(ctx, api)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, api))).To(Succeed()) })
		return api
	}
	scopes := func(names ...string) []latchkeyv1.APIScope {
		var out []latchkeyv1.APIScope
		for _, n := range names {
			out = append(out, latchkeyv1.APIScope{Name: n})
		}
		return out
	}
	withScopes := func(names ...string) func(controllers.CredentialObject) {
		return func(o controllers.CredentialObject) { o.(*latchkeyv1.APIKey).Spec.Scopes = names }
	}
	// stays holds the victim's verdict, and no Warning Event about it, while mallory acts.
	stays := func(ns, name string, status metav1.ConditionStatus, reason string, act func()) {
		waitScopesKnown(ctx, apiKeyKind, ns, name, status, reason)
		before := len(eventReasons(ctx, ns, name))
		act()
		ConsistentlyWithOffset(1, func(g Gomega) {
			c := meta.FindStatusCondition(get(ctx, apiKeyKind, ns, name).CredentialStatus().Conditions, latchkeyv1.ConditionScopesKnown)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(status), c.Message)
			g.Expect(c.Reason).To(Equal(reason))
		}, "2s", "100ms").Should(Succeed())
		ExpectWithOffset(1, eventReasons(ctx, ns, name)).To(HaveLen(before), "no Event about the victim's credential")
	}

	It("cannot turn another namespace's credentials from NoCatalogue to Stalled with an API open to every namespace", func() {
		victim := newNamespace()
		key := create(ctx, apiKeyKind, victim, "orders", withScopes("orders:read"))
		mallory := newTenant(ctx)
		stays(victim, "orders", metav1.ConditionTrue, latchkeyv1.ReasonNoCatalogue, func() {
			open := apiAs(mallory, "open", func(a *latchkeyv1.API) {
				a.Spec.Namespaces = []string{"*"}
				a.Spec.Scopes = scopes("billing:read")
			})
			updateAPI(ctx, open, func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("billing:write") })
		})
		Expect(kstatusOf(ctx, key).Status).To(Equal(status.CurrentStatus), "not Stalled")
	})

	It("cannot change the verdict on another namespace's credentials with APIs that do not accept it", func() {
		victim := newNamespace()
		createAPI(ctx, victim, "leads", func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("leads:read") })
		create(ctx, apiKeyKind, victim, "typo", withScopes("leads:read", "orders:raed"))
		mallory := newTenant(ctx)
		stays(victim, "typo", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope, func() {
			own := apiAs(mallory, "own", func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("orders:raed") })
			updateAPI(ctx, own, func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("orders:raed", "orders:read") })
			Expect(k8s.Delete(ctx, own)).To(Succeed())
			apiAs(mallory, "elsewhere", func(a *latchkeyv1.API) {
				a.Spec.Namespaces = []string{mallory.Namespace, "some-other-namespace"}
				a.Spec.Scopes = scopes("orders:raed")
			})
		})
	})

	It("cannot learn which scopes another tenant's APIs define from its own credentials' conditions", func() {
		victim := newNamespace()
		createAPI(ctx, victim, "secret", func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("acquisitions:read") })
		mallory := newTenant(ctx)
		apiAs(mallory, "mine", func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("own:read") })
		probe := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: mallory.Namespace, Name: "probe"},
			Spec: latchkeyv1.APIKeySpec{Scopes: []string{"acquisitions:read", "acquisitions:*", "own:read"}}}
		Expect(mallory.Client.Create(ctx, probe)).To(Succeed())
		c := waitScopesKnown(ctx, apiKeyKind, mallory.Namespace, "probe", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
		Expect(c.Message).To(Equal("scopes acquisitions:read, acquisitions:* are in the catalogue of no API that accepts this namespace"))
	})

	It("rechecks the credentials of the namespaces an edited API accepts, by name or every one", func() {
		named, any := newNamespace(), newNamespace()
		for _, tenant := range []string{named, any} {
			createAPI(ctx, tenant, "own", func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("notes:read") })
			create(ctx, apiKeyKind, tenant, "search", withScopes("notes:read", "search:query"))
			waitScopesKnown(ctx, apiKeyKind, tenant, "search", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
		}
		platform := newNamespace()
		byName := createAPI(ctx, platform, "by-name", func(a *latchkeyv1.API) {
			a.Spec.Namespaces = []string{named}
			a.Spec.Scopes = scopes("search:index")
		})
		toAll := createAPI(ctx, platform, "to-all", func(a *latchkeyv1.API) {
			a.Spec.Namespaces = []string{"*"}
			a.Spec.Scopes = scopes("search:index")
		})
		updateAPI(ctx, byName, func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("search:index", "search:query") })
		waitScopesKnown(ctx, apiKeyKind, named, "search", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)
		updateAPI(ctx, toAll, func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("search:index", "search:query") })
		waitScopesKnown(ctx, apiKeyKind, any, "search", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)
	})

	It("cannot flip another namespace's verdict once per edit of an API open to every namespace", func() {
		victim := newNamespace()
		createAPI(ctx, victim, "leads", func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("leads:read") })
		create(ctx, apiKeyKind, victim, "typo", withScopes("leads:read", "orders:raed"))
		waitScopesKnown(ctx, apiKeyKind, victim, "typo", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
		mallory := newTenant(ctx)
		created := time.Now() // mallory's first API event: its namespace's first window begins
		open := apiAs(mallory, "open", func(a *latchkeyv1.API) {
			a.Spec.Namespaces = []string{"*"}
			a.Spec.Scopes = scopes("orders:raed") // by design, it counts as known in every namespace
		})
		waitScopesKnown(ctx, apiKeyKind, victim, "typo", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)

		// Every change of the victim's verdict from here, as the API server tells it.
		watching, err := client.NewWithWatch(testEnv.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		var keys latchkeyv1.APIKeyList
		Expect(k8s.List(ctx, &keys, client.InNamespace(victim))).To(Succeed())
		w, err := watching.Watch(ctx, &latchkeyv1.APIKeyList{}, client.InNamespace(victim),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: keys.ResourceVersion}})
		Expect(err).NotTo(HaveOccurred())
		defer w.Stop()

		// Mallory flips the scope out of its API's catalogue and back in,
		// twenty-one edits in about a second, ending without it.
		for i := range 21 {
			names := scopes("billing:read")
			if i%2 == 1 {
				names = scopes("orders:raed")
			}
			Eventually(func() error {
				var latest latchkeyv1.API
				if err := mallory.Client.Get(ctx, client.ObjectKeyFromObject(open), &latest); err != nil {
					return err
				}
				latest.Spec.Scopes = names
				return mallory.Client.Update(ctx, &latest)
			}).Should(Succeed())
			time.Sleep(50 * time.Millisecond) // time for the manager to act on each edit, had it been allowed to
		}
		// The pacer's rounds are at the ends of windows of 1, 2, 4, … s from
		// the first: as many as the edits spanned, and the last at most the
		// span and a second after the last edit (apipacer.go).
		span := time.Since(created)
		rounds := 2 + int(math.Log2(span.Seconds()+1))
		flips, last := 0, metav1.ConditionTrue
		for settled := time.After(span + 3*time.Second); ; {
			var e watch.Event
			select {
			case got, open := <-w.ResultChan():
				Expect(open).To(BeTrue(), "the watch ended before the pacer's last round")
				e = got
			case <-settled:
			}
			if e.Object == nil {
				break
			}
			key, ok := e.Object.(*latchkeyv1.APIKey)
			if !ok || key.Name != "typo" {
				continue
			}
			if c := meta.FindStatusCondition(key.Status.Conditions, latchkeyv1.ConditionScopesKnown); c != nil && c.Status != last {
				flips, last = flips+1, c.Status
			}
		}
		// Its last edit still counts, a window late at most.
		Expect(last).To(Equal(metav1.ConditionFalse))
		waitScopesKnown(ctx, apiKeyKind, victim, "typo", metav1.ConditionFalse, latchkeyv1.ReasonUnknownScope)
		// Twenty-one edits in about a second: the rounds at the ends of the
		// first windows (1 s, then 2 s) are all the victim's verdict may move.
		Expect(flips).To(BeNumerically("<=", rounds), "the victim's verdict flipped %d times for mallory's 21 edits over %s", flips, span)
	})

	It("counts the scopes of an API whose owner accepts the namespace, without letting it decide that the namespace is checked", func() {
		tenant := newNamespace()
		platform := newNamespace()
		createAPI(ctx, platform, "shared", func(a *latchkeyv1.API) {
			a.Spec.Namespaces = []string{"*"}
			a.Spec.Scopes = scopes("search:query")
		})
		createAPI(ctx, tenant, "own", func(a *latchkeyv1.API) { a.Spec.Scopes = scopes("notes:read") })
		create(ctx, apiKeyKind, tenant, "both", withScopes("notes:read", "search:query"))
		waitScopesKnown(ctx, apiKeyKind, tenant, "both", metav1.ConditionTrue, latchkeyv1.ReasonAllScopesKnown)
	})
})
