package thirdparty

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/seal"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

//go:embed web
var webFiles embed.FS

var pages = template.Must(template.ParseFS(webFiles, "web/*.html"))

// loginCookie carries a sign-in in progress, sealed (package seal): nothing is
// written anywhere to sign a user in, and any replica continues what another began.
// Where the issuer is HTTPS it is hostCookie instead: the __Host- prefix makes the
// browser refuse it unless it is Secure, for this host alone and path /, so that no
// subdomain can plant or shadow it.
const (
	loginCookie = "latchkey_login"
	hostCookie  = "__Host-latchkey_login"
)

// LegacyAuthorizePath is the authorize URL of the partner documentation.
const LegacyAuthorizePath = "/oauth/authorize"

// pendingRequest is a validated authorization request (RFC 6749 §4.1.1).
type pendingRequest struct {
	ClientID     string   `json:"cid"`
	ClientUID    string   `json:"cuid"`
	RedirectURI  string   `json:"ru"`
	RedirectSent bool     `json:"rs,omitempty"`
	State        string   `json:"st,omitempty"`
	Scope        []string `json:"sc"`
	Audiences    []string `json:"aud"`
	Challenge    string   `json:"cc,omitempty"`
}

// login is the cookie's content: first while the user signs in upstream (State,
// Nonce, Verifier), then while they decide (User, Workspaces, CSRF).
type login struct {
	Request    pendingRequest `json:"r"`
	State      string         `json:"s,omitempty"`
	Nonce      string         `json:"n,omitempty"`
	Verifier   string         `json:"v,omitempty"`
	User       *user          `json:"u,omitempty"`
	Workspaces []string       `json:"w,omitempty"`
	CSRF       string         `json:"c,omitempty"`
	// UpstreamRefresh is the provider's refresh token of the sign-in, if it gave
	// one: it goes into the code, then into the family, sealed.
	UpstreamRefresh string `json:"ur,omitempty"`
}

// Limits of an authorization request.
const (
	maxAuthorizeQuery = 8 << 10
	maxStateLength    = 1024
)

// pageError is shown to the user and never redirected: the redirect URI cannot be
// trusted (RFC 6749 §4.1.2.1), or there is no app to go back to.
type pageError struct {
	status         int
	title, message string
}

// redirectError goes back to the app's redirect URI (RFC 6749 §4.1.2.1).
type redirectError struct {
	code, description string
}

