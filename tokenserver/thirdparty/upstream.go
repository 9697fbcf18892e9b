package thirdparty

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
)

// UpstreamConfig names the one OpenID Connect provider users sign in at. Its claim
// mapping mirrors kube-apiserver's OIDC authenticator flags, so that a person gets
// the same user name and groups here as in RBAC, where the SubjectAccessReview
// deciding their workspaces is answered.
type UpstreamConfig struct {
	IssuerURL    string
	ClientID     string
	ClientSecret string
	// UsernameClaim (default "sub") and UsernamePrefix: as --oidc-username-claim
	// and --oidc-username-prefix. An unset prefix means "<issuer>#" unless the claim
	// is "email"; "-" means none.
	UsernameClaim, UsernamePrefix string
	// GroupsClaim (none by default) and GroupsPrefix: as --oidc-groups-claim and
	// --oidc-groups-prefix.
	GroupsClaim, GroupsPrefix string
	// CAFile is an extra CA bundle for the provider's TLS certificate.
	CAFile string
	// Scopes requested besides openid (default profile, email, offline_access: the
	// provider's refresh token is what revalidates a user's refresh-token family).
	Scopes []string
}

// upstream signs users in at the provider. It is usable once discovery has
// succeeded; until then sign-in answers an error page (the provider may start
// after the token server).
type upstream struct {
	cfg UpstreamConfig
	// loadSecret reads the client secret (from its Secret) before discovery.
	loadSecret func(context.Context) (string, error)
	client     *http.Client
	provider   atomic.Pointer[oidc.Provider]
	log        logr.Logger
	// calls counts the calls to the provider's token endpoint, by call.
	calls *prometheus.CounterVec
}

func newUpstream(cfg UpstreamConfig, log logr.Logger, calls *prometheus.CounterVec) (*upstream, error) {
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = "sub"
	}
	if cfg.UsernamePrefix == "" && cfg.UsernameClaim != "email" {
		cfg.UsernamePrefix = cfg.IssuerURL + "#"
	}
	if cfg.UsernamePrefix == "-" {
		cfg.UsernamePrefix = ""
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"profile", "email", oidc.ScopeOfflineAccess}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the upstream CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the upstream CA file %s holds no PEM certificate", cfg.CAFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &upstream{cfg: cfg, client: &http.Client{Transport: transport, Timeout: 10 * time.Second}, log: log, calls: calls}, nil
}

