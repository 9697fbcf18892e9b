//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"

	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// The third-party app flow in a real browser: headless Chromium (Debian's package,
// driven by chromedp) signs alice in at the upstream provider's own login form,
// shows her the consent page, and she installs a partner's app into her workspace.
// The app (a small server here) gets code, state and iss, exchanges the code with
// golang.org/x/oauth2 and PKCE, calls the leads API through Caddy and the
// authorizer, refreshes, and is uninstalled with kubectl.
var _ = Describe("A third-party app installed through the browser", Label("browser"), Ordered, func() {
	const (
		partnersNS = "e2e-partners"
		workspace  = edgeNS // the leads API accepts its own namespace's credentials
	)
	var (
		e        *edge
		app      client
		appAddr  string
		received chan url.Values
		browser  context.Context
	)

	BeforeAll(func() {
		chromium := chromiumPath()
		By("declaring the workspace, alice's right to install apps in it, and the partner's app")
		kubectl("apply", "--server-side", "-k", filepath.Join(root, "config", "authz", "local"))
		kubectl("apply", "--server-side", "-f", filepath.Join("testdata", "edge.yaml"))
		kubectl("label", "namespace", workspace, "latchkey.dev/workspace=true", "--overwrite")
		kubectl("create", "rolebinding", "alice-installs-apps", "-n", workspace,
			"--clusterrole=latchkey-oauthgrant-editor-role", "--user="+alice.RBACName)
		appListener, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		appAddr = appListener.Addr().String()
		received = make(chan url.Values, 4)
		appServer := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/callback" {
				http.NotFound(w, r) // the browser's /favicon.ico
				return
			}
			received <- r.URL.Query()
			_, _ = w.Write([]byte("<!doctype html><title>Installed</title><p id=done>The app is installed.</p>"))
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = appServer.Serve(appListener) }()
		DeferCleanup(appServer.Close)
		kubectl("create", "namespace", partnersNS)
		applyStdin(`apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata:
  name: crm
  namespace: ` + partnersNS + `
spec:
  displayName: Acme CRM
  grantTypes: [authorization_code, refresh_token]
  redirectURIs: ["http://` + appAddr + `/callback"]
  scopes: ["leads:read"]
  audiences: ["` + leadsIdentifier + `"]
`)
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", partnersNS, "oauthclient/crm")
		app = client{ID: secretValue(partnersNS, "crm-oauthclient", "client_id"), Secret: secretValue(partnersNS, "crm-oauthclient", "client_secret")}

		By("starting the authorizer and Caddy in front of the leads API")
		e = startEdge()

		By("starting headless Chromium (" + chromium + ")")
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
			testenv.BrowserOptions(chromium, filepath.Join(workDir, "chromium-profile"))...)
		DeferCleanup(cancelAlloc)
		var cancelBrowser context.CancelFunc
		browser, cancelBrowser = chromedp.NewContext(allocCtx)
		DeferCleanup(cancelBrowser)
		Expect(chromedp.Do(browser)).To(Succeed(), "Chromium starts")
	})

	It("signs alice in upstream, shows the scopes with their descriptions, installs the app in the workspace she picks, and the app's token works at the edge until the grant is deleted", func() {
		ctx := context.Background()
		cfg := &oauth2.Config{ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: "http://" + appAddr + "/callback",
			Scopes: []string{"leads:read"}, Endpoint: oauth2.Endpoint{AuthURL: issuer + "/oauth2/authorize", TokenURL: issuer + "/oauth2/token"}}
		verifier := oauth2.GenerateVerifier()
		authURL := cfg.AuthCodeURL("state-e2e", oauth2.S256ChallengeOption(verifier))

		By("signing in at the provider's own login form")
		step, cancel := context.WithTimeout(browser, 60*time.Second)
		defer cancel()
		Expect(chromedp.Do(step, testenv.SignInSteps(authURL, alice.Username, alice.Password))).
			To(Succeed(), func() string { return pageState(browser) })

		By("reading the consent page")
		text := func(sel string) string {
			v, err := chromedp.Run(step, chromedp.Text(chromedp.CSS(sel)))
			Expect(err).NotTo(HaveOccurred(), sel)
			return v
		}
		title, scopes, signedIn := text(`#title`), text(`.scopes`), text(`main`)
		workspaces, err := chromedp.Run(step, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#workspace option')].map(o => o.value)`))
		Expect(err).NotTo(HaveOccurred())
		Expect(title).To(ContainSubstring("Acme CRM"))
		Expect(scopes).To(ContainSubstring("leads:read"))
		Expect(scopes).To(ContainSubstring("List and get leads"), "the description from the API's catalogue")
		Expect(signedIn).To(ContainSubstring(alice.RBACName))
		Expect(signedIn).To(ContainSubstring(partnersNS), "the publisher")
		Expect(workspaces).To(Equal([]string{workspace}), "only the workspaces RBAC lets her install apps into")

		By("approving")
		Expect(chromedp.Do(step, testenv.ApproveSteps(workspace))).To(Succeed(), func() string { return pageState(browser) })
		var cb url.Values
		Eventually(received).Should(Receive(&cb))
		Expect(cb.Get("state")).To(Equal("state-e2e"))
		Expect(cb.Get("iss")).To(Equal(issuer), "RFC 9207: the issuer, exactly as in the metadata")
		Expect(kubectl("get", "oauthgrants", "-n", workspace)).To(ContainSubstring("app-" + app.ID))

		By("exchanging the code with PKCE and calling the API through Caddy")
		token, err := cfg.Exchange(ctx, cb.Get("code"), oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		r := e.do(http.MethodGet, "/v1/leads", token.AccessToken, nil)
		Expect(r.Status).To(Equal(http.StatusOK), r.String())
		Expect(r.Upstream.Header.Get("X-Latchkey-Subject")).To(Equal(alice.RBACName))
		Expect(r.Upstream.Header.Get("X-Latchkey-Namespace")).To(Equal(workspace))
		Expect(r.Upstream.Header.Get("X-Latchkey-Credential-Kind")).To(Equal("app_access_token"), "an installed app, not one of the workspace's own clients")
		Expect(r.Upstream.Header.Get("X-Latchkey-Name")).To(Equal("app-" + app.ID))
		Expect(e.do(http.MethodPost, "/v1/leads", token.AccessToken, nil).Status).To(Equal(http.StatusForbidden), "leads:write was not granted")

		By("the API's owner limits the app in this workspace (an override for its OAuthGrant): 429 past it")
		kubectl("patch", "api", "leads", "-n", edgeNS, "--type", "merge", "-p", `{"spec":{"rateLimit":{"requests":1000,"per":"1h","overrides":[
			{"kind":"OAuthGrant","namespace":"`+workspace+`","name":"app-`+app.ID+`","requests":2,"per":"1h"}]}}}`)
		var limited reply
		Eventually(func() int { limited = e.do(http.MethodGet, "/v1/leads", token.AccessToken, nil); return limited.Status }).
			Should(Equal(http.StatusTooManyRequests), "the third request of two, or later")
		Expect(limited.RateLimitPolicy).To(Equal(`"api";q=2;w=3600`), "the grant's override, not the API's default")
		kubectl("patch", "api", "leads", "-n", edgeNS, "--type", "merge", "-p", `{"spec":{"rateLimit":null}}`)
		Eventually(func() int { return e.do(http.MethodGet, "/v1/leads", token.AccessToken, nil).Status }).Should(Equal(http.StatusOK))

		By("refreshing")
		expired := *token
		expired.Expiry = time.Now().Add(-time.Minute)
		refreshed, err := cfg.TokenSource(ctx, &expired).Token()
		Expect(err).NotTo(HaveOccurred())
		Expect(refreshed.AccessToken != token.AccessToken).To(BeTrue(), "a new access token")
		Expect(refreshed.RefreshToken != token.RefreshToken).To(BeTrue(), "a new refresh token")
		Expect(e.do(http.MethodGet, "/v1/leads", refreshed.AccessToken, nil).Status).To(Equal(http.StatusOK))

		By("uninstalling with kubectl: the next call is refused within a second")
		kubectl("delete", "oauthgrant", "app-"+app.ID, "-n", workspace)
		start := time.Now()
		Eventually(func() int { return e.do(http.MethodGet, "/v1/leads", refreshed.AccessToken, nil).Status }).
			WithTimeout(time.Second).WithPolling(10 * time.Millisecond).Should(Equal(http.StatusUnauthorized))
		GinkgoWriter.Printf("uninstall reached the edge in %s\n", time.Since(start))
		_, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshed.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
		Expect(err).To(HaveOccurred(), "its refresh token is dead too")
	})

	It("works with Node's openid-client 6 as the app: discovery, PKCE, state and iss checks, code exchange, refresh", func() {
		node, err := exec.LookPath("node")
		Expect(err).NotTo(HaveOccurred(), "Node.js runs the openid-client spec (`make openid-client` installs its package)")
		dir := filepath.Join("testdata", "openid-client")
		Expect(filepath.Join(dir, "node_modules", "openid-client")).To(BeADirectory(), "run `make openid-client`")
		cmd := exec.Command(node, "flow.mjs", issuer, app.ID, app.Secret, "http://"+appAddr+"/callback", "leads:read")
		cmd.Dir = dir
		stdin, err := cmd.StdinPipe()
		Expect(err).NotTo(HaveOccurred())
		stdout, err := cmd.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		var stderr strings.Builder
		cmd.Stderr = &stderr
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		lines := bufio.NewScanner(stdout)
		lines.Buffer(make([]byte, 64<<10), 64<<10)
		next := func(v any) {
			if !lines.Scan() {
				_ = cmd.Wait()
				Fail("openid-client printed nothing more; its stderr:\n" + stderr.String())
			}
			ExpectWithOffset(1, json.Unmarshal(lines.Bytes(), v)).To(Succeed())
		}
		var start struct{ Authorize string }
		next(&start)
		Expect(start.Authorize).To(HavePrefix(issuer + "/oauth2/authorize?"))

		By("the browser signs alice in and approves, as before")
		installInBrowser(browser, start.Authorize, workspace)
		var cb url.Values
		Eventually(received).Should(Receive(&cb))
		_, err = io.WriteString(stdin, "http://"+appAddr+"/callback?"+cb.Encode()+"\n")
		Expect(err).NotTo(HaveOccurred())

		var got struct {
			AccessToken           string `json:"access_token"`
			RefreshToken          string `json:"refresh_token"`
			Scope                 string `json:"scope"`
			RefreshedAccessToken  string `json:"refreshed_access_token"`
			RefreshedRefreshToken string `json:"refreshed_refresh_token"`
		}
		next(&got)
		Expect(got.Scope).To(Equal("leads:read"))
		Expect(strings.HasPrefix(got.RefreshToken, "lkrt.")).To(BeTrue(), "a refresh token starts lkrt.")
		Expect(got.RefreshedRefreshToken != got.RefreshToken).To(BeTrue(), "the refresh token rotated")
		Expect(e.do(http.MethodGet, "/v1/leads", got.AccessToken, nil).Status).To(Equal(http.StatusOK))
		Expect(e.do(http.MethodGet, "/v1/leads", got.RefreshedAccessToken, nil).Status).To(Equal(http.StatusOK))
		err = cmd.Wait()
		Expect(err).NotTo(HaveOccurred(), "stderr: %s", stderr.String())
	})
})

