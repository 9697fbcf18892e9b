// Package authz is the edge authorizer: it answers Envoy's ext_authz Check (gRPC)
// and HTTP forward-auth requests from proxies (Caddy, Traefik, nginx, Envoy's HTTP
// mode) with allow (and the caller's identity, in headers the upstream can trust),
// 401 or 403, so that a service behind the proxy needs no code to accept Latchkey
// API keys and access tokens.
//
// Both protocols translate their request into a Request and their answer from a
// Decision; Decide is the one place that decides. It reads the same watch-fed index
// as the token server (internal/index) and verifies tokens with public keys only
// (internal/accesstoken, from the JWKS ConfigMap the manager publishes).
package authz

import (
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"k8s.io/utils/clock"

	"github.com/latchkey-dev/latchkey/internal/apirules"
	"github.com/latchkey-dev/latchkey/internal/ascii"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/ratelimit"
)

// Request is what a proxy asks about, whatever the protocol.
type Request struct {
	Method string
	// Path is the request target as the client sent it (query included, not decoded).
	Path string
	Host string
	// Header returns a request header by its lower-case name ("" when absent);
	// nil reads HTTPHeader (singleHeader) instead, without a closure to allocate.
	Header     func(name string) string
	HTTPHeader http.Header
	// Imitation is the name of a request header that imitates an identity header
	// under another spelling (imitatesIdentityHeader), if there is one: refused.
	Imitation string
	// API names the API to apply ("namespace/name"); empty: the one serving Host.
	// Only the proxy's configuration may set it, never the client's request.
	API string
	// Scopes, when not nil, are the scopes required instead of the API's rules;
	// like API, from the proxy's configuration only.
	Scopes []string
}

// Outcome is why a request was allowed or refused; a metrics label.
type Outcome string

const (
	Allowed           Outcome = "allowed"
	NoAPI             Outcome = "no_api"             // 403: no served API for the request
	NoCredential      Outcome = "no_credential"      // 401
	MalformedRequest  Outcome = "malformed"          // 401: more than one credential, a bad Authorization header, a bad checksum
	InvalidCredential Outcome = "invalid_credential" // 401: unknown, revoked, expired, not for this API
	WrongEnvironment  Outcome = "wrong_environment"  // 401
	BadPath           Outcome = "bad_path"           // 403: a path the rules cannot be matched against safely
	InsufficientScope Outcome = "insufficient_scope" // 403
	RouteDenied       Outcome = "route_denied"       // 403: no rule matches and the API denies unmatched routes
)

// Decision is the answer: Status 200 with Identity, or 401/403 with an RFC 6750 error.
type Decision struct {
	Status  int
	Outcome Outcome
	// API is the API applied ("namespace/name"), empty when none was found.
	API string
	// Error and Description are the RFC 6750 error code and text ("" for a request
	// with no credential at all, which gets a bare challenge: RFC 6750 §3.1).
	Error, Description string
	// RequiredScope is the scope a 403 insufficient_scope asks for.
	RequiredScope string
	Identity      *Identity
	// CredentialHeaders are the headers that carried an API key: the upstream does
	// not need the key, so ext_authz removes them (access tokens pass through).
	// Read-only: it may be shared (fromAuthorization).
	CredentialHeaders []string
	// RateLimit is set (Policy not empty) when a budget applied (ratelimit.go):
	// its fields go on the answer, allowed or refused (429). A value, not a
	// pointer: one allocation less per limited check.
	RateLimit RateLimitHeaders
	// holder is the authenticated credential, as budgets name it.
	holder holder
}

// Identity is who the caller is: the contract with resource servers (Headers).
type Identity struct {
	// Subject is "apikey:<namespace>/<name>" for an API key, the client_id for an access token.
	Subject string
	// Kind is "api_key" or "access_token".
	Kind string
	// Namespace is the workspace the credential belongs to.
	Namespace string
	// Name is the APIKey's or the OAuthClient's name.
	Name     string
	ClientID string // access tokens only
	KeyID    string // API keys only: the public key ID, never the key
	// Environment is "live" or "test" (API keys only).
	Environment string
	// Scopes granted, space-separated.
	Scopes string
}

// Authorizer decides requests.
type Authorizer struct {
	Index *index.Index
	// Keys holds the current JWKS verifier (nil until loaded).
	Keys *JWKS
	// Issuer is the iss every accepted token must carry.
	Issuer string
	// APIKeyHeader is the header, besides Authorization, that may carry an API key (lower case).
	APIKeyHeader string
	Usage        UsageRecorder
	Clock        clock.PassiveClock
	// Limits counts each credential's requests against the APIs' rate limits
	// (ratelimit.go); nil enforces none (tests of other behaviour only: Run
	// always sets it).
	Limits *ratelimit.Limiter
}

// UsageRecorder notes that an API key was accepted, for status.lastUsedAt.
type UsageRecorder interface {
	Used(kind string, ref index.Ref, noted *atomic.Uint64, now time.Time)
}

