package tokenserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/testenv"
	"github.com/latchkey-dev/latchkey/tokenserver"
	"github.com/latchkey-dev/latchkey/tokenserver/thirdparty"
)

// The authorization_code flow end to end: a real upstream OpenID Provider (the
// example OP of github.com/zitadel/oidc, built by hack/oidc-provider.sh) with its
// own login form, real RBAC deciding the workspaces, and OAuthGrants on the real
// API server. The browser is an HTTP client with a cookie jar that submits the
// same forms a person would (the e2e suite drives Chromium).
var _ = Describe("Third-party apps (authorization_code)", Ordered, func() {
	const (
		alice, alicePassword = "alice", "alice-Password-1"
		bob, bobPassword     = "bob", "bob-Password-1"
		carol, carolPassword = "carol", "carol-Password-1"
		dave, davePassword   = "dave", "dave-Password-1"
		apiID                = "https://api.acme.test"
		billingID            = "https://billing.acme.test"
	)
	var (
		provider            *testenv.OIDCProvider
		ts, ts2             *runningServer
		publisher, wsA, wsB string
		app, publicApp, rs  testClient
		appServer           *httptest.Server
		callbacks           chan url.Values
	)

	BeforeAll(func() {
		ctx := context.Background()
		// The token server's address comes first: the provider must know its callback.
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		base := "http://" + listener.Addr().String()
		provider, err = testenv.StartOIDCProvider(filepath.Join(os.TempDir(), "latchkey-oidc-provider-ts.log"),
			[]string{base + "/oauth2/callback"}, []testenv.OIDCUser{
				{ID: alice, Username: alice, Password: alicePassword, Email: "alice@acme.test"},
				{ID: bob, Username: bob, Password: bobPassword, Email: "bob@acme.test"},
				{ID: carol, Username: carol, Password: carolPassword, Email: "carol@acme.test"},
				{ID: dave, Username: dave, Password: davePassword, Email: "dave@acme.test"},
			})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "latchkey-oidc-client"},
			Data:       map[string][]byte{tokenserver.UpstreamSecretKey: []byte(provider.ClientSecret)},
		})).To(Succeed())
		thirdParty := func(o *tokenserver.Options) {
			o.IssuerURL = base + "/"
			o.Upstream = &thirdparty.UpstreamConfig{IssuerURL: provider.Issuer, ClientID: provider.ClientID, UsernamePrefix: "-"}
			o.UpstreamSecretName = "latchkey-oidc-client"
			o.SignInsPerMinute = 10000 // every sign-in of the suite comes from 127.0.0.1
			// Every refresh a second after the last confirmation asks the provider
			// again: the specs that refresh run that path too.
			o.UpstreamRevalidation = time.Second
			o.AnonymousRequestsPerSource = -1 // the suite's public client and pages come from 127.0.0.1
		}
		ts = startServerOn(listener, thirdParty)
		ts2 = startServerWith(tokenServerConfig, "RS256", thirdParty, true) // a second replica, same issuer

		publisher, wsA, wsB = newNamespace(), newWorkspace(), newWorkspace()
		_, err = env.NewTenant(ctx, k8s, scheme, alice, wsA) // edit in wsA: may install apps there
		Expect(err).NotTo(HaveOccurred())
		_, err = env.NewTenant(ctx, k8s, scheme, alice, newNamespace()) // edit in a namespace that is no workspace
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, &latchkeyv1.API{
			ObjectMeta: metav1.ObjectMeta{Namespace: publisher, Name: "acme"},
			Spec: latchkeyv1.APISpec{Identifier: apiID, Namespaces: []string{"*"}, Scopes: []latchkeyv1.APIScope{
				{Name: "leads:read", Description: "Read your leads"}, {Name: "leads:write", Description: "Create and change leads"},
			}},
		})).To(Succeed())

		callbacks = make(chan url.Values, 16)
		appServer = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			callbacks <- r.URL.Query()
			_, _ = w.Write([]byte("app received the callback"))
		}))
		app = newClient(publisher, "crm", func(c *latchkeyv1.OAuthClient) {
			c.Spec.DisplayName = "Acme CRM"
			c.Spec.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantRefreshToken}
			c.Spec.RedirectURIs = []string{appServer.URL + "/callback"}
			c.Spec.Audiences = []string{apiID, billingID}
		})
		publicApp = newPublicClient(publisher, "crm-mobile", []string{"http://127.0.0.1:8765/cb"})
		rs = newResourceServer(publisher, "acme-api", func(c *latchkeyv1.OAuthClient) {
			c.Spec.Introspection = &latchkeyv1.IntrospectionPolicy{Audiences: []string{apiID}, Namespaces: []string{"*"}}
		})
		Eventually(func() int { return get(ts.URL + "/.well-known/oauth-authorization-server").StatusCode }).Should(Equal(200))
	})

	AfterAll(func() {
		for _, s := range []*runningServer{ts, ts2} {
			if s != nil {
				s.Stop()
			}
		}
		if appServer != nil {
			appServer.Close()
		}
		if provider != nil {
			Expect(provider.Stop()).To(Succeed())
		}
	})

	// authorize runs the browser's part: authorize, sign in upstream, and returns
	// the page the token server shows next (consent, or the app's callback).
	authorize := func(b *browser, params url.Values, user, password string) *http.Response {
		resp, err := b.Get(ts.URL + "/oauth2/authorize?" + params.Encode())
		Expect(err).NotTo(HaveOccurred())
		resp, err = testenv.SubmitOIDCLogin(b.Client, resp, user, password)
		Expect(err).NotTo(HaveOccurred())
		return resp
	}
	oauthConfig := func(c testClient) *oauth2.Config {
		return &oauth2.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, RedirectURL: appServer.URL + "/callback",
			Scopes:   []string{"leads:read"},
			Endpoint: oauth2.Endpoint{AuthURL: ts.URL + "/oauth2/authorize", TokenURL: ts.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	}
	// approve completes a flow for alice into workspace and returns the callback.
	approve := func(workspace string, verifier string) url.Values {
		b := newBrowser()
		cfg := oauthConfig(app)
		params := authParams(cfg.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier)))
		page := authorize(b, params, alice, alicePassword)
		if page.Request.URL.Path == "/callback" { // a grant already covered it
			page.Body.Close()
			return <-callbacks
		}
		body := readBody(page)
		resp, err := b.PostForm(ts.URL+"/oauth2/consent", url.Values{"csrf": {csrfOf(body)}, "action": {"approve"}, "workspace": {workspace}})
		Expect(err).NotTo(HaveOccurred())
		answer := readBody(resp)
		ExpectWithOffset(1, resp.Request.URL.Path).To(Equal("/callback"), "approving sends the browser back to the app: %s", answer)
		return <-callbacks
	}

	It("advertises the flow in its metadata (RFC 8414, RFC 9207)", func() {
		meta := get(ts.URL + "/.well-known/oauth-authorization-server").JSON()
		Expect(meta).To(HaveKeyWithValue("authorization_endpoint", ts.URL+"/oauth2/authorize"))
		Expect(meta).To(HaveKeyWithValue("revocation_endpoint", ts.URL+"/oauth2/revoke"))
		Expect(meta).To(HaveKeyWithValue("code_challenge_methods_supported", ConsistOf("S256")))
		Expect(meta).To(HaveKeyWithValue("response_types_supported", ConsistOf("code")))
		Expect(meta).To(HaveKeyWithValue("authorization_response_iss_parameter_supported", true))
		Expect(meta["scopes_supported"]).To(ContainElements("leads:read", "leads:write"))
	})

	It("signs alice in upstream, shows consent with the API's descriptions and only her workspaces, and issues tokens for the workspace she picks", func() {
		ctx := context.Background()
		verifier := oauth2.GenerateVerifier()
		cfg := oauthConfig(app)
		b := newBrowser()
		page := authorize(b, authParams(cfg.AuthCodeURL("xyz", oauth2.S256ChallengeOption(verifier))), alice, alicePassword)
		Expect(page.StatusCode).To(Equal(200))
		Expect(page.Header.Get("Content-Security-Policy")).To(ContainSubstring("frame-ancestors 'none'"))
		body := readBody(page)
		Expect(body).To(ContainSubstring("Acme CRM"))
		Expect(body).To(ContainSubstring(publisher))
		Expect(body).To(ContainSubstring("Read your leads"))
		Expect(body).NotTo(ContainSubstring("Create and change leads"), "only the requested scopes are listed")
		Expect(workspaceOptions(body)).To(Equal([]string{wsA}), "only the workspaces where RBAC lets alice create oauthgrants")

		resp, err := b.PostForm(ts.URL+"/oauth2/consent", url.Values{"csrf": {csrfOf(body)}, "action": {"approve"}, "workspace": {wsA}})
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.Request.Response.StatusCode).To(Equal(http.StatusSeeOther), "303 after the POST")
		cb := <-callbacks
		Expect(cb.Get("state")).To(Equal("xyz"))
		Expect(cb.Get("iss")).To(Equal(ts.URL + "/"))
		Expect(cb.Get("code")).NotTo(BeEmpty())

		grant := &latchkeyv1.OAuthGrant{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: wsA, Name: latchkeyv1.GrantName(app.ClientID)}, grant)).To(Succeed())
		Expect(grant.Spec.Client.UID).To(Equal(string(app.Object.UID)))
		Expect(grant.Spec.Scopes).To(ConsistOf("leads:read"))
		Expect(grant.Spec.GrantedBy).To(Equal(alice))

		token, err := cfg.Exchange(ctx, cb.Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.HasPrefix(token.RefreshToken, "lkrt."+wsA+".")).To(BeTrue(), "refresh token prefix is lkrt.%s.", wsA)
		claims := jwtClaims(token.AccessToken)
		Expect(claims).To(HaveKeyWithValue("sub", alice))
		Expect(claims).To(HaveKeyWithValue("scope", "leads:read"))
		Expect(claims).To(HaveKeyWithValue("latchkey.dev/workspace", wsA))
		Expect(claims).To(HaveKeyWithValue("latchkey.dev/grant_uid", string(grant.UID)))
		// Accepted at once: the token names the grant version its family was written at.
		intro := ts.introspect(rs, token.AccessToken)
		Expect(intro).To(HaveKeyWithValue("active", true))
		Expect(intro).To(HaveKeyWithValue("namespace", wsA))
		Eventually(func() []metav1.Condition {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(grant), grant)).To(Succeed())
			return grant.Status.Conditions
		}).Should(ContainElement(HaveField("Reason", latchkeyv1.ReasonGranted)))
	})

	It("redeems a code once across replicas: of two token servers racing, exactly one wins, and the other presentation revokes what it got", func() {
		verifier := oauth2.GenerateVerifier()
		code := approve(wsA, verifier).Get("code")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appServer.URL + "/callback"}, "code_verifier": {verifier}}
		auth := &basicAuth{app.ClientID, app.ClientSecret}
		var wg sync.WaitGroup
		results := make([]response, 2)
		for i, s := range []*runningServer{ts, ts2} {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				results[i] = postForm(s.URL+"/oauth2/token", form, auth)
			}()
		}
		wg.Wait()
		Expect([]int{results[0].StatusCode, results[1].StatusCode}).To(ConsistOf(200, 400))
		winner := results[0]
		if winner.StatusCode != 200 {
			winner = results[1]
		}
		loser := results[0]
		if loser.StatusCode == 200 {
			loser = results[1]
		}
		expectOAuthError(loser, 400, "invalid_grant")
		// A code presented twice may be a stolen one (RFC 6749 §4.1.2): what it gave is revoked.
		access := winner.JSON()["access_token"].(string)
		within(time.Second, "the tokens of a twice-presented code die", func() bool { return !ts.active(rs, access) })
		expectOAuthError(postForm(ts.URL+"/oauth2/token", form, auth), 400, "invalid_grant")
	})

	It("revokes the tokens of a code redeemed a second time, later", func() {
		verifier := oauth2.GenerateVerifier()
		code := approve(wsA, verifier).Get("code")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appServer.URL + "/callback"}, "code_verifier": {verifier}}
		auth := &basicAuth{app.ClientID, app.ClientSecret}
		first := postForm(ts2.URL+"/oauth2/token", form, auth)
		Expect(first.StatusCode).To(Equal(200), "%s", first.Body)
		access := first.JSON()["access_token"].(string)
		Expect(ts.active(rs, access)).To(BeTrue(), "accepted at once, without waiting for the watch")
		expectOAuthError(postForm(ts.URL+"/oauth2/token", form, auth), 400, "invalid_grant")
		within(time.Second, "the tokens of a twice-redeemed code die", func() bool { return !ts.active(rs, access) })
	})

	It("rotates refresh tokens on every use and kills the family when a replaced one comes back", func() {
		ctx := context.Background()
		verifier := oauth2.GenerateVerifier()
		cfg := oauthConfig(app)
		first, err := cfg.Exchange(ctx, approve(wsA, verifier).Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		auth := &basicAuth{app.ClientID, app.ClientSecret}
		refresh := func(token string, extra url.Values) response {
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
			for k, v := range extra {
				form[k] = v
			}
			return postForm(ts.URL+"/oauth2/token", form, auth)
		}
		second := refresh(first.RefreshToken, nil)
		Expect(second.StatusCode).To(Equal(200), "%s", second.Body)
		next := second.JSON()
		Expect(next["refresh_token"] == first.RefreshToken).To(BeFalse(), "the refresh token rotates")
		expectOAuthError(refresh(next["refresh_token"].(string), url.Values{"scope": {"leads:write"}}), 400, "invalid_scope")
		Eventually(func() bool { return ts.active(rs, next["access_token"].(string)) }).Should(BeTrue())

		expectOAuthError(refresh(first.RefreshToken, nil), 400, "invalid_grant") // replayed: the family dies
		within(time.Second, "the family's tokens die", func() bool { return !ts.active(rs, next["access_token"].(string)) })
		expectOAuthError(refresh(next["refresh_token"].(string), nil), 400, "invalid_grant")
	})

	It("accepts the documented JSON body at /oauth/token, and refuses a repeated or non-string parameter", func() {
		verifier := oauth2.GenerateVerifier()
		code := approve(wsA, verifier).Get("code")
		post := func(body string) response {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth/token", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			return do(req)
		}
		fields := func(extra string) string {
			return `{"grant_type":"authorization_code","code":"` + code + `","client_id":"` + app.ClientID + `","client_secret":"` +
				app.ClientSecret + `","redirect_uri":"` + appServer.URL + `/callback","code_verifier":"` + verifier + `"` + extra + `}`
		}
		expectOAuthError(post(fields(`,"code":"again"`)), 400, "invalid_request")
		expectOAuthError(post(fields(`,"scope":["leads:read"]`)), 400, "invalid_request")
		expectOAuthError(post(fields(`,"state":1`)), 400, "invalid_request")
		resp := post(fields(""))
		Expect(resp.StatusCode).To(Equal(200), "%s", resp.Body)
		_, ok := resp.JSON()["refresh_token"]
		Expect(ok).To(BeTrue(), "the response has a refresh_token")
	})

	It("skips the page when a grant already covers the request, and sends Deny back as access_denied", func() {
		cb := approve(wsA, oauth2.GenerateVerifier())
		Expect(cb.Get("code")).NotTo(BeEmpty())

		// Bob may install nowhere: the page offers nothing, and his answer is a denial.
		b := newBrowser()
		cfg := oauthConfig(app)
		page := authorize(b, authParams(cfg.AuthCodeURL("s-bob", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))), bob, bobPassword)
		body := readBody(page)
		Expect(workspaceOptions(body)).To(BeEmpty())
		resp, err := b.PostForm(ts.URL+"/oauth2/consent", url.Values{"csrf": {csrfOf(body)}, "action": {"deny"}})
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		denied := <-callbacks
		Expect(denied.Get("error")).To(Equal("access_denied"))
		Expect(denied.Get("state")).To(Equal("s-bob"))
		Expect(denied.Get("iss")).To(Equal(ts.URL + "/"))
	})

	It("refuses a consent POST without the page's CSRF token, a forged cookie, and a workspace not offered", func() {
		b := newBrowser()
		cfg := oauthConfig(app)
		page := authorize(b, authParams(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("scope", "leads:read leads:write"))), alice, alicePassword)
		body := readBody(page)
		before := grantVersion(wsA, app.ClientID)
		resp, err := b.PostForm(ts.URL+"/oauth2/consent", url.Values{"action": {"approve"}, "workspace": {wsA}})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		resp.Body.Close()
		// The cookie is intact, so the real form still works, but not for wsB.
		resp, err = b.PostForm(ts.URL+"/oauth2/consent", url.Values{"csrf": {csrfOf(body)}, "action": {"approve"}, "workspace": {wsB}})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		resp.Body.Close()
		// A stranger's browser with a made-up cookie.
		forged := newBrowser()
		u, _ := url.Parse(ts.URL + "/oauth2/")
		forged.Jar.SetCookies(u, []*http.Cookie{{Name: "latchkey_login", Value: "kid." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))}})
		resp, err = forged.PostForm(ts.URL+"/oauth2/consent", url.Values{"csrf": {csrfOf(body)}, "action": {"approve"}, "workspace": {wsA}})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		resp.Body.Close()
		Expect(grantVersion(wsA, app.ClientID)).To(Equal(before), "nothing was written")
	})

	It("attacker: shows an error page and never redirects before anyone has signed in, whatever is wrong with the request", func() {
		cfg := oauthConfig(app)
		good := authParams(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		at := func(mutate func(url.Values)) *http.Response {
			q := url.Values{}
			for k, v := range good {
				q[k] = append([]string(nil), v...)
			}
			mutate(q)
			resp, err := noFollow.Get(ts.URL + "/oauth2/authorize?" + q.Encode())
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp
		}
		redirect := appServer.URL + "/callback"
		for name, mutate := range map[string]func(url.Values){
			"unknown client":      func(q url.Values) { q.Set("client_id", "0123456789abcdef01234567") },
			"no client":           func(q url.Values) { q.Del("client_id") },
			"repeated client":     func(q url.Values) { q.Add("client_id", app.ClientID) },
			"redirect case":       func(q url.Values) { q.Set("redirect_uri", strings.ToUpper(redirect[:4])+redirect[4:]) },
			"redirect slash":      func(q url.Values) { q.Set("redirect_uri", redirect+"/") },
			"redirect fragment":   func(q url.Values) { q.Set("redirect_uri", redirect+"#x") },
			"redirect other host": func(q url.Values) { q.Set("redirect_uri", "https://evil.test/callback") },
			"redirect repeated":   func(q url.Values) { q.Add("redirect_uri", redirect) },
			"query too large":     func(q url.Values) { q.Set("x", strings.Repeat("a", 9000)) },
		} {
			resp := at(mutate)
			Expect(resp.StatusCode).To(BeNumerically(">=", 400), name)
			Expect(resp.Header.Get("Location")).To(BeEmpty(), name)
			Expect(resp.Header.Get("Content-Type")).To(HavePrefix("text/html"), name)
		}
		// With the app and its redirect URI known good, the request is still wrong:
		// RFC 6749 would redirect the error, but no one has signed in, so the issuer
		// would bounce any browser to a URI any tenant registered (RFC 9700 §4.11.2).
		for name, tc := range map[string]struct {
			mutate func(url.Values)
			code   string
		}{
			"no PKCE":              {func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
			"plain PKCE":           {func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
			"short challenge":      {func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request"},
			"token response type":  {func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
			"no response type":     {func(q url.Values) { q.Del("response_type") }, "invalid_request"},
			"scope not allowed":    {func(q url.Values) { q.Set("scope", "admin:all") }, "invalid_scope"},
			"scope repeated":       {func(q url.Values) { q.Add("scope", "leads:read") }, "invalid_request"},
			"resource not allowed": {func(q url.Values) { q.Set("resource", "https://other.test") }, "invalid_target"},
		} {
			resp, err := noFollow.Get(ts.URL + "/oauth2/authorize?" + func() string {
				q := url.Values{}
				for k, v := range good {
					q[k] = append([]string(nil), v...)
				}
				tc.mutate(q)
				return q.Encode()
			}())
			Expect(err).NotTo(HaveOccurred())
			body := readBody(resp)
			Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), name)
			Expect(resp.Header.Get("Location")).To(BeEmpty(), name)
			Expect(resp.Header.Get("Content-Type")).To(HavePrefix("text/html"), name)
			Expect(body).To(ContainSubstring(tc.code), name)
		}

		By("the partner documentation's /oauth/authorize takes a request without response_type as code")
		q := url.Values{}
		for k, v := range good {
			q[k] = append([]string(nil), v...)
		}
		q.Del("response_type")
		resp, err := noFollow.Get(ts.URL + "/oauth/authorize?" + q.Encode())
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusFound))
		Expect(resp.Header.Get("Location")).To(HavePrefix(provider.Issuer), "on to sign in upstream")
		q.Set("response_type", "token")
		resp, err = noFollow.Get(ts.URL + "/oauth/authorize?" + q.Encode())
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), "only an absent response_type means code")
	})

	It("refuses a code with a wrong verifier, for another client, with another redirect_uri, or without a verifier", func() {
		verifier := oauth2.GenerateVerifier()
		code := approve(wsA, verifier).Get("code")
		other := newClient(publisher, "other-app", func(c *latchkeyv1.OAuthClient) {
			c.Spec.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}
			c.Spec.RedirectURIs = []string{appServer.URL + "/callback"}
			c.Spec.Audiences = []string{apiID}
		})
		form := func(mutate func(url.Values)) url.Values {
			f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appServer.URL + "/callback"}, "code_verifier": {verifier}}
			mutate(f)
			return f
		}
		auth := &basicAuth{app.ClientID, app.ClientSecret}
		expectOAuthError(postForm(ts.URL+"/oauth2/token", form(func(f url.Values) { f.Set("code_verifier", oauth2.GenerateVerifier()) }), auth), 400, "invalid_grant")
		expectOAuthError(postForm(ts.URL+"/oauth2/token", form(func(f url.Values) { f.Del("code_verifier") }), auth), 400, "invalid_request")
		expectOAuthError(postForm(ts.URL+"/oauth2/token", form(func(f url.Values) { f.Set("redirect_uri", appServer.URL+"/callback/") }), auth), 400, "invalid_grant")
		expectOAuthError(postForm(ts.URL+"/oauth2/token", form(func(url.Values) {}), &basicAuth{other.ClientID, other.ClientSecret}), 400, "invalid_grant")
		expectOAuthError(postForm(ts.URL+"/oauth2/token", form(func(f url.Values) { f.Set("code", code[:len(code)-2]+"AA") }), auth), 400, "invalid_grant")
		// None of that used the code up.
		Expect(postForm(ts.URL+"/oauth2/token", form(func(url.Values) {}), auth).StatusCode).To(Equal(200))
	})

	It("serves a public client with PKCE and no secret, and refuses it without PKCE", func() {
		ctx := context.Background()
		Expect(publicApp.ClientSecret).To(BeEmpty())
		verifier := oauth2.GenerateVerifier()
		// A native app listens on whatever loopback port is free (RFC 8252 §7.3).
		redirect := "http://127.0.0.1:" + freePort() + "/cb"
		cfg := &oauth2.Config{ClientID: publicApp.ClientID, RedirectURL: redirect, Scopes: []string{"leads:read"},
			Endpoint: oauth2.Endpoint{AuthURL: ts.URL + "/oauth2/authorize", TokenURL: ts.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
		b := newBrowser()
		b.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), redirect) {
				return http.ErrUseLastResponse
			}
			return nil
		}
		page := authorize(b, authParams(cfg.AuthCodeURL("p", oauth2.S256ChallengeOption(verifier))), alice, alicePassword)
		body := readBody(page)
		resp, err := b.PostForm(ts.URL+"/oauth2/consent", url.Values{"csrf": {csrfOf(body)}, "action": {"approve"}, "workspace": {wsA}})
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		Expect(err).NotTo(HaveOccurred())
		token, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		Expect(ts.active(rs, token.AccessToken)).To(BeTrue(), "accepted at once, without waiting for the watch")
		// Its grant covers the request now, and still the user is asked (RFC 8252 §8.6).
		again := authorize(b, authParams(cfg.AuthCodeURL("p2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))), alice, alicePassword)
		Expect(again.StatusCode).To(Equal(http.StatusOK))
		Expect(workspaceOptions(readBody(again))).To(ContainElement(wsA), "the consent page, not a silent redirect")
		// The same app may not skip PKCE at authorize.
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		r, err := noFollow.Get(ts.URL + "/oauth2/authorize?" + url.Values{"client_id": {publicApp.ClientID}, "response_type": {"code"}, "redirect_uri": {redirect}}.Encode())
		Expect(err).NotTo(HaveOccurred())
		Expect(r.StatusCode).To(Equal(http.StatusBadRequest), "an error page: no one has signed in")
		Expect(r.Header.Get("Location")).To(BeEmpty())
		Expect(readBody(r)).To(ContainSubstring("PKCE is required"))
	})

	It("revokes (RFC 7009): a refresh token or an access token ends its family; unknown tokens get 200", func() {
		ctx := context.Background()
		verifier := oauth2.GenerateVerifier()
		token, err := oauthConfig(app).Exchange(ctx, approve(wsA, verifier).Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		auth := &basicAuth{app.ClientID, app.ClientSecret}
		Expect(postForm(ts.URL+"/oauth2/revoke", url.Values{"token": {"lkrt.nowhere.AAAA"}}, auth).StatusCode).To(Equal(200))
		Expect(postForm(ts.URL+"/oauth2/revoke", url.Values{"token": {token.AccessToken}}, auth).StatusCode).To(Equal(200))
		within(time.Second, "the revoked family's access token dies", func() bool { return !ts.active(rs, token.AccessToken) })
		expectOAuthError(postForm(ts.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token.RefreshToken}}, auth), 400, "invalid_grant")
	})

	It("keeps a revoked grant revoked: approving again installs the app anew, and no token of the old grant comes back", func() {
		ctx := context.Background()
		verifier := oauth2.GenerateVerifier()
		token, err := oauthConfig(app).Exchange(ctx, approve(wsA, verifier).Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		key := client.ObjectKey{Namespace: wsA, Name: latchkeyv1.GrantName(app.ClientID)}
		old := &latchkeyv1.OAuthGrant{}
		Expect(k8s.Get(ctx, key, old)).To(Succeed())
		revoked := old.DeepCopy()
		revoked.Spec.Revoked = true
		Expect(k8s.Patch(ctx, revoked, client.MergeFrom(old))).To(Succeed())
		within(time.Second, "the revoked grant's token dies", func() bool { return !ts.active(rs, token.AccessToken) })
		// Uninstalled as declared is the desired state: Ready (reason Revoked), and
		// Current to kstatus, so a GitOps sync that revokes it completes.
		Eventually(func(g Gomega) {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(latchkeyv1.GroupVersion.WithKind("OAuthGrant"))
			g.Expect(k8s.Get(ctx, key, live)).To(Succeed())
			conditions, _, _ := unstructured.NestedSlice(live.Object, "status", "conditions")
			g.Expect(conditions).To(ContainElement(And(HaveKeyWithValue("type", "Ready"), HaveKeyWithValue("status", "True"),
				HaveKeyWithValue("reason", latchkeyv1.ReasonGrantRevoked))))
			result, err := kstatus.Compute(live)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(result.Status).To(Equal(kstatus.CurrentStatus))
		}).Should(Succeed())
		back := revoked.DeepCopy()
		back.Spec.Revoked = false
		Expect(apierrors.IsInvalid(k8s.Patch(ctx, back, client.MergeFrom(revoked)))).To(BeTrue(), "revocation is one-way")

		approve(wsA, oauth2.GenerateVerifier())
		renewed := &latchkeyv1.OAuthGrant{}
		Expect(k8s.Get(ctx, key, renewed)).To(Succeed())
		Expect(renewed.UID).NotTo(Equal(old.UID), "approving again replaced the revoked grant")
		Expect(renewed.Spec.Revoked).To(BeFalse())
		Expect(ts.active(rs, token.AccessToken)).To(BeFalse())
		expectOAuthError(postForm(ts.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token.RefreshToken}},
			&basicAuth{app.ClientID, app.ClientSecret}), 400, "invalid_grant")
	})

	It("bounds tokens by the grant's audiences: an API removed from the grant refuses them at once", func() {
		ctx := context.Background()
		verifier := oauth2.GenerateVerifier()
		token, err := oauthConfig(app).Exchange(ctx, approve(wsA, verifier).Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		Expect(ts.active(rs, token.AccessToken)).To(BeTrue())
		key := client.ObjectKey{Namespace: wsA, Name: latchkeyv1.GrantName(app.ClientID)}
		grant := &latchkeyv1.OAuthGrant{}
		Expect(k8s.Get(ctx, key, grant)).To(Succeed())
		Expect(grant.Spec.Audiences).To(ConsistOf(apiID, billingID))
		narrowed := grant.DeepCopy()
		narrowed.Spec.Audiences = []string{billingID}
		Expect(k8s.Patch(ctx, narrowed, client.MergeFrom(grant))).To(Succeed())
		within(time.Second, "the token is refused at the API removed from the grant", func() bool { return !ts.active(rs, token.AccessToken) })
		// A refresh issues tokens for what is left only.
		resp := postForm(ts.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token.RefreshToken}},
			&basicAuth{app.ClientID, app.ClientSecret})
		Expect(resp.StatusCode).To(Equal(200), "%s", resp.Body)
		Expect(jwtClaims(resp.JSON()["access_token"].(string))).To(HaveKeyWithValue("aud", billingID))
		Expect(k8s.Delete(ctx, narrowed)).To(Succeed()) // the next specs approve afresh
		Eventually(func() string { return grantVersion(wsA, app.ClientID) }).Should(Equal("none"))
	})

	It("stops renewing when RBAC no longer lets the user install apps in the workspace", func() {
		ctx := context.Background()
		ws := newWorkspace()
		_, err := env.NewTenant(ctx, k8s, scheme, alice, ws)
		Expect(err).NotTo(HaveOccurred())
		// Without wsA's grant the consent page is shown (it would otherwise be skipped
		// for wsA, the one workspace whose grant covers the request).
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, &latchkeyv1.OAuthGrant{ObjectMeta: metav1.ObjectMeta{Namespace: wsA, Name: latchkeyv1.GrantName(app.ClientID)}}))).To(Succeed())
		Eventually(func() string { return grantVersion(wsA, app.ClientID) }).Should(Equal("none"))
		verifier := oauth2.GenerateVerifier()
		token, err := oauthConfig(app).Exchange(ctx, approve(ws, verifier).Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ws, Name: alice + "-edit"}})).To(Succeed())
		// RBAC's own answer first (its caches follow the binding's deletion), then one refresh.
		Eventually(func() bool {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: alice, Groups: []string{"system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ws, Verb: "create", Group: "latchkey.dev", Resource: "oauthgrants"}}}
			Expect(k8s.Create(ctx, review)).To(Succeed())
			return review.Status.Allowed
		}).Should(BeFalse())
		auth := &basicAuth{app.ClientID, app.ClientSecret}
		resp := postForm(ts.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token.RefreshToken}}, auth)
		expectOAuthError(resp, 400, "invalid_grant")
		Expect(resp.JSON()["error_description"]).To(ContainSubstring("may no longer install apps"))
	})

	It("attacker: a tenant with edit in its own workspace cannot forge refresh families, repoint a grant, or touch another workspace's grants", func() {
		ctx := context.Background()
		mine := newWorkspace()
		mallory, err := env.NewTenant(ctx, k8s, scheme, "mallory", mine)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error { // the aggregated edit role covers oauthgrants
			return mallory.Client.List(ctx, &latchkeyv1.OAuthGrantList{}, client.InNamespace(mine))
		}).Should(Succeed())
		// Its own grant for the victim's app: it may install apps in its workspace...
		grant := &latchkeyv1.OAuthGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: mine, Name: latchkeyv1.GrantName(app.ClientID)},
			Spec: latchkeyv1.OAuthGrantSpec{
				Client: latchkeyv1.GrantClientReference{Namespace: publisher, Name: "crm", ClientID: app.ClientID, UID: string(app.Object.UID)},
				Scopes: []string{"leads:read"}, Audiences: []string{apiID}, GrantedBy: "mallory", GrantedAt: metav1.Now(),
			},
		}
		Expect(mallory.Client.Create(ctx, grant)).To(Succeed())
		// ...but cannot write the status that holds refresh families and redeemed codes,
		forged := grant.DeepCopy()
		forged.Status.RefreshFamilies = []latchkeyv1.RefreshFamily{{ID: strings.Repeat("a", 32), Code: strings.Repeat("b", 32),
			TokenHash: "sha256:" + strings.Repeat("c", 64), Subject: "alice", Scope: "leads:read", Audiences: []string{apiID}}}
		Expect(apierrors.IsForbidden(mallory.Client.Status().Update(ctx, forged))).To(BeTrue(), "oauthgrants/status is the token server's")
		// cannot repoint the grant at another app,
		repointed := grant.DeepCopy()
		repointed.Spec.Client.UID = string(publicApp.Object.UID)
		err = mallory.Client.Patch(ctx, repointed, client.MergeFrom(grant)) // no resourceVersion: only the schema can refuse
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "spec.client is immutable: %v", err)
		// and cannot read, revoke or create grants in a workspace it has no rights in.
		Expect(apierrors.IsForbidden(mallory.Client.List(ctx, &latchkeyv1.OAuthGrantList{}, client.InNamespace(wsA)))).To(BeTrue())
		intruder := grant.DeepCopy()
		intruder.Namespace, intruder.ResourceVersion = wsB, ""
		Expect(apierrors.IsForbidden(mallory.Client.Create(ctx, intruder))).To(BeTrue())
		Expect(apierrors.IsForbidden(mallory.Client.Delete(ctx, &latchkeyv1.OAuthGrant{ObjectMeta: metav1.ObjectMeta{Namespace: wsA, Name: latchkeyv1.GrantName(app.ClientID)}}))).To(BeTrue())
	})

	It("attacker: consent belongs to the user: a grant a tenant writes by hand, or another user's approval, never skips the page", func() {
		ctx := context.Background()
		shared := newWorkspace()
		mallory, err := env.NewTenant(ctx, k8s, scheme, "mallory-consent", shared)
		Expect(err).NotTo(HaveOccurred())
		for _, u := range []string{carol, dave} { // may install apps in this workspace only
			_, err := env.NewTenant(ctx, k8s, scheme, u, shared)
			Expect(err).NotTo(HaveOccurred())
		}
		Eventually(func() error {
			return mallory.Client.List(ctx, &latchkeyv1.OAuthGrantList{}, client.InNamespace(shared))
		}).Should(Succeed())
		cfg := oauthConfig(app)
		// signIn runs a flow for user and reports whether the consent page was shown
		// (and its body), or the page was skipped and the app got a code.
		signIn := func(b *browser, user, password, scope string) (consent bool, body string) {
			page := authorize(b, authParams(cfg.AuthCodeURL("st-"+user, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
				oauth2.SetAuthURLParam("scope", scope))), user, password)
			if page.Request.URL.Path == "/callback" {
				page.Body.Close()
				Expect((<-callbacks).Get("code")).NotTo(BeEmpty())
				return false, ""
			}
			body = readBody(page)
			Expect(csrfOf(body)).NotTo(BeEmpty(), "the consent page")
			return true, body
		}

		By("mallory, an editor of the workspace, writes a grant for the app, naming carol")
		grants := func() float64 { return gathered(ts.Registry, "latchkey_tokenserver_cached_oauthgrants") }
		before := grants()
		forged := &latchkeyv1.OAuthGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: shared, Name: latchkeyv1.GrantName(app.ClientID)},
			Spec: latchkeyv1.OAuthGrantSpec{
				Client: latchkeyv1.GrantClientReference{Namespace: publisher, Name: "crm", ClientID: app.ClientID, UID: string(app.Object.UID)},
				Scopes: []string{"leads:read", "leads:write"}, Audiences: []string{apiID, billingID}, GrantedBy: carol, GrantedAt: metav1.Now(),
			},
		}
		Expect(mallory.Client.Create(ctx, forged)).To(Succeed())
		Eventually(grants).Should(Equal(before+1), "the token server's watch delivers her grant: the page is decided with it in view")
		consent, _ := signIn(newBrowser(), carol, carolPassword, "leads:read")
		Expect(consent).To(BeTrue(), "a grant written by hand skipped carol's consent page")

		By("carol approves on the page: her consent, in the grant's status, skips it for her next time")
		b := newBrowser()
		consent, body := signIn(b, carol, carolPassword, "leads:read")
		Expect(consent).To(BeTrue())
		resp, err := b.PostForm(ts.URL+"/oauth2/consent", url.Values{"csrf": {csrfOf(body)}, "action": {"approve"}, "workspace": {shared}})
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect((<-callbacks).Get("code")).NotTo(BeEmpty())
		grant := &latchkeyv1.OAuthGrant{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(forged), grant)).To(Succeed())
		Expect(grant.Status.Consents).To(ConsistOf(SatisfyAll(
			HaveField("User", carol), HaveField("Scopes", ConsistOf("leads:read")), HaveField("Audiences", ConsistOf(apiID, billingID)))))
		Eventually(func() bool { consent, _ := signIn(newBrowser(), carol, carolPassword, "leads:read"); return consent }).
			Should(BeFalse(), "carol's own consent skips the page once the watch delivers it")

		By("dave, another member of the workspace, still sees the page: carol's consent is hers")
		consent, _ = signIn(newBrowser(), dave, davePassword, "leads:read")
		Expect(consent).To(BeTrue(), "another user's approval skipped dave's consent page")

		By("mallory widens the grant's spec: carol is asked again for what she never approved")
		widened := grant.DeepCopy()
		widened.Spec.GrantedBy = "mallory"
		Expect(mallory.Client.Patch(ctx, widened, client.MergeFrom(grant))).To(Succeed())
		consent, _ = signIn(newBrowser(), carol, carolPassword, "leads:read leads:write")
		Expect(consent).To(BeTrue(), "carol approved leads:read only")
	})

	It("ends a family when the provider no longer accepts the user's sign-in, and renews it while it does", func() {
		ctx := context.Background()
		verifier := oauth2.GenerateVerifier()
		token, err := oauthConfig(app).Exchange(ctx, approve(wsA, verifier).Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		auth := &basicAuth{app.ClientID, app.ClientSecret}
		familyID := jwtClaims(token.AccessToken)["latchkey.dev/family"]
		family := func() *latchkeyv1.RefreshFamily {
			grant := &latchkeyv1.OAuthGrant{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: wsA, Name: latchkeyv1.GrantName(app.ClientID)}, grant)).To(Succeed())
			for i := range grant.Status.RefreshFamilies {
				if f := &grant.Status.RefreshFamilies[i]; f.ID == familyID {
					return f
				}
			}
			return nil
		}
		started := family()
		Expect(started).NotTo(BeNil())
		Expect(strings.Contains(started.UpstreamSession, ".")).To(BeFalse(), "encrypted, not the provider's token")
		Expect(started.ValidatedAt).NotTo(BeNil())

		By("a refresh past the interval asks the provider, which confirms the user")
		revalidations := func() float64 {
			return gatheredWith(ts.Registry, "latchkey_tokenserver_upstream_requests_total", "call", "revalidate")
		}
		before := revalidations()
		current := token.RefreshToken
		refresh := func() response {
			resp := postForm(ts.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {current}}, auth)
			if resp.StatusCode == http.StatusOK {
				current = resp.JSON()["refresh_token"].(string)
			}
			return resp
		}
		Eventually(func() float64 {
			Expect(refresh().StatusCode).To(Equal(http.StatusOK))
			return revalidations()
		}).WithPolling(300 * time.Millisecond).Should(BeNumerically(">", before))

		By("the provider forgets every session, as it does for a user signed out or disabled: the family ends")
		Expect(provider.Restart()).To(Succeed())
		var last response
		Eventually(func() int { last = refresh(); return last.StatusCode }).WithPolling(300 * time.Millisecond).Should(Equal(http.StatusBadRequest))
		expectOAuthError(last, 400, "invalid_grant")
		Expect(last.JSON()["error_description"]).To(ContainSubstring("sign-in at the identity provider has ended"))
		expectOAuthError(refresh(), 400, "invalid_grant")
		Expect(family()).To(BeNil(), "the family is gone from the grant")
	})

	It("uninstalls at once: deleting the grant ends its tokens; the manager removes the grants of a deleted client", func() {
		ctx := context.Background()
		verifier := oauth2.GenerateVerifier()
		token, err := oauthConfig(app).Exchange(ctx, approve(wsA, verifier).Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		Expect(ts.active(rs, token.AccessToken)).To(BeTrue(), "accepted at once, without waiting for the watch")
		Expect(k8s.Delete(ctx, &latchkeyv1.OAuthGrant{ObjectMeta: metav1.ObjectMeta{Namespace: wsA, Name: latchkeyv1.GrantName(app.ClientID)}})).To(Succeed())
		within(time.Second, "the uninstalled app's token dies", func() bool { return !ts.active(rs, token.AccessToken) })

		// The public app still has its grant in wsA; deleting the app removes it.
		key := client.ObjectKey{Namespace: wsA, Name: latchkeyv1.GrantName(publicApp.ClientID)}
		Expect(k8s.Get(ctx, key, &latchkeyv1.OAuthGrant{})).To(Succeed())
		Expect(k8s.Delete(ctx, publicApp.Object)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, key, &latchkeyv1.OAuthGrant{})) }).Should(BeTrue())
		var events corev1.EventList
		Eventually(func() []corev1.Event {
			Expect(k8s.List(ctx, &events, client.InNamespace(wsA))).To(Succeed())
			return events.Items
		}).Should(ContainElement(HaveField("Reason", latchkeyv1.ReasonClientChanged)))
	})
})