// installInBrowser opens authorizeURL, signs alice in at the provider's login form
// and approves the app for workspace on the consent page, as a person would.
func installInBrowser(browser context.Context, authorizeURL, workspace string) {
	step, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	ExpectWithOffset(1, chromedp.Do(step, testenv.SignInSteps(authorizeURL, alice.Username, alice.Password), testenv.ApproveSteps(workspace))).
		To(Succeed(), func() string { return pageState(browser) })
}

// chromiumPath finds the browser the way hack/chromium.sh does; a missing browser
// fails the spec with what to do, never skips it.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	Expect(err).NotTo(HaveOccurred(), "Chromium is required for the browser specs: `sudo apt-get install chromium`, or `CI=true make test` (hack/chromium.sh)")
	return p
}

// applyStdin applies a manifest given as text.
func applyStdin(manifest string) {
	cmd := exec.Command(kubectlBin, "--kubeconfig", filepath.Join(workDir, "admin.kubeconfig"), "apply", "--server-side", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "%s", out)
}

// pageState is where the browser is and what it shows, for a failure message.
func pageState(browser context.Context) string {
	ctx, cancel := context.WithTimeout(browser, 5*time.Second)
	defer cancel()
	location, _ := chromedp.Run(ctx, chromedp.Location())
	html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if len(html) > 4000 {
		html = html[:4000]
	}
	return "the browser is at " + location + ":\n" + html
}