// discover reads the client secret and fetches the provider's metadata until both
// succeed or ctx ends.
func (u *upstream) discover(ctx context.Context) {
	delay := 200 * time.Millisecond
	for {
		var p *oidc.Provider
		var err error
		if u.cfg.ClientSecret == "" && u.loadSecret != nil {
			u.cfg.ClientSecret, err = u.loadSecret(ctx)
		}
		if err == nil {
			p, err = oidc.NewProvider(oidc.ClientContext(ctx, u.client), u.cfg.IssuerURL)
		}
		if err == nil {
			u.provider.Store(p)
			u.log.Info("upstream OpenID provider discovered", "issuer", u.cfg.IssuerURL)
			return
		}
		u.log.Error(err, "setting up the upstream OpenID provider; retrying", "issuer", u.cfg.IssuerURL)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

var errUpstreamUnavailable = errors.New("the sign-in provider is not reachable yet")

func (u *upstream) oauth2Config(redirectURL string) (*oauth2.Config, *oidc.Provider, error) {
	p := u.provider.Load()
	if p == nil {
		return nil, nil, errUpstreamUnavailable
	}
	return &oauth2.Config{
		ClientID: u.cfg.ClientID, ClientSecret: u.cfg.ClientSecret, RedirectURL: redirectURL,
		Endpoint: endpointOf(p), Scopes: append([]string{oidc.ScopeOpenID}, u.cfg.Scopes...),
	}, p, nil
}

// endpointOf is the provider's endpoint with the client authentication its
// metadata lists: left to detect it, x/oauth2 tries a second call in the other
// style whenever the first fails, doubling every refused exchange.
func endpointOf(p *oidc.Provider) oauth2.Endpoint {
	e := p.Endpoint()
	var meta struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	_ = p.Claims(&meta)
	switch {
	case len(meta.Methods) == 0 || slices.Contains(meta.Methods, "client_secret_basic"):
		e.AuthStyle = oauth2.AuthStyleInHeader // the default of RFC 8414
	case slices.Contains(meta.Methods, "client_secret_post"):
		e.AuthStyle = oauth2.AuthStyleInParams
	}
	return e
}

// authCodeURL is where the browser goes to sign in, with state, nonce and PKCE.
func (u *upstream) authCodeURL(redirectURL, state, nonce, verifier string) (string, error) {
	cfg, _, err := u.oauth2Config(redirectURL)
	if err != nil {
		return "", err
	}
	return cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// user is who signed in, named as RBAC names them.
type user struct {
	Name   string   `json:"n"`
	Groups []string `json:"g,omitempty"`
}

// exchange redeems the provider's code, verifies the ID token (signature,
// issuer, audience, expiry, nonce) and maps its claims, completed from the
// userinfo endpoint when the ID token lacks one the mapping needs. It returns the
// provider's refresh token too, when it gave one (offline_access): what
// revalidates the user later.
func (u *upstream) exchange(ctx context.Context, redirectURL, code, verifier, nonce string) (user, string, error) {
	cfg, p, err := u.oauth2Config(redirectURL)
	if err != nil {
		return user{}, "", err
	}
	ctx = oidc.ClientContext(ctx, u.client)
	u.calls.WithLabelValues("exchange").Inc()
	token, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return user{}, "", fmt.Errorf("redeeming the provider's code: %w", err)
	}
	claims, err := u.claims(ctx, p, token, &nonce)
	if err != nil {
		return user{}, "", err
	}
	signedIn, err := u.mapClaims(claims)
	return signedIn, token.RefreshToken, err
}

// errUpstreamRefused means the provider refused a refresh token: the user's
// sign-in there is over (signed out, disabled, deleted, its session revoked).
var errUpstreamRefused = errors.New("the sign-in provider no longer accepts the user's session")

// revalidate asks the provider, with the refresh token of a user's sign-in,
// whether the user is still who they were: it returns the user as the provider
// names them now (groups included) and the refresh token to keep (the provider
// may rotate it). errUpstreamRefused when the provider refuses the token; any
// other error is the provider being unreachable or malformed.
func (u *upstream) revalidate(ctx context.Context, refreshToken string) (user, string, error) {
	cfg, p, err := u.oauth2Config("")
	if err != nil {
		return user{}, "", err
	}
	ctx = oidc.ClientContext(ctx, u.client)
	u.calls.WithLabelValues("revalidate").Inc()
	token, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	var refused *oauth2.RetrieveError
	if errors.As(err, &refused) && refused.Response != nil && refused.Response.StatusCode < 500 {
		return user{}, "", fmt.Errorf("%w: %s", errUpstreamRefused, refused.ErrorCode)
	}
	if err != nil {
		return user{}, "", fmt.Errorf("refreshing at the provider: %w", err)
	}
	claims, err := u.claims(ctx, p, token, nil)
	if err != nil {
		return user{}, "", err
	}
	now, err := u.mapClaims(claims)
	if err != nil {
		return user{}, "", fmt.Errorf("%w: %v", errUpstreamRefused, err)
	}
	next := token.RefreshToken
	if next == "" {
		next = refreshToken // the provider keeps the token it was given
	}
	return now, next, nil
}

// claims are the user's claims from a token response: the ID token's (verified;
// its nonce checked when nonce is set), completed from the userinfo endpoint when
// there is no ID token (a refresh may carry none) or it lacks a claim the mapping
// needs.
func (u *upstream) claims(ctx context.Context, p *oidc.Provider, token *oauth2.Token, nonce *string) (map[string]any, error) {
	claims := map[string]any{}
	rawID, _ := token.Extra("id_token").(string)
	switch {
	case rawID != "":
		idToken, err := p.Verifier(&oidc.Config{ClientID: u.cfg.ClientID}).Verify(ctx, rawID)
		if err != nil {
			return nil, fmt.Errorf("verifying the ID token: %w", err)
		}
		if nonce != nil && idToken.Nonce != *nonce {
			return nil, errors.New("the ID token's nonce does not match the sign-in")
		}
		if err := idToken.Claims(&claims); err != nil {
			return nil, err
		}
	case nonce != nil:
		return nil, errors.New("the provider returned no ID token")
	}
	_, hasName := claims[u.cfg.UsernameClaim]
	_, hasGroups := claims[u.cfg.GroupsClaim]
	if rawID == "" || !hasName || (u.cfg.GroupsClaim != "" && !hasGroups) {
		info, err := p.UserInfo(ctx, oauth2.StaticTokenSource(token))
		if err != nil {
			return nil, fmt.Errorf("reading userinfo: %w", err)
		}
		extra := map[string]any{}
		if err := info.Claims(&extra); err != nil {
			return nil, err
		}
		if rawID != "" && extra["sub"] != claims["sub"] {
			return nil, errors.New("userinfo names another subject than the ID token")
		}
		for k, v := range extra {
			if _, ok := claims[k]; !ok {
				claims[k] = v
			}
		}
	}
	return claims, nil
}

// mapClaims applies the username and groups claims and prefixes as kube-apiserver
// does: an email user name is refused when email_verified is false.
func (u *upstream) mapClaims(claims map[string]any) (user, error) {
	name, _ := claims[u.cfg.UsernameClaim].(string)
	if name == "" {
		return user{}, fmt.Errorf("the provider's token has no %q claim", u.cfg.UsernameClaim)
	}
	if u.cfg.UsernameClaim == "email" {
		if verified, ok := claims["email_verified"].(bool); ok && !verified {
			return user{}, errors.New("the provider says the email address is not verified")
		}
	}
	out := user{Name: u.cfg.UsernamePrefix + name}
	if strings.HasPrefix(out.Name, "system:") {
		return user{}, errors.New("user names beginning with system: are reserved by Kubernetes")
	}
	if u.cfg.GroupsClaim != "" {
		switch g := claims[u.cfg.GroupsClaim].(type) {
		case string:
			out.Groups = []string{u.cfg.GroupsPrefix + g}
		case []any:
			for _, v := range g {
				if s, ok := v.(string); ok {
					out.Groups = append(out.Groups, u.cfg.GroupsPrefix+s)
				}
			}
		}
	}
	// As for user names: a provider (or whoever edits its groups) must not sign
	// anyone in as a member of system:masters or any other group Kubernetes reserves.
	for _, g := range out.Groups {
		if strings.HasPrefix(g, "system:") {
			return user{}, fmt.Errorf("group %q: group names beginning with system: are reserved by Kubernetes (set --oidc-groups-prefix)", g)
		}
	}
	return out, nil
}
