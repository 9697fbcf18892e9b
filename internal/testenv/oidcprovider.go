package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/html"
)

// OIDCProviderVersion is the version of github.com/zitadel/oidc/v3 whose example
// OpenID Provider hack/oidc-provider.sh builds by default; $OIDC_PROVIDER_VERSION
// overrides it, as it does for the script.
const OIDCProviderVersion = "v3.51.17"

// OIDCProvider is a running upstream OpenID Provider: the example server of
// github.com/zitadel/oidc/v3, a real provider (discovery, JWKS, authorization-code
// flow, a login form) that keeps everything in memory. Its clients are fixed
// upstream: ClientID/ClientSecret ("web"/"secret", client_secret_basic) is the
// confidential web client, allowed the redirect URIs given to StartOIDCProvider.
type OIDCProvider struct {
	// Issuer is the issuer exactly as the provider's discovery document states it,
	// "http://localhost:PORT/" (with the trailing slash).
	Issuer       string
	ClientID     string
	ClientSecret string
	Users        []OIDCUser
	proc         *Process
	dir          string
	// start starts the provider's process again with the same settings (Restart).
	start func() (*Process, error)
	// logPath is its output's file.
	logPath string
}

// OIDCUser is a person who can sign in at the provider with Username and
// Password. ID becomes the ID token's "sub". Email is reported as verified (with
// the "email" scope), and Username as "preferred_username" (with "profile").
type OIDCUser struct {
	ID, Username, Password, Email string
}

// StartOIDCProvider starts the provider hack/oidc-provider.sh built (`make
// oidc-provider`) on a free port, with its output appended to logPath, allowing
// redirectURIs to its clients and with exactly users as its accounts. It returns
// once the provider serves its discovery document.
func StartOIDCProvider(logPath string, redirectURIs []string, users []OIDCUser) (*OIDCProvider, error) {
	bin, err := BuiltTool("oidc-provider", "OIDC_PROVIDER_VERSION", OIDCProviderVersion)
	if err != nil {
		return nil, err
	}
	if len(redirectURIs) == 0 {
		// Upstream falls back to http://localhost:9999/auth/callback, which no test serves.
		return nil, errors.New("StartOIDCProvider needs at least one redirect URI")
	}
	for _, u := range redirectURIs {
		if strings.Contains(u, ",") {
			return nil, fmt.Errorf("redirect URI %q contains a comma: REDIRECT_URI is a comma-separated list", u)
		}
	}

	dir, err := os.MkdirTemp("", "latchkey-oidc-provider-")
	if err != nil {
		return nil, err
	}
	usersFile := filepath.Join(dir, "users.json")
	if err := writeOIDCUsers(usersFile, users); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)

	// The provider is configured only by its environment, and StartProcess passes
	// the test's own; env(1) adds the settings (overriding any the test inherited)
	// and then execs the provider in its place, so signals still reach it.
	start := func() (*Process, error) {
		return StartProcess("oidc-provider", logPath, "", "env",
			"PORT="+port,
			"REDIRECT_URI="+strings.Join(redirectURIs, ","),
			"USERS_FILE="+usersFile,
			bin)
	}
	proc, err := start()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting the OpenID Provider %s: %w", bin, err)
	}
	p := &OIDCProvider{ClientID: "web", ClientSecret: "secret", Users: users, proc: proc, dir: dir, start: start, logPath: logPath}

	// The provider builds its issuer from the port as "http://localhost:PORT/";
	// the discovery document is asked for it, rather than assumed.
	want := "http://localhost:" + port + "/"
	if p.Issuer, err = waitDiscovery(proc, want, logPath, 30*time.Second); err != nil {
		_ = p.Stop()
		return nil, err
	}
	if p.Issuer != want {
		_ = p.Stop()
		return nil, fmt.Errorf("the OpenID Provider reports the issuer %q, expected %q (did upstream change how it builds it?)", p.Issuer, want)
	}
	return p, nil
}