// HandleAuthorize validates the request and sends the browser to sign in upstream.
func (s *Server) HandleAuthorize(w http.ResponseWriter, r *http.Request) {
	req, perr, rerr := s.parseAuthorizeRequest(r)
	if perr != nil {
		s.showError(w, *perr)
		return
	}
	// No one has signed in yet: an error is shown here, never redirected, so that
	// the issuer cannot be made to bounce a browser to any tenant's registered URI
	// (RFC 9700 §4.11.2). Errors after sign-in go back to the app (RFC 6749 §4.1.2.1).
	if rerr != nil {
		s.showError(w, pageError{http.StatusBadRequest, "The app's request is invalid",
			"The app asked for something this server does not allow (" + rerr.code + ": " + rerr.description + "). Nothing was sent back to it; tell the app's publisher."})
		return
	}
	now := s.Clock.Now()
	l := login{Request: req, State: randomString(), Nonce: randomString(), Verifier: randomString() + randomString()}
	target, err := s.upstream.authCodeURL(s.callbackURL(), l.State, l.Nonce, l.Verifier)
	if err != nil {
		s.showError(w, pageError{http.StatusServiceUnavailable, "Sign-in is unavailable", "The sign-in provider cannot be reached right now. Try again in a minute."})
		return
	}
	if !s.setLoginCookie(w, l, now) {
		s.showError(w, pageError{http.StatusServiceUnavailable, "Sign-in is unavailable", "The server's keys are not loaded yet. Try again in a minute."})
		return
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// parseAuthorizeRequest applies RFC 6749 §4.1.1, RFC 7636 and RFC 8707. Until the
// client and its redirect URI are known good, problems are pageErrors; after, they
// are redirectErrors.
func (s *Server) parseAuthorizeRequest(r *http.Request) (pendingRequest, *pageError, *redirectError) {
	var req pendingRequest
	if len(r.URL.RawQuery) > maxAuthorizeQuery {
		return req, &pageError{http.StatusRequestURITooLong, "The request is too large", "The authorization request is longer than this server accepts."}, nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return req, &pageError{http.StatusBadRequest, "The request is malformed", "The authorization request's parameters could not be read."}, nil
	}
	if len(q["client_id"]) != 1 || q.Get("client_id") == "" {
		return req, &pageError{http.StatusBadRequest, "Unknown app", "The request must name the app exactly once (client_id)."}, nil
	}
	client, ok := s.Index.LookupClient(q.Get("client_id"))
	if !ok || !client.Active(s.Clock.Now()) || !client.AuthorizationCode {
		return req, &pageError{http.StatusBadRequest, "Unknown app", "No app that may ask for your authorization has this client_id."}, nil
	}
	req.ClientID, req.ClientUID = client.ClientID, string(client.Ref.UID)
	switch sent := q["redirect_uri"]; {
	case len(sent) > 1:
		return req, &pageError{http.StatusBadRequest, "Invalid redirect", "redirect_uri is repeated."}, nil
	case len(sent) == 1:
		if !redirectRegistered(client.RedirectURIs, sent[0]) {
			return req, &pageError{http.StatusBadRequest, "Invalid redirect", "The app's redirect_uri is not one it registered. Nothing was sent back to it."}, nil
		}
		req.RedirectURI, req.RedirectSent = sent[0], true
	case len(client.RedirectURIs) == 1:
		req.RedirectURI = client.RedirectURIs[0]
	default:
		return req, &pageError{http.StatusBadRequest, "Invalid redirect", "The app registered several redirect URIs, so the request must name one (redirect_uri)."}, nil
	}
	// From here on, errors go back to the app, with its state if there is one.
	if state := q["state"]; len(state) == 1 && len(state[0]) <= maxStateLength {
		req.State = state[0]
	} else if len(state) > 0 {
		return req, nil, &redirectError{"invalid_request", "state must be sent once, at most 1024 characters"}
	}
	for name, values := range q {
		if len(values) > 1 && name != "resource" {
			return req, nil, &redirectError{"invalid_request", "a parameter is repeated"}
		}
	}
	switch rt := q.Get("response_type"); rt {
	case "code":
	case "":
		// The partner documentation's URL (/oauth/authorize) has no response_type:
		// there, as at GitHub's authorize endpoint, code is the only answer.
		if r.URL.Path != LegacyAuthorizePath {
			return req, nil, &redirectError{"invalid_request", "response_type is required"}
		}
	default:
		return req, nil, &redirectError{"unsupported_response_type", "only response_type=code is supported"}
	}
	if scope := q.Get("scope"); scope == "" {
		req.Scope = client.Scopes
	} else if parts, ok := oauth.ParseScope(scope); !ok {
		return req, nil, &redirectError{"invalid_scope", "scope must be scope tokens separated by spaces"}
	} else if !oauth.Subset(parts, client.Scopes) {
		return req, nil, &redirectError{"invalid_scope", "the app may not ask for " + strings.Join(parts, " ")}
	} else {
		req.Scope = parts
	}
	if len(req.Scope) == 0 {
		return req, nil, &redirectError{"invalid_scope", "the app has no scopes to ask for"}
	}
	req.Audiences = client.Audiences
	if resources := q["resource"]; len(resources) > 0 {
		if !oauth.Subset(resources, client.Audiences) {
			return req, nil, &redirectError{"invalid_target", "the app may not ask for that resource"}
		}
		req.Audiences = oauth.Unique(resources)
	}
	challenge := q.Get("code_challenge")
	if problem := checkChallenge(challenge, q.Get("code_challenge_method"), client.PKCERequired); problem != "" {
		return req, nil, &redirectError{"invalid_request", problem}
	}
	req.Challenge = challenge
	return req, nil, nil
}

// redirectRegistered compares a redirect URI exactly with the registered ones
// (RFC 9700 §2.1), character for character, except that the port of a loopback IP
// literal may vary (RFC 8252 §7.3): native apps listen on whatever port is free.
func redirectRegistered(registered []string, sent string) bool {
	if slices.Contains(registered, sent) {
		return true
	}
	sentRest, ok := withoutLoopbackPort(sent)
	if !ok {
		return false
	}
	for _, reg := range registered {
		if regRest, ok := withoutLoopbackPort(reg); ok && regRest == sentRest {
			return true
		}
	}
	return false
}

// loopbackRedirect is an http redirect URI on a loopback IP literal, exactly as
// registered (lower-case scheme, no user information).
var loopbackRedirect = regexp.MustCompile(`^http://(127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?([/?][^#]*)?$`)

// withoutLoopbackPort returns a loopback redirect URI without its port.
func withoutLoopbackPort(uri string) (string, bool) {
	m := loopbackRedirect.FindStringSubmatch(uri)
	if m == nil {
		return "", false
	}
	return "http://" + m[1] + m[3], true
}

// HandleCallback is where the upstream provider sends the browser back.
//
// A sign-in costs an upstream call and RBAC look-ups, so it is bounded three
// ways: a login's state is spent here once (a failed exchange ends it too), so a
// cookie cannot be replayed to make this server call the provider again and
// again; each source address has a budget of sign-ins; and the calls run in the
// I/O seats, never in the ones tokens are signed in.
func (s *Server) HandleCallback(w http.ResponseWriter, r *http.Request) {
	now := s.Clock.Now()
	l, ok := s.readLoginCookie(r, now)
	q := r.URL.Query()
	if !ok || l.User != nil || l.State == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(l.State)) != 1 ||
		s.spentLogins.spend(l.State, now) {
		s.showError(w, pageError{http.StatusBadRequest, "Sign-in expired", "This sign-in is not the one in progress in this browser, was already used, or took too long. Start again from the app."})
		return
	}
	s.clearLoginCookie(w) // spent: the consent page sets a new one
	if q.Get("error") != "" {
		// The user did not sign in: still no redirect (see handleAuthorize).
		s.showError(w, pageError{http.StatusUnauthorized, "Not signed in", "The sign-in provider did not sign you in. Nothing was sent to the app; start again from the app."})
		return
	}
	if ok, _ := s.signIns.Allow(s.SourceAddr(r), now); !ok {
		s.showError(w, pageError{http.StatusTooManyRequests, "Too many sign-ins", "Too many sign-ins came from your network just now. Wait a minute and start again from the app."})
		return
	}
	var (
		u        user
		upstream string
		allowed  []string
		grant    *latchkeyv1.OAuthGrant
	)
	client, clientOK := s.currentClient(l.Request)
	err := s.WithIO(r, func(ctx context.Context) error {
		var err error
		if u, upstream, err = s.upstream.exchange(ctx, s.callbackURL(), q.Get("code"), l.Verifier, l.Nonce); err != nil {
			return signInError{err}
		}
		if allowed, err = s.workspaces.allowed(ctx, u); err != nil || !clientOK {
			return err
		}
		// The page is skipped only for a user who already approved this app, on
		// this page, for at least what it asks now, and only when that leaves no
		// choice: exactly one of the user's workspaces has such a consent. Consent
		// is recorded in the grant's status, which only the token server writes: a
		// grant a tenant creates by hand skips the page for no one. The index
		// proposes, the API server confirms (a grant just deleted may still be in
		// the index). Never for a public client: anyone can use its client_id, and
		// a loopback redirect goes to whatever listens on the port (RFC 8252 §8.6).
		var covered []string
		for _, ws := range allowed {
			if client.Public {
				break
			}
			if g, ok := s.Index.GrantIn(ws, client.ClientID); ok && g.ConsentedBy(u.Name, client.Ref.UID, l.Request.Scope, l.Request.Audiences) {
				covered = append(covered, ws)
			}
		}
		if len(covered) == 1 {
			if g, err := s.grants.get(ctx, covered[0], client.ClientID); err == nil &&
				index.GrantConsented(g, u.Name, client.Ref.UID, l.Request.Scope, l.Request.Audiences) {
				grant = g
			}
		}
		return nil
	})
	var failed signInError
	switch {
	case errors.As(err, &failed):
		s.Log.Info("upstream sign-in failed", "reason", failed.Error())
		s.showError(w, pageError{http.StatusBadGateway, "Sign-in failed", "The sign-in provider's answer could not be verified. Start again from the app."})
		return
	case err != nil:
		s.Log.Error(err, "reading the user's workspaces")
		s.showError(w, pageError{http.StatusServiceUnavailable, "Try again", "Your workspaces could not be read right now. Start again from the app."})
		return
	case !clientOK:
		s.showError(w, pageError{http.StatusBadRequest, "Unknown app", "The app is no longer registered."})
		return
	case grant != nil:
		s.finish(w, r, l.Request, grant.Namespace, string(grant.UID), u, upstream, http.StatusFound)
		return
	}
	l.State, l.Nonce, l.Verifier = "", "", ""
	l.User, l.Workspaces, l.CSRF, l.UpstreamRefresh = &u, allowed, randomString(), upstream
	if !s.setLoginCookie(w, l, now) {
		s.showError(w, pageError{http.StatusServiceUnavailable, "Try again", "The server's keys are not loaded yet."})
		return
	}
	s.showConsent(w, client, l)
}

// HandleConsent takes the user's decision (POST from the consent page).
func (s *Server) HandleConsent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if !oauth.FormContentType(r.Header.Get("Content-Type")) || r.ParseForm() != nil {
		s.showError(w, pageError{http.StatusBadRequest, "The form is malformed", "Start again from the app."})
		return
	}
	now := s.Clock.Now()
	l, ok := s.readLoginCookie(r, now)
	csrf := r.PostForm.Get("csrf")
	if !ok || l.User == nil || len(r.PostForm["csrf"]) != 1 || subtle.ConstantTimeCompare([]byte(csrf), []byte(l.CSRF)) != 1 ||
		s.spentLogins.spend(l.CSRF, now) {
		s.showError(w, pageError{http.StatusForbidden, "This form has expired", "The decision did not come from the page this browser was shown, was already sent, or took too long. Start again from the app."})
		return
	}
	s.clearLoginCookie(w)
	if len(r.PostForm["action"]) != 1 || len(r.PostForm["workspace"]) > 1 {
		s.showError(w, pageError{http.StatusBadRequest, "The form is malformed", "Start again from the app."})
		return
	}
	if r.PostForm.Get("action") != "approve" {
		s.redirectToApp(w, r, l.Request, url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}}, http.StatusSeeOther)
		return
	}
	workspace := r.PostForm.Get("workspace")
	client, ok := s.currentClient(l.Request)
	if !ok {
		s.showError(w, pageError{http.StatusBadRequest, "Unknown app", "The app is no longer registered."})
		return
	}
	// Offered on the page is not enough: RBAC may have changed since it was shown.
	if !slices.Contains(l.Workspaces, workspace) {
		s.showError(w, pageError{http.StatusForbidden, "Not allowed", "You may not install apps in that workspace."})
		return
	}
	var grant *latchkeyv1.OAuthGrant
	err := s.WithIO(r, func(ctx context.Context) error {
		if allowed, err := s.stillMayInstall(ctx, *l.User, workspace); err != nil || !allowed {
			return errNotAllowed
		}
		var err error
		if grant, err = s.grants.approve(ctx, workspace, client, l.Request.Scope, l.Request.Audiences, *l.User, now); err != nil {
			return err
		}
		// Without the record the user only sees the page again next time.
		if err := s.grants.recordConsent(ctx, grant, *l.User, l.Request.Scope, l.Request.Audiences, now); err != nil {
			s.Log.Error(err, "recording a consent", "workspace", workspace, "client", client.Ref.String())
		}
		return nil
	})
	switch {
	case errors.Is(err, errNotAllowed):
		s.showError(w, pageError{http.StatusForbidden, "Not allowed", "You may not install apps in that workspace."})
		return
	case err != nil:
		s.Log.Error(err, "recording a grant", "workspace", workspace, "client", client.Ref.String())
		s.showError(w, pageError{http.StatusServiceUnavailable, "Try again", "The approval could not be recorded right now."})
		return
	}
	s.finish(w, r, l.Request, workspace, string(grant.UID), *l.User, l.UpstreamRefresh, http.StatusSeeOther)
}

