//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// The edge specs: a real proxy (Caddy, built by hack/caddy.sh) with forward_auth
// to `latchkey authz`, in front of an upstream service that records what it
// receives. Every request goes client -> Caddy -> authorizer -> Caddy -> upstream,
// all over real sockets, and the authorizer runs as its own process with its own
// identity and RBAC, fed by watches on the suite's control plane.

const (
	edgeNS          = "e2e-edge"
	leadsAPI        = edgeNS + "/leads"
	leadsIdentifier = "https://leads.e2e"
	// requestIDHeader pairs a request the spec sends with what the upstream saw.
	requestIDHeader = "X-E2e-Request"
)

var _ = Describe("Edge authorization through Caddy", Label("authz"), Ordered, func() {
	ctx := context.Background()
	var (
		e                 *edge
		liveKey, testKey  string
		liveKeyID         string
		worker            client
		workerAccessToken string
	)

	BeforeAll(func() {
		By("installing the authorizer's RBAC as `make demo` does, and declaring the leads API and its credentials")
		kubectl("apply", "--server-side", "-k", filepath.Join(root, "config", "authz", "local"))
		kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd/apis.latchkey.dev")
		kubectl("apply", "--server-side", "-f", filepath.Join("testdata", "edge.yaml"))
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", edgeNS,
			"apikey/leads-live", "apikey/leads-test", "oauthclient/leads-worker")
		liveKey = secretValue(edgeNS, "leads-live-apikey", "api-key")
		Expect(strings.HasPrefix(liveKey, "lk_live_")).To(BeTrue(), "a live key starts lk_live_")
		testKey = secretValue(edgeNS, "leads-test-apikey", "api-key")
		Expect(strings.HasPrefix(testKey, "lk_test_")).To(BeTrue(), "a test key starts lk_test_")
		liveKeyID = kubectl("get", "apikey", "leads-live", "-n", edgeNS, "-o", "jsonpath={.status.keyID}")
		Expect(liveKeyID).To(MatchRegexp(`^[0-9a-f]{12}$`))
		worker = client{
			ID:       secretValue(edgeNS, "leads-worker-oauthclient", "client_id"),
			Secret:   secretValue(edgeNS, "leads-worker-oauthclient", "client_secret"),
			TokenURL: secretValue(edgeNS, "leads-worker-oauthclient", "token_url"),
		}

		const authzUser = "system:serviceaccount:latchkey-system:latchkey-authz"
		canI, _ := kubectlErr("auth", "can-i", "get", "secrets", "--all-namespaces", "--as", authzUser) // "no" exits 1
		Expect(canI).To(Equal("no\n"), "the authorizer reads no Secret")

		e = startEdge()
	})

	It("lets a live key with leads:read through, and the upstream sees who called, never a forged identity", func() {
		forged := map[string]string{
			"X-Latchkey-Subject":   "admin",
			"x-latchkey-subject":   "admin-again", // a second spelling, sent as its own header line
			"X-Latchkey-Client-Id": "forged-client",
			"X-Latchkey-Scopes":    "leads:read leads:write",
			"X-Forwarded-Method":   "DELETE",
			"X-Forwarded-Uri":      "/forged",
		}
		// The API appears in the authorizer's index through its watch: poll, briefly.
		var r reply
		Eventually(func() int { r = e.do(http.MethodGet, "/v1/leads?limit=2", liveKey, forged); return r.Status }).
			WithTimeout(10*time.Second).Should(Equal(http.StatusOK), func() string { return r.String() })
		Expect(r.Upstream).NotTo(BeNil(), "the request reached the upstream")
		Expect(r.Upstream.Method).To(Equal(http.MethodGet))
		Expect(r.Upstream.URI).To(Equal("/v1/leads?limit=2"))
		h := r.Upstream.Header
		Expect(h.Values("X-Latchkey-Subject")).To(Equal([]string{"apikey:" + edgeNS + "/leads-live"}))
		Expect(h.Values("X-Latchkey-Credential-Kind")).To(Equal([]string{"api_key"}))
		Expect(h.Values("X-Latchkey-Namespace")).To(Equal([]string{edgeNS}))
		Expect(h.Values("X-Latchkey-Name")).To(Equal([]string{"leads-live"}))
		Expect(h.Values("X-Latchkey-Key-Id")).To(Equal([]string{liveKeyID}))
		Expect(h.Values("X-Latchkey-Environment")).To(Equal([]string{"live"}))
		Expect(h.Values("X-Latchkey-Scopes")).To(Equal([]string{"leads:read"}))
		Expect(h.Values("X-Latchkey-Api")).To(Equal([]string{leadsAPI}))
		Expect(h).NotTo(HaveKey("X-Latchkey-Client-Id"), "a header the authorizer does not set is removed, not passed on")
		Expect(h).NotTo(HaveKey("X-Forwarded-Method"), "the Caddyfile strips what forward_auth sets for the authorizer only")
		Expect(h).NotTo(HaveKey("X-Forwarded-Uri"))

		By("and records the use in the key's status (the authorizer's status RBAC at work)")
		Eventually(func() string {
			return kubectl("get", "apikey", "leads-live", "-n", edgeNS, "-o", "jsonpath={.status.lastUsedAt}")
		}).ShouldNot(BeEmpty())
	})

	It("refuses the same key on a leads:write route with 403 insufficient_scope", func() {
		for _, extra := range []map[string]string{nil, {"X-Forwarded-Method": "GET"}} {
			r := e.do(http.MethodPost, "/v1/leads", liveKey, extra)
			Expect(r.Status).To(Equal(http.StatusForbidden), r.String())
			Expect(r.Challenge).To(ContainSubstring(`error="insufficient_scope"`))
			Expect(r.Challenge).To(ContainSubstring(`scope="leads:write"`))
			Expect(r.JSON().Error).To(Equal("insufficient_scope"), r.String())
			Expect(r.JSON().Scope).To(Equal("leads:write"))
			Expect(r.Upstream).To(BeNil(), "the upstream is never called")
		}
	})

	It("refuses a test key on the live-only API, and a request without a credential, with 401", func() {
		r := e.do(http.MethodGet, "/v1/leads", testKey, nil)
		Expect(r.Status).To(Equal(http.StatusUnauthorized), r.String())
		Expect(r.Challenge).To(ContainSubstring(`error="invalid_token"`))
		Expect(r.JSON().Error).To(Equal("invalid_token"))
		Expect(r.JSON().Description).To(Equal("this API does not accept test keys"))
		Expect(r.Upstream).To(BeNil())

		r = e.do(http.MethodGet, "/v1/leads", "", map[string]string{"X-Latchkey-Subject": "admin"})
		Expect(r.Status).To(Equal(http.StatusUnauthorized), r.String())
		Expect(r.Challenge).To(Equal(`Bearer realm="latchkey"`), "a bare challenge (RFC 6750 §3.1)")
		Expect(r.JSON().Description).NotTo(BeEmpty(), r.String())
		Expect(r.Upstream).To(BeNil())
	})

	It("lets a client's access token for the API through", func() {
		tok, err := (&clientcredentials.Config{ClientID: worker.ID, ClientSecret: worker.Secret, TokenURL: worker.TokenURL,
			AuthStyle: oauth2.AuthStyleInHeader, EndpointParams: url.Values{"resource": {leadsIdentifier}}}).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		workerAccessToken = tok.AccessToken

		// The authorizer verifies with the public keys the manager publishes in the
		// latchkey-jwks ConfigMap; they are there before the token is.
		r := e.do(http.MethodGet, "/v1/leads", workerAccessToken, map[string]string{
			"X-Latchkey-Key-Id": "forged", "X-Latchkey-Environment": "live", "X-Latchkey-Subject": "admin"})
		Expect(r.Status).To(Equal(http.StatusOK), r.String())
		h := r.Upstream.Header
		Expect(h.Values("X-Latchkey-Credential-Kind")).To(Equal([]string{"access_token"}))
		Expect(h.Values("X-Latchkey-Client-Id")).To(Equal([]string{worker.ID}))
		Expect(h.Values("X-Latchkey-Subject")).To(Equal([]string{worker.ID}))
		Expect(h.Values("X-Latchkey-Namespace")).To(Equal([]string{edgeNS}))
		Expect(h.Values("X-Latchkey-Name")).To(Equal([]string{"leads-worker"}))
		Expect(h.Values("X-Latchkey-Scopes")).To(Equal([]string{"leads:read"}))
		Expect(h.Values("X-Latchkey-Api")).To(Equal([]string{leadsAPI}))
		Expect(h).NotTo(HaveKey("X-Latchkey-Key-Id"), "an access token has no key ID: the forged one is gone")
		Expect(h).NotTo(HaveKey("X-Latchkey-Environment"))
	})

	It("refuses a key a secret scanner reports, at the proxy and at introspection, within a second; kubectl describe says why", func() {
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", edgeNS, "apikey/leads-partner", "oauthclient/leads-gateway")
		partner := secretValue(edgeNS, "leads-partner-apikey", "api-key")
		gateway := client{ID: secretValue(edgeNS, "leads-gateway-oauthclient", "client_id"),
			Secret: secretValue(edgeNS, "leads-gateway-oauthclient", "client_secret")}
		Eventually(func() int { return e.do(http.MethodGet, "/v1/leads", partner, nil).Status }).Should(Equal(http.StatusOK))
		Eventually(func() bool { return active(gateway, partner) }).Should(BeTrue())

		const foundAt = "https://github.com/acme/partner-app/blob/main/.env"
		start := time.Now()
		Expect(scanner.report(partner, foundAt)).To(Equal(http.StatusNoContent))
		var r reply
		measureWithin(start, time.Second, "reported key refused through Caddy", func() bool {
			r = e.do(http.MethodGet, "/v1/leads", partner, nil)
			return r.Status == http.StatusUnauthorized
		})
		Expect(r.Upstream).To(BeNil())
		measureWithin(start, time.Second, "reported key inactive at introspection", func() bool { return !active(gateway, partner) })

		var described string
		Eventually(func() string {
			described = kubectl("describe", "apikey", "leads-partner", "-n", edgeNS)
			return described
		}).Should(And(ContainSubstring("LeakedKeyRevoked"), ContainSubstring("LeakReported")))
		Expect(described).To(ContainSubstring("Type:                  Leaked"))
		Expect(described).To(ContainSubstring("reported public by github"))
		Expect(described).To(ContainSubstring(foundAt))
		Expect(strings.Contains(described, partner)).To(BeFalse(), "the reported key in kubectl describe")

		By("and the Secret gets a new key that the proxy lets through")
		var replacement string
		Eventually(func() bool {
			replacement = secretValue(edgeNS, "leads-partner-apikey", "api-key")
			return replacement != partner
		}).Should(BeTrue(), "a new key in the Secret")
		Eventually(func() int { return e.do(http.MethodGet, "/v1/leads", replacement, nil).Status }).Should(Equal(http.StatusOK))
	})

	It("refuses a key someone reported with `kubectl latchkey report-leak`, with the key alone", func() {
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", edgeNS, "apikey/leads-found")
		found := secretValue(edgeNS, "leads-found-apikey", "api-key")
		Eventually(func() int { return e.do(http.MethodGet, "/v1/leads", found, nil).Status }).Should(Equal(http.StatusOK))
		file := filepath.Join(GinkgoT().TempDir(), "found-in-a-log.txt")
		Expect(os.WriteFile(file, []byte("# pasted from a CI log\n"+found+"\n"), 0o600)).To(Succeed())
		start := time.Now()
		out := kubectl("latchkey", "report-leak", "-f", file, "--url", issuer)
		Expect(out).To(ContainSubstring("reported 1 credential(s); a live one stops working within a second"))
		Expect(strings.Contains(out, found)).To(BeFalse(), "the reported key in report-leak's output")
		measureWithin(start, 2*time.Second, "self-reported key refused through Caddy", func() bool {
			return e.do(http.MethodGet, "/v1/leads", found, nil).Status == http.StatusUnauthorized
		})
		Eventually(func() string {
			return kubectl("get", "apikey", "leads-found", "-n", edgeNS, "-o", "jsonpath={.status.leaks[0].reporter}/{.status.leaks[0].outcome}")
		}).Should(Equal("self/Revoked"))
	})

	It("answers 429 with Retry-After and the RateLimit fields past a key's limit, leaves other keys alone, and applies an edited limit within a second", func() {
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", edgeNS, "apikey/leads-metered")
		metered := secretValue(edgeNS, "leads-metered-apikey", "api-key")
		const limits = `{"spec":{"rateLimit":{"requests":1000,"per":"1h","overrides":[
			{"kind":"APIKey","namespace":"e2e-edge","name":"leads-metered","requests":3,"per":"1h"}]}}}`
		kubectl("patch", "api", "leads", "-n", edgeNS, "--type", "merge", "-p", limits)
		DeferCleanup(func() {
			kubectl("patch", "api", "leads", "-n", edgeNS, "--type", "merge", "-p", `{"spec":{"rateLimit":null}}`)
		})

		var r reply
		Eventually(func() string { r = e.do(http.MethodGet, "/v1/leads", metered, nil); return r.Body }).
			Should(ContainSubstring("rate limit"), "the fourth request of three, or later")
		Expect(r.Status).To(Equal(http.StatusTooManyRequests), r.String())
		Expect(r.JSON().Error).To(Equal("rate_limited"))
		Expect(r.RetryAfter).To(MatchRegexp(`^\d+$`))
		Expect(r.RateLimitPolicy).To(Equal(`"api";q=3;w=3600`))
		Expect(r.RateLimit).To(MatchRegexp(`^"api";r=0;t=\d+$`))
		Expect(r.Upstream).To(BeNil(), "the upstream is never called")

		Expect(kubectl("latchkey", "status", "apikey/leads-metered", "-n", edgeNS)).
			To(MatchRegexp(`API e2e-edge/leads:\s+3 per 1h0m0s`), "kubectl latchkey status shows what applies")

		other := e.do(http.MethodGet, "/v1/leads", liveKey, nil)
		Expect(other.Status).To(Equal(http.StatusOK), "another key: its own budget (%s)", other.String())

		kubectl("patch", "api", "leads", "-n", edgeNS, "--type", "json", "-p", `[{"op":"replace","path":"/spec/rateLimit/overrides/0/requests","value":100}]`)
		start := time.Now() // kubectl returned: the API server has the edit
		measureWithin(start, time.Second, "a raised limit applied through Caddy", func() bool {
			return e.do(http.MethodGet, "/v1/leads", metered, nil).Status == http.StatusOK
		})
	})

	It("refuses a revoked API key through the proxy within a second", func() {
		Expect(e.do(http.MethodGet, "/v1/leads", liveKey, nil).Status).To(Equal(http.StatusOK))
		start := revoke(ctx, &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: edgeNS, Name: "leads-live"}})
		var r reply
		measureWithin(start, time.Second, "revoked API key refused through Caddy", func() bool {
			r = e.do(http.MethodGet, "/v1/leads", liveKey, nil)
			return r.Status == http.StatusUnauthorized
		})
		Expect(r.JSON().Error).To(Equal("invalid_token"), r.String())
		Expect(r.JSON().Description).To(Equal("the credential is not valid"))
		Expect(r.Upstream).To(BeNil())
	})

	It("refuses a revoked client's access token through the proxy within a second", func() {
		Expect(workerAccessToken).NotTo(BeEmpty(), "the access token spec ran")
		Expect(e.do(http.MethodGet, "/v1/leads", workerAccessToken, nil).Status).To(Equal(http.StatusOK))
		start := revoke(ctx, &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Namespace: edgeNS, Name: "leads-worker"}})
		var r reply
		measureWithin(start, time.Second, "revoked client's access token refused through Caddy", func() bool {
			r = e.do(http.MethodGet, "/v1/leads", workerAccessToken, nil)
			return r.Status == http.StatusUnauthorized
		})
		Expect(r.JSON().Error).To(Equal("invalid_token"), r.String())
		Expect(r.Upstream).To(BeNil())
	})
})