// browser is an HTTP client with a cookie jar: it follows redirects and keeps
// cookies as a browser does.
type browser struct{ *http.Client }

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{&http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

func newWorkspace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ws-",
		Labels: map[string]string{latchkeyv1.WorkspaceLabel: latchkeyv1.WorkspaceLabelValue}}}
	ExpectWithOffset(1, k8s.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// newPublicClient creates a public OAuthClient and waits until it is registered.
func newPublicClient(ns, name string, redirects []string) testClient {
	obj := &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: latchkeyv1.OAuthClientSpec{
			ClientType:               latchkeyv1.ClientPublic,
			GrantTypes:               []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantRefreshToken},
			TokenEndpointAuthMethods: []latchkeyv1.TokenEndpointAuthMethod{latchkeyv1.AuthNone},
			Scopes:                   []string{"leads:read"}, Audiences: []string{"https://api.acme.test"}, RedirectURIs: redirects,
		},
	}
	ExpectWithOffset(1, k8s.Create(context.Background(), obj)).To(Succeed())
	EventuallyWithOffset(1, func() string {
		Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		for _, c := range obj.Status.Conditions {
			if c.Type == latchkeyv1.ConditionReady && c.Status == metav1.ConditionTrue {
				return c.Reason
			}
		}
		return ""
	}).Should(Equal(latchkeyv1.ReasonRegistered))
	var secret corev1.Secret
	ExpectWithOffset(1, apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: obj.SecretName()}, &secret))).To(BeTrue(), "no Secret for a public client")
	return testClient{Object: obj, ClientID: obj.Status.ClientID}
}