// errNotAllowed: RBAC does not let the user install apps in that workspace (or
// could not be asked).
var errNotAllowed = errors.New("not allowed to install apps there")

// signInError is an upstream sign-in that failed: the provider's answer, not
// this server.
type signInError struct{ error }

// finish issues the code and sends the browser back to the app.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, req pendingRequest, workspace, grantUID string, u user, upstreamRefresh string, status int) {
	now := s.Clock.Now()
	expires := now.Add(codeLifetime)
	code, err := s.Sealer().Seal(seal.PurposeCode, authCode{
		Request: req, ID: randomString(), Workspace: workspace, GrantUID: grantUID, User: u, Expires: expires.Unix(),
		UpstreamRefresh: upstreamRefresh,
	}, now, expires)
	if err != nil {
		s.redirectToApp(w, r, req, url.Values{"error": {"temporarily_unavailable"}}, status)
		return
	}
	s.redirectToApp(w, r, req, url.Values{"code": {code}}, status)
}

// currentClient is the client of a pending request if it is still the same object
// and may still use the flow.
func (s *Server) currentClient(req pendingRequest) (*index.Client, bool) {
	c, ok := s.Index.LookupClient(req.ClientID)
	if !ok || string(c.Ref.UID) != req.ClientUID || !c.Active(s.Clock.Now()) || !c.AuthorizationCode {
		return nil, false
	}
	return c, true
}