// startEdge starts the authorizer (as its ServiceAccount), an upstream service that
// records what it receives, and Caddy in front of it asking the authorizer about the
// leads API. Everything stops when the calling container ends.
func startEdge() *edge {
	By("starting the authorizer as its ServiceAccount")
	authzAddr := startAuthzProcess("authz")

	By("starting the upstream service and Caddy in front of it")
	up := startUpstream()
	DeferCleanup(up.close)
	caddyAddr := freeAddr()
	caddy := startProcess("caddy", "", caddyBin, "run", "--adapter", "caddyfile", "--config",
		renderTemplate("Caddyfile.tmpl", "Caddyfile", map[string]string{
			"Listen": caddyAddr, "Authz": authzAddr, "API": leadsAPI, "Upstream": up.addr,
			"Storage": filepath.Join(workDir, "caddy-data"),
		}))
	DeferCleanup(func() { caddy.stop() })
	e := &edge{proxy: "http://" + caddyAddr, up: up}
	waitServing(caddy, func() bool { return e.do(http.MethodGet, "/v1/leads", "", nil).Status != 0 },
		"Caddy serves")
	return e
}

// authzKubeconfig writes a kubeconfig for the authorizer's ServiceAccount
// (config/authz/local; a TokenRequest token), so that it runs with exactly its
// production RBAC.
func authzKubeconfig() string {
	token := strings.TrimSpace(kubectl("create", "token", "latchkey-authz", "-n", "latchkey-system", "--duration=2h"))
	cfg, err := clientcmd.LoadFromFile(filepath.Join(workDir, "admin.kubeconfig"))
	Expect(err).NotTo(HaveOccurred())
	for name := range cfg.AuthInfos {
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	}
	path := filepath.Join(workDir, "latchkey-authz.kubeconfig")
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}

