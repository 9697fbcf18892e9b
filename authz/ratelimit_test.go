package authz_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/authz"
)

func perHour(requests int32) *latchkeyv1.RateLimit {
	return &latchkeyv1.RateLimit{Requests: requests, Per: metav1.Duration{Duration: time.Hour}}
}

// askAt asks authorizer a (forward-auth) about GET uri on api with key.
func askAt(a *runningAuthz, api, method, uri, key string) response {
	req, err := http.NewRequest(http.MethodGet, a.HTTP+"/authz/api/"+api, nil)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", uri)
	req.Header.Set("Authorization", "Bearer "+key)
	return do(req)
}

// allowedInARow counts the requests let through before the first 429 (at most limit+1 asked).
func allowedInARow(a *runningAuthz, api, method, uri, key string, limit int) int {
	for i := range limit + 1 {
		r := askAt(a, api, method, uri, key)
		if r.Status == http.StatusTooManyRequests {
			return i
		}
		ExpectWithOffset(1, r.Status).To(Equal(http.StatusOK), r.Body)
	}
	return limit + 1
}

var _ = Describe("Rate limits", func() {
	var ns, api string
	BeforeEach(func() {
		ns = newNamespace()
		api = ns + "/leads"
	})

	// limitedAPI creates the leads API with a default of 3 an hour per credential,
	// a stricter budget of 1 an hour on POST, and waits until the authorizer serves it.
	limitedAPI := func(mutate func(*latchkeyv1.API)) {
		newAPI(ns, "leads", func(a *latchkeyv1.API) {
			a.Spec.RateLimit = &latchkeyv1.APIRateLimit{RateLimit: *perHour(3)}
			a.Spec.Rules[1].RateLimit = perHour(1)
			if mutate != nil {
				mutate(a)
			}
		})
	}
	served := func(key string) {
		Eventually(func() string { return askAt(authorizer, api, "GET", "/v1/leads", key).Header.Get("RateLimit-Policy") }).
			ShouldNot(BeEmpty(), "the authorizer serves the API with its limit")
	}

	It("lets a key through its API's budget, then answers 429 with Retry-After and the RateLimit fields; another key is unaffected", func() {
		limitedAPI(nil)
		_, key := newAPIKey(ns, "reader", nil)
		_, other := newAPIKey(ns, "other", nil)
		served(key) // the first of three
		for remaining := 1; remaining >= 0; remaining-- {
			r := askAt(authorizer, api, "GET", "/v1/leads", key)
			Expect(r.Status).To(Equal(http.StatusOK))
			Expect(r.Header.Get("RateLimit-Policy")).To(Equal(`"api";q=3;w=3600`))
			Expect(r.Header.Get("RateLimit")).To(MatchRegexp(`^"api";r=%d;t=\d+$`, remaining))
		}
		r := askAt(authorizer, api, "GET", "/v1/leads", key)
		Expect(r.Status).To(Equal(http.StatusTooManyRequests))
		retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
		Expect(err).NotTo(HaveOccurred())
		Expect(retry).To(BeNumerically("~", 1200, 2), "one request per 1,200 s")
		Expect(r.Header.Get("RateLimit")).To(MatchRegexp(`^"api";r=0;t=\d+$`))
		Expect(r.Header.Get("WWW-Authenticate")).To(BeEmpty(), "the credential is fine: a 429 is no challenge")
		Expect(r.Header.Get("X-Latchkey-Subject")).To(BeEmpty())
		code, description := errorBody(r)
		Expect(code).To(Equal("rate_limited"))
		Expect(description).To(ContainSubstring("retry after"))

		By("nginx: a 403 with Retry-After, which auth_request passes on (it turns a 429 into a 500)")
		req, err := http.NewRequest(http.MethodGet, authorizer.HTTP+"/authz/nginx/api/"+api, nil)
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URL", "http://leads.test/v1/leads")
		req.Header.Set("Authorization", "Bearer "+key)
		viaNginx := do(req)
		Expect(viaNginx.Status).To(Equal(http.StatusForbidden))
		Expect(viaNginx.Header.Get("Retry-After")).NotTo(BeEmpty())
		Expect(viaNginx.Header.Get("WWW-Authenticate")).To(BeEmpty())
		code, _ = errorBody(viaNginx)
		Expect(code).To(Equal("rate_limited"))

		By("gRPC: the same verdict as a DeniedHttpResponse, and the fields on an allowed response")
		denied := check(map[string]string{authz.ContextAPI: api}, "GET", "/v1/leads", "", bearer(key))
		Expect(checkStatus(denied)).To(Equal(http.StatusTooManyRequests))
		Expect(headerValues(denied.GetDeniedResponse().GetHeaders())).To(HaveKeyWithValue("retry-after", Not(BeEmpty())))
		Expect(headerValues(denied.GetDeniedResponse().GetHeaders())).To(HaveKeyWithValue("ratelimit-policy", `"api";q=3;w=3600`))
		ok := check(map[string]string{authz.ContextAPI: api}, "GET", "/v1/leads", "", bearer(other))
		Expect(checkStatus(ok)).To(Equal(http.StatusOK))
		Expect(headerValues(ok.GetOkResponse().GetResponseHeadersToAdd())).To(HaveKeyWithValue("ratelimit", MatchRegexp(`^"api";r=2;t=\d+$`)))
		Expect(allowedInARow(authorizer, api, "GET", "/v1/leads", other, 3)).To(Equal(2), "the other key spent one through gRPC")
	})

	It("gives a rule its own budget, spent along with the API's", func() {
		limitedAPI(nil)
		_, key := newAPIKey(ns, "writer", func(k *latchkeyv1.APIKey) { k.Spec.Scopes = []string{"leads:read", "leads:write"} })
		served(key)
		r := askAt(authorizer, api, "POST", "/v1/leads", key)
		Expect(r.Status).To(Equal(http.StatusOK))
		Expect(r.Header.Get("RateLimit-Policy")).To(Equal(`"api";q=3;w=3600, "route";q=1;w=3600`))
		Expect(r.Header.Get("RateLimit")).To(MatchRegexp(`^"api";r=1;t=\d+, "route";r=0;t=\d+$`))
		for range 3 {
			Expect(askAt(authorizer, api, "POST", "/v1/leads", key).Status).To(Equal(http.StatusTooManyRequests), "the route's budget of one")
		}
		// A refused request spends from no budget: the API's has one left of
		// three (one GET above, one POST).
		Expect(allowedInARow(authorizer, api, "GET", "/v1/leads", key, 3)).To(Equal(1))
	})

	It("lets the API's owner raise one credential's limit, and a credential lower its own, never raise it (attacker)", func() {
		tenantNS := newNamespace()
		tenant, err := env.NewTenant(context.Background(), k8s, scheme, "mallory-rl-"+ns, tenantNS)
		Expect(err).NotTo(HaveOccurred())
		limitedAPI(func(a *latchkeyv1.API) {
			a.Spec.Namespaces = []string{ns, tenantNS}
			a.Spec.RateLimit.Overrides = []latchkeyv1.RateLimitOverride{
				{Kind: latchkeyv1.KindAPIKey, Namespace: ns, Name: "partner", RateLimit: *perHour(5)},
			}
		})
		_, partner := newAPIKey(ns, "partner", nil)
		_, modest := newAPIKey(ns, "modest", func(k *latchkeyv1.APIKey) { k.Spec.RateLimit = perHour(1) })

		By("the tenant writes itself a limit of a million an hour on its own key")
		greedy := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "greedy"},
			Spec: latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}, CredentialSpec: latchkeyv1.CredentialSpec{RateLimit: perHour(1_000_000)}}}
		Expect(tenant.Client.Create(context.Background(), greedy)).To(Succeed())
		waitReady(greedy)
		secret := &corev1.Secret{}
		Expect(tenant.Client.Get(context.Background(), client.ObjectKey{Namespace: tenantNS, Name: greedy.SecretName()}, secret)).To(Succeed())
		greedyKey := string(secret.Data[latchkeyv1.APIKeySecretKey])
		plaintexts = append(plaintexts, greedyKey)

		By("and another with a lower rate but a burst of 70 (the API allows 3 at once)")
		sneaky := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "sneaky"},
			Spec: latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}, CredentialSpec: latchkeyv1.CredentialSpec{
				RateLimit: &latchkeyv1.RateLimit{Requests: 70, Per: metav1.Duration{Duration: 24 * time.Hour}}}}}
		Expect(tenant.Client.Create(context.Background(), sneaky)).To(Succeed())
		waitReady(sneaky)
		Expect(tenant.Client.Get(context.Background(), client.ObjectKey{Namespace: tenantNS, Name: sneaky.SecretName()}, secret)).To(Succeed())
		sneakyKey := string(secret.Data[latchkeyv1.APIKeySecretKey])
		plaintexts = append(plaintexts, sneakyKey)

		served(partner)
		Expect(allowedInARow(authorizer, api, "GET", "/v1/leads", partner, 5)).To(Equal(4), "the owner's override: 5 (one spent above)")
		Expect(allowedInARow(authorizer, api, "GET", "/v1/leads", modest, 3)).To(Equal(1), "its own cap: 1")
		Expect(allowedInARow(authorizer, api, "GET", "/v1/leads", greedyKey, 10)).To(Equal(3), "a tenant cannot raise itself above the API's default")
		Expect(allowedInARow(authorizer, api, "GET", "/v1/leads", sneakyKey, 70)).To(Equal(3), "nor its burst, with a lower rate")

		By("nor raise the API's limit, or list itself in its overrides")
		leads := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "leads"}}
		err = tenant.Client.Patch(context.Background(), leads, client.RawPatch(types.MergePatchType,
			[]byte(`{"spec":{"rateLimit":{"requests":1000000,"per":"1h"}}}`)))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	})

	It("applies a limit edited with the API at once", func() {
		limitedAPI(nil)
		_, key := newAPIKey(ns, "reader", nil)
		served(key)
		Expect(allowedInARow(authorizer, api, "GET", "/v1/leads", key, 3)).To(Equal(2))
		mergePatch(&latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "leads"}},
			`{"spec":{"rateLimit":{"requests":100,"per":"1h"}}}`)
		start := time.Now()
		Eventually(func() int { return askAt(authorizer, api, "GET", "/v1/leads", key).Status }).
			WithTimeout(time.Second).Should(Equal(http.StatusOK), "the raised limit lets the key through")
		AddReportEntry("raised limit applied after", time.Since(start).String())
		mergePatch(&latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "leads"}}, `{"spec":{"rateLimit":null}}`)
		Eventually(func() string { return askAt(authorizer, api, "GET", "/v1/leads", key).Header.Get("RateLimit-Policy") }).
			WithTimeout(time.Second).Should(BeEmpty(), "no limit, no fields")
	})

	It("shares a limit between replicas: each takes the limit divided by the ready endpoints of its Service", func() {
		limitedAPI(func(a *latchkeyv1.API) {
			a.Spec.RateLimit = &latchkeyv1.APIRateLimit{RateLimit: *perHour(4)}
		})
		const service = "authz-rl"
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: operatorNamespace, Name: service + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			},
		}
		Expect(k8s.Create(context.Background(), slice)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(context.Background(), slice)).To(Succeed()) })
		replicas := func(o *authz.Options) { o.RateLimitService, o.RateLimitNamespace = service, operatorNamespace }
		a, b := startAuthzWith(authzConfig, replicas), startAuthzWith(authzConfig, replicas)
		DeferCleanup(a.Stop)
		DeferCleanup(b.Stop)
		sharedBy := func(r *runningAuthz) float64 { return metricValue(r, "latchkey_authz_rate_limit_replicas") }
		Eventually(func() float64 { return sharedBy(a) }).Should(Equal(2.0))
		Eventually(func() float64 { return sharedBy(b) }).Should(Equal(2.0))

		_, key := newAPIKey(ns, "spread", nil)
		// Each replica learns of the key from its own watch: wait for both (an
		// unknown key is refused before any limit counts it).
		Eventually(func() int { return askAt(a, api, "GET", "/v1/leads", key).Status }).Should(Equal(http.StatusOK))
		Eventually(func() int { return askAt(b, api, "GET", "/v1/leads", key).Status }).Should(Equal(http.StatusOK))
		Expect(allowedInARow(a, api, "GET", "/v1/leads", key, 4)).To(Equal(1), "a's share of 4 is 2 (one spent)")
		Expect(allowedInARow(b, api, "GET", "/v1/leads", key, 4)).To(Equal(1), "b's share is 2 (one spent)")

		By("a replica leaves: the other takes the whole limit")
		slice.Endpoints = slice.Endpoints[:1]
		Expect(k8s.Update(context.Background(), slice)).To(Succeed())
		Eventually(func() float64 { return sharedBy(a) }).Should(Equal(1.0))
		_, fresh := newAPIKey(ns, "fresh", nil)
		Eventually(func() int { return askAt(a, api, "GET", "/v1/leads", fresh).Status }).Should(Equal(http.StatusOK))
		Expect(allowedInARow(a, api, "GET", "/v1/leads", fresh, 4)).To(Equal(3), "the whole limit of 4 (one spent)")
	})
})

// headerValues maps the headers of an ext_authz answer by name.
func headerValues(headers []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, h := range headers {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return m
}

// metricValue reads an unlabelled gauge from a's /metrics (-1 when absent).
func metricValue(a *runningAuthz, name string) float64 {
	for line := range strings.SplitSeq(get(a.Metrics).Body, "\n") {
		if value, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			ExpectWithOffset(1, err).NotTo(HaveOccurred())
			return v
		}
	}
	return -1
}
