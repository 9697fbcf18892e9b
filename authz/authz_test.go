package authz_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

var _ = Describe("Forward-auth", func() {
	var ns, api, key string
	var keyObj *latchkeyv1.APIKey
	BeforeEach(func() {
		ns = newNamespace()
		newAPI(ns, "leads", func(a *latchkeyv1.API) {
			a.Spec.Hosts = []string{"leads." + ns + ".test"}
			a.Spec.Environments = []latchkeyv1.Environment{latchkeyv1.EnvironmentLive}
		})
		api = ns + "/leads"
		keyObj, key = newAPIKey(ns, "reader", nil)
		Eventually(func() int { return forwardAuth(api, "GET", "/v1/leads", "", bearer(key)).Status }).Should(Equal(200))
	})

	It("allows a key with the route's scope and tells the upstream who it is", func() {
		r := forwardAuth(api, "GET", "/v1/leads/42?page=2", "", bearer(key))
		Expect(r.Status).To(Equal(200))
		Expect(r.Header.Get("X-Latchkey-Subject")).To(Equal("apikey:" + ns + "/reader"))
		Expect(r.Header.Get("X-Latchkey-Credential-Kind")).To(Equal("api_key"))
		Expect(r.Header.Get("X-Latchkey-Namespace")).To(Equal(ns))
		Expect(r.Header.Get("X-Latchkey-Name")).To(Equal("reader"))
		Expect(r.Header.Get("X-Latchkey-Key-Id")).To(Equal(keyObj.Status.KeyID))
		Expect(r.Header.Get("X-Latchkey-Environment")).To(Equal("live"))
		Expect(r.Header.Get("X-Latchkey-Scopes")).To(Equal("leads:read"))
		Expect(r.Header.Get("X-Latchkey-Api")).To(Equal(api))
		Expect(r.Header.Values("X-Latchkey-Client-Id")).To(BeEmpty())
		Expect(strings.Contains(r.Body, key)).To(BeFalse(), "the response body carries the API key")
	})

	It("finds the API by Host when the proxy does not name it, and takes the key from X-API-Key", func() {
		r := forwardAuth("", "GET", "/v1/leads", "LEADS."+ns+".test:443", map[string]string{"X-API-Key": key})
		Expect(r.Status).To(Equal(200))
		Expect(r.Header.Get("X-Latchkey-Api")).To(Equal(api))
		r = forwardAuth("", "GET", "/v1/leads", "unknown.test", bearer(key))
		Expect(r.Status).To(Equal(403), "no API serves that host")
		code, _ := errorBody(r)
		Expect(code).To(Equal("access_denied"))
	})

	It("answers 403 insufficient_scope for a route whose scope the key lacks", func() {
		r := forwardAuth(api, "POST", "/v1/leads", "", bearer(key))
		Expect(r.Status).To(Equal(403))
		Expect(r.Header.Get("WWW-Authenticate")).To(SatisfyAll(ContainSubstring(`error="insufficient_scope"`), ContainSubstring(`scope="leads:write"`)))
		code, _ := errorBody(r)
		Expect(code).To(Equal("insufficient_scope"))
		Expect(forwardAuth(api, "DELETE", "/v1/leads", "", bearer(key)).Status).To(Equal(403), "an unmatched route is denied by default")
		Expect(forwardAuth(api, "GET", "/v1/leadsx", "", bearer(key)).Status).To(Equal(403), "prefixes match on segment boundaries")
	})

	It("serves nginx auth_request from X-Original-* alone, never from a client's X-Forwarded-*", func() {
		nginx := func(method, url string, headers map[string]string) int {
			req, err := http.NewRequest(http.MethodGet, authorizer.HTTP+"/authz/nginx/api/"+api, nil)
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("X-Original-Method", method)
			req.Header.Set("X-Original-URL", url)
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			return do(req).Status
		}
		Expect(nginx("GET", "http://leads.test/v1/leads?page=2", bearer(key))).To(Equal(200))
		Expect(nginx("POST", "http://leads.test/v1/leads", bearer(key))).To(Equal(403))
		// nginx passes the client's headers through: a forged X-Forwarded-Method
		// must not turn the POST into a GET.
		forged := map[string]string{"Authorization": "Bearer " + key, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/v1/leads"}
		Expect(nginx("POST", "http://leads.test/v1/leads", forged)).To(Equal(403))
		Expect(nginx("GET", "/v1/leads", bearer(key))).To(Equal(403), "X-Original-URL must be absolute")
	})

	It("lets the auth URL's path require scopes instead of the rules", func() {
		req := func(path string) int {
			return forwardAuthURL(path, "GET", "/anything", "leads."+ns+".test", bearer(key)).Status
		}
		Expect(req("/authz/api/" + api + "/scopes/leads:read")).To(Equal(200))
		Expect(req("/authz/api/" + api + "/scopes/leads:read,leads:write")).To(Equal(403))
		Expect(req("/authz/scopes/leads:write")).To(Equal(403), "with the API of the Host")
		Expect(req("/authz/api/"+api+"/scopes/")).To(Equal(200), "an empty list: any valid credential")
		Expect(req("/authz/api/"+api)).To(Equal(403), "/anything matches no rule: denied by default")
	})

	It("answers 401 for missing, malformed, unknown, test-environment, revoked and expired keys", func() {
		r := forwardAuth(api, "GET", "/v1/leads", "", nil)
		Expect(r.Status).To(Equal(401))
		Expect(r.Header.Get("WWW-Authenticate")).To(Equal(`Bearer realm="latchkey"`), "no error code without a credential (RFC 6750 §3.1)")

		mistyped := key[:len(key)-1] + "A"
		if strings.HasSuffix(key, "A") {
			mistyped = key[:len(key)-1] + "B"
		}
		r = forwardAuth(api, "GET", "/v1/leads", "", bearer(mistyped))
		Expect(r.Status).To(Equal(401))
		Expect(r.Header.Get("WWW-Authenticate")).To(ContainSubstring(`error="invalid_token"`))

		_, testKey := newAPIKey(ns, "sandbox", func(k *latchkeyv1.APIKey) { k.Spec.Environment = latchkeyv1.EnvironmentTest })
		Eventually(func() string {
			_, description := errorBody(forwardAuth(api, "GET", "/v1/leads", "", bearer(testKey)))
			return description
		}).Should(Equal("this API does not accept test keys"))

		Expect(forwardAuth(api, "GET", "/v1/leads", "", map[string]string{"Authorization": "Basic " + key}).Status).To(Equal(401))
		Expect(forwardAuth(api, "GET", "/v1/leads", "", map[string]string{"Authorization": "Bearer " + key, "X-API-Key": testKey}).Status).
			To(Equal(401), "two credentials are refused, not chosen between")

		unknown, err := credential.NewAPIKey(rand.Reader, "lk", "live")
		Expect(err).NotTo(HaveOccurred())
		unknownAnswer := forwardAuth(api, "GET", "/v1/leads", "", bearer(unknown))
		Expect(unknownAnswer.Status).To(Equal(401))
		mergePatch(keyObj, `{"spec":{"revoked":true}}`)
		var revoked response
		Eventually(func() int {
			revoked = forwardAuth(api, "GET", "/v1/leads", "", bearer(key))
			return revoked.Status
		}).Should(Equal(401))
		Expect(revoked.Body).To(Equal(unknownAnswer.Body), "a revoked key cannot be told from an unknown one")
		Expect(revoked.Header.Get("WWW-Authenticate")).To(Equal(unknownAnswer.Header.Get("WWW-Authenticate")))
		code, _ := errorBody(revoked)
		Expect(code).To(Equal("invalid_token"))

		_, expiring := newAPIKey(ns, "expiring", func(k *latchkeyv1.APIKey) {
			k.Spec.ExpiresAt = ptrTime(time.Now().Add(6 * time.Second)) // room for a loaded machine to issue it
		})
		Eventually(func() int { return forwardAuth(api, "GET", "/v1/leads", "", bearer(expiring)).Status }).Should(Equal(200))
		Eventually(func() int { return forwardAuth(api, "GET", "/v1/leads", "", bearer(expiring)).Status }).Should(Equal(401))
	})

	It("keeps accepting the previous key during a rotation's grace period", func() {
		mergePatch(keyObj, `{"metadata":{"annotations":{"latchkey.dev/rotate":"r1"}}}`)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(keyObj), keyObj)).To(Succeed())
			g.Expect(keyObj.Status.Credentials).To(HaveLen(2))
		}).Should(Succeed())
		Consistently(func() int { return forwardAuth(api, "GET", "/v1/leads", "", bearer(key)).Status }, "300ms").Should(Equal(200))
	})

	It("records last use in status, within the write budget", func() {
		Expect(forwardAuth(api, "GET", "/v1/leads", "", bearer(key)).Status).To(Equal(200))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(keyObj), keyObj)).To(Succeed())
			g.Expect(keyObj.Status.LastUsedAt).NotTo(BeNil())
			g.Expect(keyObj.Status.LastUsedAt.Time).To(Equal(keyObj.Status.LastUsedAt.Truncate(time.Minute)))
		}).Should(Succeed())
	})

	It("refuses paths it cannot match safely, after authentication", func() {
		for _, uri := range []string{"/v1/leads/..%2f..%2fadmin", "/v1/leads/../admin", "//v1/leads", "/v1/leads;x", "/v1/%2e%2e/x", "/v1/leads/%5cx", "v1/leads",
			"/v1/leads#/../admin", "/v1/leads%23/../admin"} {
			r := forwardAuth(api, "GET", uri, "", bearer(key))
			Expect(r.Status).To(Equal(403), uri)
		}
		Expect(forwardAuth(api, "GET", "/v1/%6Ceads", "", bearer(key)).Status).To(Equal(200), "an encoded letter is decoded before matching")
		Expect(forwardAuth(api, "POST", "/v1/%6Ceads", "", bearer(key)).Status).To(Equal(403), "and cannot dodge the POST rule")
		Expect(forwardAuth(api, "HEAD", "/v1/leads", "", bearer(key)).Status).To(Equal(200), "HEAD needs what GET needs")
		Expect(forwardAuth(api, "post", "/v1/leads", "", bearer(key)).Status).To(Equal(403), "methods compare case-insensitively")

		// An auth URL is read as it was sent: one the authorizer does not serve
		// is refused, never redirected to a cleaned-up one that it would serve.
		for _, authPath := range []string{"/authz//api/" + api, "/authz/x/../api/" + api, "/authz/api/" + api + "/", "/authz/./api/" + api} {
			Expect(forwardAuthURL(authPath, "GET", "/v1/leads", "", bearer(key)).Status).To(Equal(403), authPath)
		}

		// Envoy's HTTP mode: the original path after /envoy, never a redirect.
		envoy := func(path string) int {
			req, err := http.NewRequest(http.MethodGet, authorizer.HTTP+"/envoy"+path, nil)
			Expect(err).NotTo(HaveOccurred())
			req.Host = "leads." + ns + ".test"
			req.Header.Set("Authorization", "Bearer "+key)
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Do(req)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp.StatusCode
		}
		Expect(envoy("/v1/leads")).To(Equal(200))
		Expect(envoy("//v1/leads")).To(Equal(403))
		Expect(envoy("/v1/x/../leads")).To(Equal(403))
	})
})

func ptrTime(t time.Time) *metav1.Time { v := metav1.NewTime(t.Truncate(time.Second)); return &v }