// waitServing waits until ready holds, and fails at once, with the end of the
// process's log, if the process exits first.
func waitServing(p *process, ready func() bool, what string) {
	EventuallyWithOffset(1, func() bool {
		if !p.Running() {
			logs, _ := os.ReadFile(filepath.Join(workDir, p.Name+".log"))
			StopTrying(fmt.Sprintf("%s exited (%v); the end of its log:\n%s", p.Name, p.Err(), tail(string(logs), 4000))).Now()
		}
		return ready()
	}).Should(BeTrue(), what)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// revoke sets spec.revoked as the admin and returns when it started sending the patch.
func revoke(ctx context.Context, obj crclient.Object) time.Time {
	c := adminClient()
	start := time.Now()
	ExpectWithOffset(1, c.Patch(ctx, obj, crclient.RawPatch(types.MergePatchType, []byte(`{"spec":{"revoked":true}}`)))).To(Succeed())
	return start
}

// measureWithin polls cond every 10 ms until it holds, failing unless it does
// within limit of start, and reports the time it took.
func measureWithin(start time.Time, limit time.Duration, what string, cond func() bool) time.Duration {
	remaining := max(limit-time.Since(start), 10*time.Millisecond) // a zero timeout would mean Gomega's default
	EventuallyWithOffset(1, cond).WithTimeout(remaining).WithPolling(10*time.Millisecond).Should(BeTrue(), what)
	took := time.Since(start)
	AddReportEntry(what, took.String())
	By(fmt.Sprintf("%s after %s", what, took.Round(time.Millisecond)))
	ExpectWithOffset(1, took).To(BeNumerically("<", limit), what)
	return took
}

// upstream is the protected service: it answers 200 and records the method, URI
// and headers of each request, by requestIDHeader, with any credential redacted
// (what it saw may be printed by a failing assertion).
type upstream struct {
	addr string
	srv  *http.Server
	mu   sync.Mutex
	seen map[string]*seenRequest
}

type seenRequest struct {
	Method, URI string
	Header      http.Header
}

func startUpstream() *upstream {
	u := &upstream{addr: freeAddr(), seen: map[string]*seenRequest{}}
	ln, err := net.Listen("tcp", u.addr)
	Expect(err).NotTo(HaveOccurred())
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h := r.Header.Clone()
	for _, name := range []string{"Authorization", "X-Api-Key"} {
		if _, ok := h[name]; ok {
			h[name] = []string{"(redacted)"}
		}
	}
	u.mu.Lock()
	u.seen[r.Header.Get(requestIDHeader)] = &seenRequest{Method: r.Method, URI: r.RequestURI, Header: h}
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "leads\n")
}

