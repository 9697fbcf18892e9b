package tokenserver

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"k8s.io/apimachinery/pkg/types"

	"github.com/latchkey-dev/latchkey/internal/credential"
)

// introspection is an RFC 7662 response. Inactive tokens get {"active": false} only.
type introspection struct {
	Active    bool         `json:"active"`
	Scope     string       `json:"scope,omitempty"`
	ClientID  string       `json:"client_id,omitempty"`
	TokenType string       `json:"token_type,omitempty"`
	Exp       int64        `json:"exp,omitempty"`
	Iat       int64        `json:"iat,omitempty"`
	Nbf       int64        `json:"nbf,omitempty"`
	Sub       string       `json:"sub,omitempty"`
	Aud       jwt.Audience `json:"aud,omitempty"`
	Iss       string       `json:"iss,omitempty"`
	Jti       string       `json:"jti,omitempty"`
	// The namespace of the APIKey, or of the OAuthClient a token was issued to.
	Namespace string `json:"namespace,omitempty"`
	// API keys only.
	Environment string `json:"environment,omitempty"`
	Name        string `json:"name,omitempty"`
	KeyID       string `json:"key_id,omitempty"`
}

var inactive = introspection{Active: false}

// tokenLeeway absorbs clock skew between replicas on nbf and exp.
const tokenLeeway = 5 * time.Second

// errNotAResourceServer answers a client that may not introspect.
var errNotAResourceServer = &oauthError{http.StatusForbidden, "unauthorized_client",
	"this client may not introspect; give its OAuthClient spec.introspection"}

// handleIntrospect is RFC 7662 introspection for resource servers: OAuthClients
// with spec.introspection. token is an API key or an access token. Each caller
// learns only about the credentials meant for it (its introspection policy):
// anything else is {"active": false}, as an unknown token is.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	form, oerr := s.readForm(w, r)
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	caller, oerr := s.authenticateClient(r, form)
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	if caller.introspection == nil {
		writeError(w, errNotAResourceServer)
		return
	}
	token := form.Get("token")
	if token == "" {
		writeError(w, errInvalidRequest("token is required"))
		return
	}
	result := inactive
	if credential.LooksLikeAPIKey(token) {
		result = s.introspectAPIKey(caller.introspection, token)
	} else if strings.Count(token, ".") == 2 {
		result = s.introspectJWT(caller.introspection, token)
	}
	writeJSON(w, http.StatusOK, result)
}

// coversNamespace reports whether the policy lets its client introspect credentials of namespace.
func (p *introspectionPolicy) coversNamespace(namespace string) bool {
	return p.allNamespaces || slices.Contains(p.namespaces, namespace)
}

// servedScopes keeps the scopes of a space-separated list that the policy serves
// ("orders:*" serves every orders scope), space-separated. When it serves them all
// (the usual case) the list itself is returned, with no allocation.
func (p *introspectionPolicy) servedScopes(scopes string) string {
	all := true
	for scope := range strings.SplitSeq(scopes, " ") {
		all = all && p.serves(scope)
	}
	if all {
		return scopes
	}
	var served []string
	for scope := range strings.SplitSeq(scopes, " ") {
		if p.serves(scope) {
			served = append(served, scope)
		}
	}
	return strings.Join(served, " ")
}

func (p *introspectionPolicy) serves(scope string) bool {
	for _, mine := range p.scopes {
		if scope == mine || (strings.HasSuffix(mine, ":*") && strings.HasPrefix(scope, mine[:len(mine)-1])) {
			return true
		}
	}
	return false
}

// introspectAPIKey: active while its hash is accepted (including a grace period)
// and the key has not expired — and only to a resource server whose policy covers
// the key's namespace and one of its scopes; the answer's scope lists only those.
// A revoked key's hashes are already gone.
func (s *Server) introspectAPIKey(policy *introspectionPolicy, token string) introspection {
	hash := digest(sha256.Sum256([]byte(token)))
	key, ok := s.index.LookupAPIKey(hash)
	now := s.clock.Now()
	if !ok || !key.acceptedAt(now) || !policy.coversNamespace(key.ref.Namespace) {
		return inactive
	}
	scope := policy.servedScopes(key.scope.Value())
	if scope == "" {
		return inactive
	}
	s.usage.Used(kindAPIKey, key.ref)
	return introspection{
		Active: true, Scope: scope, TokenType: "api_key", Environment: key.environment,
		Exp: key.expiry(), Namespace: key.ref.Namespace, Name: key.ref.Name,
		Sub:   "apikey:" + key.ref.Namespace + "/" + key.ref.Name,
		KeyID: credential.KeyID(credential.HashOfDigest(hash[:])),
	}
}