// redirectToApp sends the browser to the request's redirect URI with params, the
// state, and iss (RFC 9207), keeping the URI's own query.
func (s *Server) redirectToApp(w http.ResponseWriter, r *http.Request, req pendingRequest, params url.Values, status int) {
	target, err := url.Parse(req.RedirectURI)
	if err != nil {
		s.showError(w, pageError{http.StatusBadRequest, "Invalid redirect", "The app's redirect URI is malformed."})
		return
	}
	q := target.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", s.IssuerURL)
	target.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target.String(), status)
}

func (s *Server) callbackURL() string {
	return strings.TrimSuffix(s.IssuerURL, "/") + "/oauth2/callback"
}

// loginCookieName and loginCookiePath are the login cookie's: __Host- and / where
// the issuer is HTTPS, so that browsers enforce what the prefix promises.
func (s *Server) loginCookieName() (name, path string) {
	if strings.HasPrefix(s.IssuerURL, "https://") {
		return hostCookie, "/"
	}
	return loginCookie, "/oauth2/"
}

// setLoginCookie seals l into the cookie; false when no sealing key is loaded.
func (s *Server) setLoginCookie(w http.ResponseWriter, l login, now time.Time) bool {
	value, err := s.Sealer().Seal(seal.PurposeLogin, l, now, now.Add(loginLifetime))
	if err != nil {
		return false
	}
	name, path := s.loginCookieName()
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: int(loginLifetime / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	return true
}

func (s *Server) clearLoginCookie(w http.ResponseWriter) {
	name, path := s.loginCookieName()
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
}

func (s *Server) readLoginCookie(r *http.Request, now time.Time) (login, bool) {
	var l login
	name, _ := s.loginCookieName()
	cookies := r.CookiesNamed(name)
	if len(cookies) != 1 {
		return l, false
	}
	if err := s.Sealer().Open(seal.PurposeLogin, cookies[0].Value, now, &l); err != nil {
		return l, false
	}
	return l, true
}

// scopeLine is one requested scope on the consent page.
type scopeLine struct{ Name, Description string }

func (s *Server) showConsent(w http.ResponseWriter, client *index.Client, l login) {
	descriptions := s.Index.ScopeDescriptions(l.Request.Audiences)
	scopes := make([]scopeLine, 0, len(l.Request.Scope))
	for _, sc := range l.Request.Scope {
		scopes = append(scopes, scopeLine{sc, descriptions[sc]})
	}
	name := client.DisplayName
	if name == "" {
		name = client.Ref.Name
	}
	redirectHost := ""
	if u, err := url.Parse(l.Request.RedirectURI); err == nil {
		redirectHost = u.Host
	}
	s.render(w, http.StatusOK, "consent.html", l.Request.RedirectURI, map[string]any{
		"Title": "Install " + name, "AppName": name, "Publisher": client.Ref.Namespace, "RedirectHost": redirectHost,
		"User": l.User.Name, "Scopes": scopes, "Workspaces": l.Workspaces, "CSRF": l.CSRF, "Action": "/oauth2/consent",
	})
}

// Off is every page of the flow while third-party apps are off.
func Off(w http.ResponseWriter, _ *http.Request) {
	(&Server{}).showError(w, pageError{http.StatusNotFound, "Third-party apps are off", "This server does not serve the authorization_code flow."})
}

func (s *Server) showError(w http.ResponseWriter, e pageError) {
	s.render(w, e.status, "error.html", "", map[string]any{"Title": e.title, "Message": e.message})
}

// render writes a page with the security headers every page carries. formTarget is
// where the page's form may end up (the consent form redirects to the app), so
// that form-action allows it and nothing else.
func (s *Server) render(w http.ResponseWriter, status int, page, formTarget string, data map[string]any) {
	formAction := "'self'"
	if u, err := url.Parse(formTarget); err == nil && u.Host != "" {
		formAction += " " + u.Scheme + "://" + u.Host
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action "+formAction+"; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, page, data); err != nil {
		s.Log.Error(err, "rendering a page", "page", page)
	}
}

func HandleAsset(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "public, max-age=3600")
	http.ServeFileFS(w, r, webFiles, "web/style.css")
}

// randomString is 256 bits of randomness, base64url: states, nonces, CSRF
// tokens and code identifiers.
func randomString() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