// startServerOn starts a token server on listener (whose address the issuer must name).
func startServerOn(listener net.Listener, mutate func(*tokenserver.Options)) *runningServer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningServer{URL: "http://" + listener.Addr().String(), Registry: prometheus.NewRegistry(), stop: cancel, done: make(chan error, 1)}
	opts := tokenserver.Options{
		Config:              tokenserver.Config{IssuerURL: s.URL + "/", SigningAlgorithm: "RS256"},
		Listener:            listener,
		SigningKeyNamespace: operatorNamespace, SigningKeySecret: "latchkey-signing-keys",
		LastUsedFlushInterval: 200 * time.Millisecond, LastUsedGranularity: time.Minute,
		Log: ctrl.Log.WithName("tokenserver-thirdparty"), Registry: s.Registry,
	}
	mutate(&opts)
	go func() { s.done <- tokenserver.Run(ctx, tokenServerConfig, opts) }()
	Eventually(func() int { return get(s.URL + "/readyz").StatusCode }).Should(Equal(200))
	return s
}

// gatheredWith is the value of a counter in reg with one label set to value (0 when absent).
func gatheredWith(reg *prometheus.Registry, name, label, value string) float64 {
	families, err := reg.Gather()
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// gathered is the value of an unlabelled gauge in reg (0 when absent).
func gathered(reg *prometheus.Registry, name string) float64 {
	families, err := reg.Gather()
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

func authParams(authURL string) url.Values {
	u, err := url.Parse(authURL)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return u.Query()
}

func readBody(resp *http.Response) string {
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return sb.String()
}

var (
	csrfInput     = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	workspaceItem = regexp.MustCompile(`<option value="([^"]+)">`)
)

func csrfOf(page string) string {
	m := csrfInput.FindStringSubmatch(page)
	ExpectWithOffset(1, m).To(HaveLen(2), "the consent page has a CSRF token: %s", page)
	return m[1]
}

func workspaceOptions(page string) []string {
	var out []string
	for _, m := range workspaceItem.FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

func jwtClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	ExpectWithOffset(1, len(parts)).To(Equal(3))
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	var claims map[string]any
	ExpectWithOffset(1, json.Unmarshal(raw, &claims)).To(Succeed())
	return claims
}

func grantVersion(ns, clientID string) string {
	g := &latchkeyv1.OAuthGrant{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: latchkeyv1.GrantName(clientID)}, g); err != nil {
		return "none"
	}
	return g.ResourceVersion
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