func (k *apiKey) acceptedAt(now time.Time) bool {
	return (k.expiresAt.IsZero() || now.Before(k.expiresAt)) && (k.notAfter.IsZero() || now.Before(k.notAfter))
}

// expiry is when the key stops being accepted, as a Unix time; 0 when never.
func (k *apiKey) expiry() int64 {
	end := k.expiresAt
	if !k.notAfter.IsZero() && (end.IsZero() || k.notAfter.Before(end)) {
		end = k.notAfter
	}
	if end.IsZero() {
		return 0
	}
	return end.Unix()
}

// introspectJWT checks signature, typ, iss, exp and nbf, and that the OAuthClient
// the token was issued to still exists with the same UID and is active: revoking or
// deleting a client ends its outstanding tokens at once. The answer reflects the
// client as it is now: only the scopes and audiences it still has, and only to a
// resource server whose policy covers the client's namespace and serves one of
// those audiences.
func (s *Server) introspectJWT(policy *introspectionPolicy, token string) introspection {
	ring := s.keys.current()
	if ring == nil || !canonicalJWS(token) {
		return inactive
	}
	parsed, err := jwt.ParseSigned(token, ring.algs)
	if err != nil || len(parsed.Headers) != 1 || !accessTokenType(parsed.Headers[0].ExtraHeaders[jose.HeaderType]) {
		return inactive
	}
	key, ok := ring.verifiers[parsed.Headers[0].KeyID]
	if !ok {
		return inactive
	}
	var claims accessTokenClaims
	if err := parsed.Claims(key.Key, &claims); err != nil {
		return inactive
	}
	now := s.clock.Now()
	if claims.Expiry == nil || claims.ValidateWithLeeway(jwt.Expected{Issuer: s.cfg.IssuerURL, Time: now}, tokenLeeway) != nil {
		return inactive
	}
	client, ok := s.index.ClientByUID(types.UID(claims.ClientUID))
	if !ok || client.clientID != claims.ClientID || client.ref.Namespace != claims.Namespace || !client.active(now) ||
		!policy.coversNamespace(client.ref.Namespace) {
		return inactive
	}
	var aud jwt.Audience
	for _, a := range claims.Audience {
		if slices.Contains(client.audiences, a) && slices.Contains(policy.audiences, a) {
			aud = append(aud, a)
		}
	}
	if len(aud) == 0 {
		return inactive
	}
	var scopes []string
	for scope := range strings.SplitSeq(claims.Scope, " ") {
		if slices.Contains(client.scopes, scope) {
			scopes = append(scopes, scope)
		}
	}
	return introspection{
		Active: true, Scope: strings.Join(scopes, " "), ClientID: claims.ClientID, TokenType: "Bearer",
		Exp: int64(*claims.Expiry), Iat: numericDate(claims.IssuedAt), Nbf: numericDate(claims.NotBefore),
		Sub: claims.Subject, Aud: aud, Iss: claims.Issuer, Jti: claims.ID, Namespace: client.ref.Namespace,
	}
}

// canonicalJWS reports whether each of the three parts of a compact JWS is
// base64url exactly as RFC 7515 §2 spells it: no padding, no line breaks, no
// non-zero trailing bits. go-jose decodes leniently and re-encodes the payload
// before checking the signature, so without this one token would have many
// spellings that all introspect as active, and anything a resource server keys
// on the token string (a cache, a deny list, an audit log) could be sidestepped.
func canonicalJWS(token string) bool {
	for part := range strings.SplitSeq(token, ".") {
		decoded, err := base64.RawURLEncoding.Strict().DecodeString(part)
		if err != nil || base64.RawURLEncoding.EncodedLen(len(decoded)) != len(part) {
			return false
		}
	}
	return true
}

// accessTokenType accepts the typ header values RFC 9068 §4 allows: "at+jwt", or
// the full media type "application/at+jwt", compared case-insensitively (RFC 2045).
func accessTokenType(typ any) bool {
	s, ok := typ.(string)
	return ok && (strings.EqualFold(s, "at+jwt") || strings.EqualFold(s, "application/at+jwt"))
}

func numericDate(d *jwt.NumericDate) int64 {
	if d == nil {
		return 0
	}
	return int64(*d)
}