// writeOIDCUsers writes users as the provider's USERS_FILE: a JSON object of
// users keyed by ID, in the fields of upstream's storage.User.
func writeOIDCUsers(path string, users []OIDCUser) error {
	type user struct {
		ID, Username, Password, FirstName, LastName, Email string
		EmailVerified                                      bool
		PreferredLanguage                                  string
		IsAdmin                                            bool
	}
	m := make(map[string]user, len(users))
	for _, u := range users {
		if u.ID == "" || u.Username == "" {
			return fmt.Errorf("OIDC user %+v needs an ID and a Username", u)
		}
		if _, dup := m[u.ID]; dup {
			return fmt.Errorf("two OIDC users have the ID %q", u.ID)
		}
		m[u.ID] = user{
			ID: u.ID, Username: u.Username, Password: u.Password, Email: u.Email,
			FirstName: "Test", LastName: u.Username,
			EmailVerified: true,
			// A language.Tag upstream: the empty string does not parse.
			PreferredLanguage: "en",
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// waitDiscovery polls the discovery document under want (the expected issuer)
// until it answers 200 and returns the issuer it states. It gives up when the
// provider exits (pointing at its log) or after timeout.
func waitDiscovery(proc *Process, want, logPath string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		issuer, err := fetchIssuer(c, want+".well-known/openid-configuration")
		if err == nil {
			return issuer, nil
		}
		last = err
		if !proc.Running() {
			return "", fmt.Errorf("the OpenID Provider exited before serving (%v); see %s", proc.Err(), logPath)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the OpenID Provider did not serve its discovery document within %s (last: %v); see %s", timeout, last, logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fetchIssuer(c *http.Client, discovery string) (string, error) {
	resp, err := c.Get(discovery)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", discovery, resp.Status)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", fmt.Errorf("GET %s: %w", discovery, err)
	}
	if doc.Issuer == "" {
		return "", fmt.Errorf("GET %s: no issuer in the discovery document", discovery)
	}
	return doc.Issuer, nil
}

// Restart stops the provider and starts it again on the same address with the
// same users: everything it kept in memory is gone — its sessions, and so every
// refresh token it issued (as a provider does for a user who was signed out or
// disabled). It returns once the provider serves its discovery document again.
func (p *OIDCProvider) Restart() error {
	if err := p.stopProcess(); err != nil {
		return err
	}
	proc, err := p.start()
	if err != nil {
		return err
	}
	p.proc = proc
	_, err = waitDiscovery(proc, p.Issuer, p.logPath, 30*time.Second)
	return err
}

func (p *OIDCProvider) stopProcess() error {
	err := p.proc.Stop(5 * time.Second)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			err = nil
		}
	}
	return err
}

// Stop stops the provider and removes its users file. Upstream's example does
// not handle SIGTERM, so ending by that signal is how it stops cleanly.
func (p *OIDCProvider) Stop() error {
	var errs []error
	if p.proc != nil {
		errs = append(errs, p.stopProcess())
	}
	if p.dir != "" {
		errs = append(errs, os.RemoveAll(p.dir))
	}
	return errors.Join(errs...)
}

// SubmitOIDCLogin signs in at the provider's login page the way a person does:
// resp is that page (what c ends on after following the redirects from the
// provider's authorization endpoint); its form is filled in with username and
// password, keeping its hidden fields (the "id" of the authorization request), and
// submitted to its action with c. It returns the response c ends on after the
// provider's redirects, normally the client's redirect URI with the code. It
// consumes and closes resp.Body. A rejected sign-in (the provider renders the
// login page again with its message) is an error.
func SubmitOIDCLogin(c *http.Client, resp *http.Response, username, password string) (*http.Response, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return nil, fmt.Errorf("expected the provider's login page, got %s from %s: %s", resp.Status, resp.Request.URL, body)
	}
	doc, err := html.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the login page %s: %w", resp.Request.URL, err)
	}
	form := findElement(doc, "form")
	if form == nil {
		return nil, fmt.Errorf("no form on the page %s: not the provider's login page", resp.Request.URL)
	}
	if m := attr(form, "method"); !strings.EqualFold(m, http.MethodPost) {
		return nil, fmt.Errorf("the login form of %s has method %q, expected POST", resp.Request.URL, m)
	}
	action, err := resp.Request.URL.Parse(attr(form, "action"))
	if err != nil {
		return nil, fmt.Errorf("the login form's action %q: %w", attr(form, "action"), err)
	}
	fields := url.Values{}
	var inputs []string
	forEachElement(form, "input", func(n *html.Node) {
		name := attr(n, "name")
		inputs = append(inputs, name)
		if name != "" {
			fields.Set(name, attr(n, "value"))
		}
	})
	for _, name := range []string{"id", "username", "password"} {
		if _, ok := fields[name]; !ok {
			return nil, fmt.Errorf("the login form of %s has no input %q (it has %q)", resp.Request.URL, name, inputs)
		}
	}
	fields.Set("username", username)
	fields.Set("password", password)

	out, err := c.PostForm(action.String(), fields)
	if err != nil {
		return nil, fmt.Errorf("submitting the login form to %s: %w", action, err)
	}
	// Success redirects away from the form; a rejection renders it again, in place.
	if out.StatusCode == http.StatusOK && sameEndpoint(out.Request.URL, action) {
		defer out.Body.Close()
		again, _ := html.Parse(out.Body)
		msg := "no message"
		if p := findElement(again, "p"); p != nil {
			msg = strings.TrimSpace(textOf(p))
		}
		return nil, fmt.Errorf("the provider rejected the sign-in of %q: %s", username, msg)
	}
	return out, nil
}

func sameEndpoint(a, b *url.URL) bool {
	return a.Scheme == b.Scheme && a.Host == b.Host && a.Path == b.Path
}

func findElement(n *html.Node, tag string) *html.Node {
	var found *html.Node
	forEachElement(n, tag, func(m *html.Node) {
		if found == nil {
			found = m
		}
	})
	return found
}

// forEachElement calls f on every element named tag under n, in document order.
func forEachElement(n *html.Node, tag string, f func(*html.Node)) {
	if n == nil {
		return
	}
	if n.Type == html.ElementNode && n.Data == tag {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		forEachElement(c, tag, f)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}