// Decide answers one request. Order matters for what a caller can learn: a
// request that imitates an identity header is refused before anything else; then
// the API (nothing else can be decided without it), then the credential (401),
// then the route (403).
func (a *Authorizer) Decide(r Request) Decision {
	if r.Imitation != "" {
		return Decision{Status: 401, Outcome: MalformedRequest, Error: "invalid_request",
			Description: "a request header imitates a Latchkey identity header (X-Latchkey-*) under another spelling"}
	}
	api, ok := a.findAPI(r)
	if !ok {
		return Decision{Status: 403, Outcome: NoAPI, Error: "access_denied", Description: "no API is configured for this request"}
	}
	d := a.authenticate(r, api)
	d.API = api.ID
	if d.Identity == nil {
		return d
	}
	path, ok := cleanPath(r.Path)
	if !ok {
		return Decision{Status: 403, Outcome: BadPath, API: d.API, Error: "access_denied",
			Description: "the request path is not in canonical form (encoded slashes or dots, dot segments, empty segments or ';')"}
	}
	required := r.Scopes
	var rule *index.Rule
	if required == nil {
		var matched bool
		rule, matched = api.Match(r.Method, path)
		switch {
		case matched:
			required = rule.Scopes
		case !api.Authenticate:
			return Decision{Status: 403, Outcome: RouteDenied, API: d.API, Error: "access_denied",
				Description: "this route is not open to any credential"}
		}
	}
	for _, scope := range required {
		if !apirules.GrantsScope(d.Identity.Scopes, scope) {
			return Decision{Status: 403, Outcome: InsufficientScope, API: d.API, Error: "insufficient_scope",
				Description: "the credential lacks a scope this route requires", RequiredScope: strings.Join(required, " ")}
		}
	}
	a.limit(&d, api, rule)
	return d
}

// findAPI is the API the proxy named, or the one serving the Host.
func (a *Authorizer) findAPI(r Request) (*index.API, bool) {
	if r.API != "" {
		namespace, name, ok := strings.Cut(r.API, "/")
		if !ok {
			return nil, false
		}
		return a.Index.API(namespace, name)
	}
	if r.Host == "" {
		return nil, false
	}
	return a.Index.APIForHost(r.Host)
}

var (
	errInvalid = Decision{Status: 401, Outcome: InvalidCredential, Error: "invalid_token",
		Description: "the credential is not valid"}
	errNotForAPI = Decision{Status: 401, Outcome: InvalidCredential, Error: "invalid_token",
		Description: "the credential is not valid for this API"}
)

// authenticate finds the one credential of the request and checks it against api:
// a Decision with Identity, or a 401.
func (a *Authorizer) authenticate(r Request, api *index.API) Decision {
	token, headers, problem := credentialOf(r, a.APIKeyHeader)
	fromAuthorization := len(headers) > 0 && headers[0] == "authorization"
	switch {
	case problem != "":
		return Decision{Status: 401, Outcome: MalformedRequest, Error: "invalid_request", Description: problem}
	case token == "":
		return Decision{Status: 401, Outcome: NoCredential,
			Description: "send an API key or an access token: Authorization: Bearer <credential>"}
	}
	now := a.Clock.Now()
	key, hash, wellFormed, accepted := a.Index.AcceptAPIKey(token, now)
	switch {
	case accepted:
		if !api.AcceptsNamespace(key.Ref.Namespace) {
			return errNotForAPI
		}
		if !api.AcceptsEnvironment(key.Environment) {
			return Decision{Status: 401, Outcome: WrongEnvironment, Error: "invalid_token",
				Description: "this API does not accept " + key.Environment + " keys"}
		}
		a.Usage.Used(index.KindAPIKey, key.Ref, &key.UseNoted, now)
		d := Decision{Status: 200, Outcome: Allowed, Identity: &Identity{
			Subject: key.Subject, Kind: "api_key",
			Namespace: key.Ref.Namespace, Name: key.Ref.Name, KeyID: hash.KeyID(),
			Environment: key.Environment, Scopes: key.Scope.Value(),
		}}
		d.CredentialHeaders, d.holder = headers, apiKeyHolder(key, now)
		return d
	case wellFormed:
		return errInvalid // unknown, revoked or expired: one answer for all
	case strings.Count(token, ".") == 2 && fromAuthorization:
		return a.authenticateToken(token, api, now)
	case looksLikeAPIKeyShape(token):
		return Decision{Status: 401, Outcome: MalformedRequest, Error: "invalid_token", Description: "the API key is malformed (its checksum does not match)"}
	}
	return Decision{Status: 401, Outcome: MalformedRequest, Error: "invalid_token", Description: "the credential is malformed"}
}