// take returns (and forgets) what the upstream saw of request id; nil if it never came.
func (u *upstream) take(id string) *seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen[id]
	delete(u.seen, id)
	return s
}

func (u *upstream) close() { _ = u.srv.Close() }

// edge sends requests through the proxy.
type edge struct {
	proxy string
	// host, when set, is the Host header of every request (a site the proxy serves by name).
	host string
	up   *upstream
	n    atomic.Int64
}

var edgeHTTP = &http.Client{Timeout: 5 * time.Second}

// reply is what the client got, and what the upstream saw of the request. It
// holds no credential: safe to print.
type reply struct {
	Status    int
	Challenge string // WWW-Authenticate
	Body      string
	Upstream  *seenRequest
	// RetryAfter, RateLimitPolicy and RateLimit are the client's response fields.
	RetryAfter, RateLimitPolicy, RateLimit string
}

// do sends method path through the proxy with credential (if any) as a bearer
// token and the extra headers (each as given, spelling included). A transport
// error is Status 0, so that do can be polled.
func (e *edge) do(method, path, credential string, extra map[string]string) reply {
	id := strconv.FormatInt(e.n.Add(1), 10)
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"name":"Ada"}`)
	}
	req, err := http.NewRequest(method, e.proxy+path, body)
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set(requestIDHeader, id)
	if e.host != "" {
		req.Host = e.host
	}
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	for name, value := range extra {
		req.Header[name] = append(req.Header[name], value)
	}
	resp, err := edgeHTTP.Do(req)
	if err != nil {
		return reply{Body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Challenge: resp.Header.Get("WWW-Authenticate"), Body: string(b), Upstream: e.up.take(id),
		RetryAfter: resp.Header.Get("Retry-After"), RateLimitPolicy: resp.Header.Get("RateLimit-Policy"), RateLimit: resp.Header.Get("RateLimit")}
}

func (r reply) String() string {
	return fmt.Sprintf("HTTP %d, WWW-Authenticate: %s, body: %s", r.Status, r.Challenge, strings.TrimSpace(r.Body))
}

// refusal is the JSON body of a 401 or 403.
type refusal struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Scope       string `json:"scope"`
}

func (r reply) JSON() refusal {
	var v refusal
	ExpectWithOffset(1, json.Unmarshal([]byte(r.Body), &v)).To(Succeed(), "a JSON body: %s", r.String())
	return v
}
