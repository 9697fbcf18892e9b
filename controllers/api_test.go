package controllers_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

var _ = Describe("API", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("is Accepted, with its scope and rule counts, for the generation it saw", func() {
		api := createAPI(ctx, ns, "leads", func(a *latchkeyv1.API) {
			a.Spec.Identifier = "https://" + ns + ".example.com/leads"
			a.Spec.Scopes = []latchkeyv1.APIScope{{Name: "leads:read"}, {Name: "leads:write"}}
			a.Spec.Rules = []latchkeyv1.APIRule{{PathPrefix: "/v1/leads", Methods: []string{"GET"}, Scopes: []string{"leads:read"}}}
		})
		ready := waitAPI(ctx, api, metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
		Expect(meta.FindStatusCondition(ready.Status.Conditions, latchkeyv1.ConditionReady).Message).To(ContainSubstring(api.Spec.Identifier))
		Expect(ready.Status.ScopeCount).To(Equal(int32(2)))
		Expect(ready.Status.RuleCount).To(Equal(int32(1)))

		updateAPI(ctx, ready, func(a *latchkeyv1.API) {
			a.Spec.Rules = append(a.Spec.Rules, latchkeyv1.APIRule{PathPrefix: "/v1/leads", Methods: []string{"POST"}, Scopes: []string{"leads:write"}})
		})
		Eventually(func(g Gomega) {
			latest := getAPI(ctx, ns, "leads")
			g.Expect(latest.Generation).To(Equal(int64(2)))
			g.Expect(latest.Status.ObservedGeneration).To(Equal(int64(2)))
			g.Expect(meta.FindStatusCondition(latest.Status.Conditions, latchkeyv1.ConditionReady).ObservedGeneration).To(Equal(int64(2)))
			g.Expect(latest.Status.RuleCount).To(Equal(int32(2)))
		}).Should(Succeed())
	})

	It("refuses an identifier that an older API holds, and hands it over when that one is deleted", func() {
		identifier := "https://" + ns + ".example.com/orders"
		older := waitAPI(ctx, createAPI(ctx, ns, "a-older", func(a *latchkeyv1.API) { a.Spec.Identifier = identifier }),
			metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
		waitPastCreationSecond(older)
		newer := createAPI(ctx, ns, "b-newer", func(a *latchkeyv1.API) { a.Spec.Identifier = identifier })

		conflicted := waitAPI(ctx, newer, metav1.ConditionFalse, latchkeyv1.ReasonIdentifierConflict)
		Expect(meta.FindStatusCondition(conflicted.Status.Conditions, latchkeyv1.ConditionReady).Message).
			To(ContainSubstring("identifier " + identifier + " is held by API " + ns + "/a-older"))
		Eventually(eventReasons).WithArguments(ctx, ns, "b-newer").Should(ContainElement(latchkeyv1.ReasonIdentifierConflict))
		Expect(apiReason(ctx, older)).To(Equal(latchkeyv1.ReasonAccepted), "the older API keeps what it holds")

		Expect(k8s.Delete(ctx, older)).To(Succeed())
		waitAPI(ctx, newer, metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
	})

	It("refuses a host that an older API holds, and hands it over when that one is gone", func() {
		host := ns + ".example.com"
		older := waitAPI(ctx, createAPI(ctx, ns, "a-older", func(a *latchkeyv1.API) {
			a.Spec.Identifier = "https://" + host + "/billing"
			a.Spec.Hosts = []string{"other." + host, host}
		}), metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
		waitPastCreationSecond(older)
		newer := createAPI(ctx, ns, "b-newer", func(a *latchkeyv1.API) {
			a.Spec.Identifier = "https://" + host + "/invoices"
			a.Spec.Hosts = []string{"invoices." + host, host}
		})

		conflicted := waitAPI(ctx, newer, metav1.ConditionFalse, latchkeyv1.ReasonIdentifierConflict)
		Expect(meta.FindStatusCondition(conflicted.Status.Conditions, latchkeyv1.ConditionReady).Message).
			To(ContainSubstring("host " + host + " is held by API " + ns + "/a-older"))

		// Hosts are immutable: the older API cannot let the host go but by going.
		Expect(k8s.Delete(ctx, older)).To(Succeed())
		waitAPI(ctx, newer, metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
	})

	It("refuses edits to the identifier and hosts: a claim dates from the API's creation", func() {
		api := waitAPI(ctx, createAPI(ctx, ns, "fixed", func(a *latchkeyv1.API) {
			a.Spec.Identifier = "https://" + ns + ".example.com/fixed"
			a.Spec.Hosts = []string{"fixed." + ns + ".example.com"}
		}), metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
		edited := api.DeepCopy()
		edited.Spec.Identifier += "/v2"
		Expect(k8s.Patch(ctx, edited, client.MergeFrom(api))).To(MatchError(ContainSubstring("identifier is immutable")))
		edited = api.DeepCopy()
		edited.Spec.Hosts = append(edited.Spec.Hosts, "more."+ns+".example.com")
		Expect(k8s.Patch(ctx, edited, client.MergeFrom(api))).To(MatchError(ContainSubstring("hosts are immutable")))
		edited = api.DeepCopy()
		edited.Spec.DisplayName = "rules, scopes and names may change"
		Expect(k8s.Patch(ctx, edited, client.MergeFrom(api))).To(Succeed())
	})

	It("serves neither of two APIs created in the same second, whatever their names", func() {
		var first, second *latchkeyv1.API
		attempt := 0
		Eventually(func() bool { // until both land in the same second, as most attempts do
			attempt++
			identifier := fmt.Sprintf("https://%s.example.com/tie-%d", ns, attempt)
			first = createAPI(ctx, ns, fmt.Sprintf("a-tie-%d", attempt), func(a *latchkeyv1.API) { a.Spec.Identifier = identifier })
			second = createAPI(ctx, ns, fmt.Sprintf("b-tie-%d", attempt), func(a *latchkeyv1.API) { a.Spec.Identifier = identifier })
			return first.CreationTimestamp.Equal(&second.CreationTimestamp)
		}).Should(BeTrue())

		// A name that sorts first wins nothing: a tenant could choose one.
		for _, api := range []*latchkeyv1.API{first, second} {
			conflicted := waitAPI(ctx, api, metav1.ConditionFalse, latchkeyv1.ReasonIdentifierConflict)
			Expect(meta.FindStatusCondition(conflicted.Status.Conditions, latchkeyv1.ConditionReady).Message).
				To(ContainSubstring("created in the same second: neither is served"))
		}
		Expect(k8s.Delete(ctx, first)).To(Succeed())
		waitAPI(ctx, second, metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
	})

	DescribeTable("refuses a malformed API with the schema's message",
		func(mutate func(*latchkeyv1.API), message string) {
			api := &latchkeyv1.API{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
				Spec: latchkeyv1.APISpec{
					Identifier: "https://api.example.com/leads",
					Scopes:     []latchkeyv1.APIScope{{Name: "leads:read"}},
					Rules:      []latchkeyv1.APIRule{{PathPrefix: "/v1/leads", Scopes: []string{"leads:read"}}},
				},
			}
			mutate(api)
			err := k8s.Create(ctx, api)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a path prefix without a leading /", func(a *latchkeyv1.API) { a.Spec.Rules[0].PathPrefix = "v1/leads" },
			"pathPrefix must start with /"),
		Entry("a path prefix with a .. segment", func(a *latchkeyv1.API) { a.Spec.Rules[0].PathPrefix = "/v1/../admin" },
			"pathPrefix must be a plain path"),
		Entry("a rule requiring a scope the catalogue lacks", func(a *latchkeyv1.API) { a.Spec.Rules[0].Scopes = []string{"leads:delete"} },
			"every scope a rule requires must be in the scopes catalogue"),
		Entry("a scope listed twice", func(a *latchkeyv1.API) {
			a.Spec.Scopes = []latchkeyv1.APIScope{{Name: "leads:read"}, {Name: "leads:read", Description: "again"}}
		}, "Duplicate value"),
		Entry("a method outside HTTP's", func(a *latchkeyv1.API) { a.Spec.Rules[0].Methods = []string{"FETCH"} },
			`supported values: "GET", "HEAD", "POST"`),
		Entry("a scope name that is not resource:action", func(a *latchkeyv1.API) {
			a.Spec.Scopes = []latchkeyv1.APIScope{{Name: "Leads"}}
			a.Spec.Rules = nil
		}, "spec.scopes[0].name"),
	)
})

// createAPI creates an API (with a unique identifier unless mutate sets one) and
// deletes it after the spec: APIs are cluster-wide claims, and the ScopesKnown
// specs need a cluster without any.
func createAPI(ctx context.Context, ns, name string, mutate func(*latchkeyv1.API)) *latchkeyv1.API {
	api := &latchkeyv1.API{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       latchkeyv1.APISpec{Identifier: "https://" + ns + ".example.com/" + name},
	}
	if mutate != nil {
		mutate(api)
	}
	ExpectWithOffset(1, k8s.Create(ctx, api)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, api))).To(Succeed()) })
	return api
}

func getAPI(ctx context.Context, ns, name string) *latchkeyv1.API {
	api := &latchkeyv1.API{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, api)).To(Succeed())
	return api
}

// updateAPI applies mutate to the latest version, retrying on conflicts.
func updateAPI(ctx context.Context, api *latchkeyv1.API, mutate func(*latchkeyv1.API)) {
	EventuallyWithOffset(1, func() error {
		latest := getAPI(ctx, api.Namespace, api.Name)
		mutate(latest)
		return k8s.Update(ctx, latest)
	}).Should(Succeed())
}

func apiReason(ctx context.Context, api *latchkeyv1.API) string {
	if c := meta.FindStatusCondition(getAPI(ctx, api.Namespace, api.Name).Status.Conditions, latchkeyv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// waitAPI waits until Ready has status and reason for the API's current generation.
func waitAPI(ctx context.Context, api *latchkeyv1.API, status metav1.ConditionStatus, reason string) *latchkeyv1.API {
	var latest *latchkeyv1.API
	EventuallyWithOffset(1, func(g Gomega) {
		latest = getAPI(ctx, api.Namespace, api.Name)
		ready := meta.FindStatusCondition(latest.Status.Conditions, latchkeyv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(status))
		g.Expect(ready.Reason).To(Equal(reason))
		g.Expect(ready.ObservedGeneration).To(Equal(latest.Generation))
		g.Expect(latest.Status.ObservedGeneration).To(Equal(latest.Generation))
	}).Should(Succeed())
	return latest
}

// waitPastCreationSecond returns once an object created now would be younger than
// obj: creation timestamps have one-second precision, and APIs created in the same
// second all give way (apirules.NotNewer), which is not what these specs are about.
func waitPastCreationSecond(obj metav1.Object) {
	EventuallyWithOffset(1, time.Now).Should(BeTemporally(">=", obj.GetCreationTimestamp().Add(time.Second)))
}