// authenticateToken accepts an access token issued for api (aud) acting in a
// namespace api accepts, while its client (and grant) still exist, unchanged and
// active.
func (a *Authorizer) authenticateToken(token string, api *index.API, now time.Time) Decision {
	claims, ok := a.Keys.Verifier().Verify(token, a.Issuer, now)
	if !ok {
		return errInvalid
	}
	holder, ok := a.Index.AcceptToken(claims, now)
	if !ok {
		return errInvalid
	}
	if !slices.Contains(claims.Audience, api.Identifier) || !holder.AllowsAudience(api.Identifier) || !api.AcceptsNamespace(holder.Workspace) {
		return errNotForAPI
	}
	identity := &Identity{
		Subject: claims.Subject, Kind: "access_token", Namespace: holder.Workspace, Name: holder.Client.Ref.Name,
		ClientID: holder.Client.ClientID, Scopes: holder.ScopesStillGranted(claims.Scope),
	}
	if holder.Grant != nil {
		// A third-party app acts in the workspace that installed it, for the user in
		// Subject. Its name is its OAuthGrant's there, and its kind says so: an app
		// published elsewhere is never mistaken for one of the workspace's own clients.
		identity.Kind, identity.Name = "app_access_token", holder.Grant.Ref.Name
	}
	return Decision{Status: 200, Outcome: Allowed, Identity: identity, holder: tokenHolder(holder, now)}
}

// looksLikeAPIKeyShape tells a mistyped API key (lk_live_… with a wrong checksum)
// from other garbage, for a clearer error.
func looksLikeAPIKeyShape(token string) bool {
	parts := strings.Split(token, "_")
	return len(parts) == 3 && (parts[1] == "live" || parts[1] == "test")
}

// credentialOf returns the one credential of the request and the headers it came in
// (lower case). RFC 6750 §2: a client uses one method per request, so two
// different credentials are refused rather than one chosen.
func credentialOf(r Request, apiKeyHeader string) (token string, headers []string, problem string) {
	auth := r.header("authorization")
	if auth != "" {
		scheme, value, ok := strings.Cut(auth, " ")
		if !ok || !ascii.EqualFold(scheme, "Bearer") || !b64token(value) {
			return "", nil, "the Authorization header must be: Bearer <credential>"
		}
		token, headers = value, fromAuthorization
	}
	if apiKeyHeader != "" {
		if v := r.header(apiKeyHeader); v != "" {
			switch {
			case token != "" && v != token:
				return "", nil, "send one credential per request, not two"
			case token == "" && !b64token(v):
				return "", nil, "the " + apiKeyHeader + " header must hold one API key"
			}
			token, headers = v, append(headers, apiKeyHeader) // the same key twice: both go
		}
	}
	return token, headers, ""
}

// fromAuthorization is the headers of a credential sent in Authorization alone,
// shared by every such Decision (CredentialHeaders): read-only, and an append
// copies it (cap = len).
var fromAuthorization = []string{"authorization"}[:1:1]

// header returns a request header by its lower-case name ("" when absent).
func (r Request) header(name string) string {
	if r.Header == nil {
		return singleHeader(r.HTTPHeader, canonicalHeader(name))
	}
	return r.Header(name)
}

// canonicalHeader is a lower-case header name as net/http keys it. The names
// every check reads are spelled out: canonicalizing allocates a new string.
func canonicalHeader(name string) string {
	switch name {
	case "authorization":
		return "Authorization"
	case "x-api-key": // --api-key-header's default
		return "X-Api-Key"
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// b64token is RFC 6750 §2.1's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// Every check reads its credential through it: one table lookup per byte.
func b64token(s string) bool {
	if s == "" || len(s) > 8192 {
		return false
	}
	i := 0
	for i < len(s) && b64tokenByte[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// b64tokenByte marks the bytes of a b64token before its '=' padding.
var b64tokenByte = func() (t [256]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", byte(c)) >= 0
	}
	return t
}()

// cleanPath returns the path of a request target (no query), decoded, if matching
// rules against it is safe: the upstream must see the same segments the rules
// saw. Encoded slashes and backslashes, dot segments, empty segments, ';' (path
// parameters some servers drop), control characters and invalid UTF-8 are
// refused rather than normalized: a normalization that differs from the
// upstream's is how route rules are bypassed. Rules match case-sensitively: an
// upstream that routes paths case-insensitively needs rules for its spellings.
func cleanPath(target string) (string, bool) {
	raw, _, _ := strings.Cut(target, "?")
	// A '#' is never sent by a client as a fragment; in a path it is a character
	// some servers decode (%23) after the rules have judged what came before it.
	if !strings.HasPrefix(raw, "/") || strings.ContainsAny(raw, `\;#`) {
		return "", false
	}
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%3b") || strings.Contains(lower, "%23") || strings.Contains(lower, "%00") {
		return "", false
	}
	decoded, err := url.PathUnescape(raw)
	if err != nil || !utf8.ValidString(decoded) {
		return "", false
	}
	for i := 0; i < len(decoded); i++ {
		if c := decoded[i]; c < 0x20 || c == 0x7f {
			return "", false
		}
	}
	if decoded == "/" {
		return decoded, true
	}
	for rest := decoded[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." || (seg == "" && more) { // an empty last segment is a trailing slash
			return "", false
		}
		if !more {
			return decoded, true
		}
		rest = after
	}
}
