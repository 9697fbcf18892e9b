package authz_test

import (
	"context"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// A client of the victim's API with a read-only key, and another tenant with a
// permissive API of its own, try to choose which rules apply to their request
// through what every proxy lets a client send: its own query, and header
// spellings. Each request below has the shape a documented proxy sends the
// authorizer (the e2e suite sends the same through a real Caddy and nginx).
var _ = Describe("A client choosing the rules at the edge", func() {
	var victimNS, host, readerKey, mallorysKey, mallorysAPI string
	BeforeEach(func() {
		ctx := context.Background()
		victimNS = newNamespace()
		host = "leads." + victimNS + ".test"
		newAPI(victimNS, "leads", func(a *latchkeyv1.API) { a.Spec.Hosts = []string{host} })
		_, readerKey = newAPIKey(victimNS, "reader", nil) // leads:read only

		// Mallory, with edit rights in her own namespace only: an API that lets any
		// credential of hers through, and a key of hers.
		tenant, err := env.NewTenant(ctx, k8s, scheme, "mallory-"+victimNS, newNamespace())
		Expect(err).NotTo(HaveOccurred())
		open := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: "m"},
			Spec: latchkeyv1.APISpec{Identifier: "https://m." + tenant.Namespace + ".test", DefaultAction: latchkeyv1.DefaultActionAuthenticate}}
		Expect(tenant.Client.Create(ctx, open)).To(Succeed())
		mallorysAPI = tenant.Namespace + "/m"
		key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: "mine"},
			Spec: latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}}}
		Expect(tenant.Client.Create(ctx, key)).To(Succeed())
		waitReady(key)
		mallorysKey = secretValue(tenant.Namespace, key.SecretName(), latchkeyv1.APIKeySecretKey)
		Eventually(func() int { return forwardAuth(mallorysAPI, "GET", "/", "", bearer(mallorysKey)).Status }).
			Should(Equal(200), "her API serves her key: the attacks below are not refused for want of it")
		Eventually(func() int { return forwardAuth("", "GET", "/v1/leads", host, bearer(readerKey)).Status }).Should(Equal(200))
	})

	// caddy asks as Caddy's forward_auth does with `uri <authPath>`: Caddy keeps the
	// client's query on the auth request when the uri has none, and appends it when
	// the uri is a path; X-Forwarded-Uri is the client's path and query.
	caddy := func(authPath, method, clientURI, key string) response {
		query := ""
		if i := strings.IndexByte(clientURI, '?'); i >= 0 {
			query = clientURI[i:]
		}
		return forwardAuthURL(authPath+query, method, clientURI, host, bearer(key))
	}

	It("cannot empty the scopes a route needs with its own ?scope=, through Caddy's `uri /authz` or a named API", func() {
		for _, authPath := range []string{"/authz", "/authz/api/" + victimNS + "/leads"} {
			r := caddy(authPath, "POST", "/v1/leads?scope=", readerKey)
			Expect(r.Status).To(Equal(403), "a read-only key writes through %s: %s", authPath, r.Body)
			r = caddy(authPath, "POST", "/v1/leads?scope=leads:read", readerKey)
			Expect(r.Status).To(Equal(403), "through %s: %s", authPath, r.Body)
			Expect(r.Header.Get("X-Latchkey-Subject")).To(BeEmpty())
		}
		By("the query form is refused outright, so that a configuration written before the path form fails closed")
		r := forwardAuthURL("/authz?scope=leads:read", "GET", "/v1/leads", host, bearer(readerKey))
		Expect(r.Status).To(Equal(403))
		code, description := errorBody(r)
		Expect(code).To(Equal("access_denied"))
		Expect(description).To(ContainSubstring("/authz[/nginx][/api/<namespace>/<name>]"))
		By("and a named API's rules apply whatever the client's query says")
		r = caddy("/authz/api/"+victimNS+"/leads", "POST", "/v1/leads?scope=", readerKey)
		code, _ = errorBody(r)
		Expect(code).To(Equal("insufficient_scope"))
	})

	It("cannot pick another tenant's permissive API for the victim's host with its own ?api=", func() {
		for _, authPath := range []string{"/authz", "/authz/api/" + victimNS + "/leads", "/authz/nginx"} {
			var r response
			if authPath == "/authz/nginx" { // nginx's subrequest has no query; the client's is in X-Original-URL
				r = nginxAuth(authPath, "GET", "http://"+host+"/v1/leads?api="+mallorysAPI, bearer(mallorysKey))
			} else {
				r = caddy(authPath, "GET", "/v1/leads?api="+mallorysAPI, mallorysKey)
			}
			Expect(r.Status).NotTo(Equal(200), "mallory's key passes through %s: %s", authPath, r.Body)
			Expect(r.Header.Get("X-Latchkey-Api")).To(BeEmpty())
		}
		By("Envoy's HTTP mode takes the API from the Host, never from the path or query after /envoy")
		req, err := http.NewRequest(http.MethodGet, authorizer.HTTP+"/envoy/v1/leads?api="+mallorysAPI+"&scope=", nil)
		Expect(err).NotTo(HaveOccurred())
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+mallorysKey)
		Expect(do(req).Status).To(Equal(401), "mallory's key is not valid for the victim's API")
	})

	It("cannot pick an API by a Host that Unicode case folding turns into its host", func() {
		keysHost := "keys." + victimNS + ".test"
		newAPI(victimNS, "keys", func(a *latchkeyv1.API) { a.Spec.Hosts = []string{keysHost} })
		Eventually(func() int { return forwardAuth("", "GET", "/v1/leads", keysHost, bearer(readerKey)).Status }).Should(Equal(200))
		// The Kelvin sign (U+212A) lowercases to "k": a proxy routes this Host by
		// its bytes, to a route of its own, not to the keys API's upstream.
		for _, folded := range []string{"\u212Aeys." + victimNS + ".test", "\u212AEYS." + strings.ToUpper(victimNS) + ".TEST:443"} {
			Expect(forwardAuth("", "GET", "/v1/leads", folded, bearer(readerKey)).Status).To(Equal(403), "forward-auth, Host %q", folded)
			Expect(checkStatus(check(nil, "GET", "/v1/leads", folded, bearer(readerKey)))).To(Equal(403), "gRPC, Host %q", folded)
		}
		By("while an ASCII spelling of another case still names it")
		Expect(forwardAuth("", "GET", "/v1/leads", strings.ToUpper(keysHost), bearer(readerKey)).Status).To(Equal(200))
	})

	It("cannot have its key accepted under a header name the proxy would not remove, through Envoy's header_map", func() {
		api := map[string]string{"latchkey.dev/api": victimNS + "/leads"}
		// The Kelvin sign (U+212A) folds to "k" in Unicode, not in HTTP: Envoy removes
		// x-api-key from the upstream's request by its ASCII name, and a header
		// named otherwise would carry the plaintext key on to the upstream.
		for _, name := range []string{"x-api-\u212Aey", "X-API-\u212AEY"} {
			resp := checkHeaderMap(api, "GET", "/v1/leads", host, &corev3.HeaderValue{Key: name, RawValue: []byte(readerKey)})
			Expect(checkStatus(resp)).To(Equal(401), "header_map with the key under %q", name)
		}
		By("while an ASCII spelling of another case is the header itself, and removed")
		resp := checkHeaderMap(api, "GET", "/v1/leads", host, &corev3.HeaderValue{Key: "X-Api-Key", RawValue: []byte(readerKey)})
		Expect(checkStatus(resp)).To(Equal(200))
		Expect(resp.GetOkResponse().GetHeadersToRemove()).To(ContainElement("x-api-key"))
	})

	It("cannot pick a method's rule by a method that only Unicode case mapping spells as it", func() {
		searchHost := "search." + victimNS + ".test"
		newAPI(victimNS, "search", func(a *latchkeyv1.API) {
			a.Spec.Hosts = []string{searchHost}
			a.Spec.Rules = []latchkeyv1.APIRule{{Methods: []string{"POST"}, PathPrefix: "/v1/search", Scopes: []string{"leads:read"}}}
		})
		Eventually(func() int { return forwardAuth("", "POST", "/v1/search", searchHost, bearer(readerKey)).Status }).Should(Equal(200))
		// The long s (U+017F) upper-cases to "S": the upstream gets a method that is
		// not POST, so POST's rule is not its rule, and the default (deny) is.
		for _, method := range []string{"PO\u017FT", "po\u017Ft"} {
			Expect(forwardAuth("", method, "/v1/search", searchHost, bearer(readerKey)).Status).To(Equal(403), "forward-auth, method %q", method)
			Expect(checkStatus(check(nil, method, "/v1/search", searchHost, bearer(readerKey)))).To(Equal(403), "gRPC, method %q", method)
		}
		By("while an ASCII spelling of another case is still POST")
		Expect(forwardAuth("", "post", "/v1/search", searchHost, bearer(readerKey)).Status).To(Equal(200))
	})

	It("cannot reach the rules through Traefik's address with or without a path", func() {
		// Traefik sends its address as written, with the client's path and query in
		// X-Forwarded-Uri only.
		Expect(forwardAuthURL("/authz", "POST", "/v1/leads?scope=&api="+mallorysAPI, host, bearer(readerKey)).Status).To(Equal(403))
		Expect(forwardAuthURL("/authz/api/"+victimNS+"/leads", "GET", "/v1/leads?api="+mallorysAPI, host, bearer(mallorysKey)).Status).To(Equal(401))
		Expect(forwardAuthURL("/", "GET", "/v1/leads", host, bearer(mallorysKey)).Status).NotTo(Equal(200), "an address without a path is no endpoint")
		Expect(forwardAuthURL("/authz/api/"+victimNS, "GET", "/v1/leads", host, bearer(readerKey)).Status).To(Equal(403), "a truncated path names nothing")
	})

	It("cannot pass an identity header to the upstream under another spelling", func() {
		for _, name := range []string{"X_Latchkey_Client_Id", "x_latchkey_subject", "X-Latchkey_Scopes", "X_LATCHKEY_NAMESPACE"} {
			forged := map[string]string{name: "victim"}
			headers := bearer(readerKey)
			req, err := http.NewRequest(http.MethodGet, authorizer.HTTP+"/authz", nil)
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("X-Forwarded-Method", "GET")
			req.Header.Set("X-Forwarded-Uri", "/v1/leads")
			req.Header.Set("X-Forwarded-Host", host)
			req.Header.Set("Authorization", headers["Authorization"])
			for k, v := range forged {
				req.Header[k] = []string{v} // the spelling as sent, not canonicalised
			}
			r := do(req)
			Expect(r.Status).To(Equal(401), "forward-auth with %s: %s", name, r.Body)
			code, _ := errorBody(r)
			Expect(code).To(Equal("invalid_request"))

			resp := check(map[string]string{"latchkey.dev/api": victimNS + "/leads"}, "GET", "/v1/leads", host,
				map[string]string{"Authorization": headers["Authorization"], name: "victim"})
			Expect(checkStatus(resp)).To(Equal(401), "gRPC with %s", name)

			req, err = http.NewRequest(http.MethodGet, authorizer.HTTP+"/envoy/v1/leads", nil)
			Expect(err).NotTo(HaveOccurred())
			req.Host = host
			req.Header.Set("Authorization", headers["Authorization"])
			req.Header[name] = []string{"victim"}
			Expect(do(req).Status).To(Equal(401), "Envoy's HTTP mode with %s", name)
		}
		By("while the real spelling is simply replaced, as before")
		r := forwardAuth(victimNS+"/leads", "GET", "/v1/leads", "", map[string]string{
			"Authorization": "Bearer " + readerKey, "X-Latchkey-Client-Id": "victim"})
		Expect(r.Status).To(Equal(200))
		Expect(r.Header.Values("X-Latchkey-Client-Id")).To(BeEmpty())
	})
})

// nginxAuth asks as nginx's auth_request does: the auth URL as configured, the
// original method and URL in X-Original-*.
func nginxAuth(authPath, method, originalURL string, headers map[string]string) response {
	req, err := http.NewRequest(http.MethodGet, authorizer.HTTP+authPath, nil)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("X-Original-Method", method)
	req.Header.Set("X-Original-URL", originalURL)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(req)
}
