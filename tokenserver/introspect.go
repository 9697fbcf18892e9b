package tokenserver

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/jsonappend"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
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

// AppendJSON appends i as encoding/json marshals it (the tests compare): the
// introspection endpoint's answer without reflection.
func (i introspection) AppendJSON(b []byte) []byte {
	o := jsonappend.Open(b)
	o.Key("active")
	o.B = strconv.AppendBool(o.B, i.Active)
	o.String("scope", i.Scope, true)
	o.String("client_id", i.ClientID, true)
	o.String("token_type", i.TokenType, true)
	o.Int("exp", i.Exp, true)
	o.Int("iat", i.Iat, true)
	o.Int("nbf", i.Nbf, true)
	o.String("sub", i.Sub, true)
	o.StringOrStrings("aud", i.Aud)
	o.String("iss", i.Iss, true)
	o.String("jti", i.Jti, true)
	o.String("namespace", i.Namespace, true)
	o.String("environment", i.Environment, true)
	o.String("name", i.Name, true)
	o.String("key_id", i.KeyID, true)
	return o.Close()
}

// errNotAResourceServer answers a client that may not introspect.
var errNotAResourceServer = oauth.NewError(http.StatusForbidden, "unauthorized_client",
	"this client may not introspect; give its OAuthClient spec.introspection")

// handleIntrospect is RFC 7662 introspection for resource servers: OAuthClients
// with spec.introspection. token is an API key or an access token. Each caller
// learns only about the credentials meant for it (its introspection policy):
// anything else is {"active": false}, as an unknown token is.
func (s *Server) handleIntrospect(w http.ResponseWriter, _ *http.Request, call oauthCall) {
	form, caller := call.params, call.client
	switch {
	case call.authErr != nil:
		oauth.WriteError(w, call.authErr)
		return
	case caller.Public:
		oauth.WriteError(w, oauth.ErrInvalidClient)
		return
	case caller.Introspection == nil:
		oauth.WriteError(w, errNotAResourceServer)
		return
	}
	token := form.Get("token")
	if token == "" {
		oauth.WriteError(w, oauth.ErrInvalidRequest("token is required"))
		return
	}
	s.usage.Used(index.KindOAuthClient, caller.Ref, &caller.UseNoted, call.now)
	if key, ok := s.introspectAPIKey(caller.Introspection, token, call.now); ok {
		oauth.WriteAppended(w, http.StatusOK, key)
		return
	}
	result := inactive
	if strings.Count(token, ".") == 2 {
		result = s.introspectJWT(caller.Introspection, token, call.now)
	}
	oauth.WriteAppended(w, http.StatusOK, result)
}

// introspectAPIKey: active while its hash is accepted (including a grace period)
// and the key has not expired — and only to a resource server whose policy covers
// the key's namespace and one of its scopes; the answer's scope lists only those.
// A revoked key's hashes are already gone. ok is false for an inactive key.
func (s *Server) introspectAPIKey(policy *index.IntrospectionPolicy, token string, now time.Time) (_ apiKeyIntrospection, ok bool) {
	key, hash, _, accepted := s.index.AcceptAPIKey(token, now)
	if !accepted || !policy.CoversNamespace(key.Ref.Namespace) {
		return apiKeyIntrospection{}, false
	}
	scope := policy.ServedScopes(key.Scope.Value())
	if scope == "" {
		return apiKeyIntrospection{}, false
	}
	s.usage.Used(index.KindAPIKey, key.Ref, &key.UseNoted, now)
	return apiKeyIntrospection{key: key, scope: scope, hash: hash}, true
}

// apiKeyIntrospection is an active API key's answer: introspection() as a
// struct, written by AppendJSON without making its key ID string first, and with
// the subject the index made once for the key (make bench: an allocation each
// per answer).
type apiKeyIntrospection struct {
	key   *index.Key
	scope string // the scopes the caller is served
	hash  index.Digest
}

// introspection is the answer as encoding/json would write it.
func (a apiKeyIntrospection) introspection() introspection {
	ref := a.key.Ref
	return introspection{
		Active: true, Scope: a.scope, TokenType: "api_key", Environment: a.key.Environment,
		Exp: a.key.Expiry(), Namespace: ref.Namespace, Name: ref.Name,
		Sub: a.key.Subject, KeyID: a.hash.KeyID(),
	}
}

// AppendJSON appends introspection().AppendJSON: the same members in the same
// order (the tests compare), the empty ones left out as there.
func (a apiKeyIntrospection) AppendJSON(b []byte) []byte {
	ref := a.key.Ref
	o := jsonappend.Open(b)
	o.Key("active")
	o.B = append(o.B, "true"...)
	o.String("scope", a.scope, true)
	o.String("token_type", "api_key", true)
	o.Int("exp", a.key.Expiry(), true)
	o.String("sub", a.key.Subject, true)
	o.String("namespace", ref.Namespace, true)
	o.String("environment", a.key.Environment, true)
	o.String("name", ref.Name, true)
	o.Key("key_id")
	o.B = append(a.hash.AppendKeyID(append(o.B, '"')), '"')
	return o.Close()
}

// introspectJWT checks signature, typ, iss, exp and nbf, and that the OAuthClient
// the token was issued to still exists with the same UID and is active: revoking or
// deleting a client ends its outstanding tokens at once. The answer reflects the
// client as it is now: only the scopes and audiences it still has, and only to a
// resource server whose policy covers the client's namespace and serves one of
// those audiences.
func (s *Server) introspectJWT(policy *index.IntrospectionPolicy, token string, now time.Time) introspection {
	ring := s.keys.current()
	if ring == nil {
		return inactive
	}
	claims, ok := ring.verifier.Verify(token, s.cfg.IssuerURL, now)
	if !ok {
		return inactive
	}
	holder, ok := s.index.AcceptToken(claims, now)
	if !ok || !policy.CoversNamespace(holder.Workspace) {
		return inactive
	}
	var aud jwt.Audience
	for _, a := range claims.Audience {
		if holder.AllowsAudience(a) && slices.Contains(policy.Audiences, a) {
			aud = append(aud, a)
		}
	}
	if len(aud) == 0 {
		return inactive
	}
	return introspection{
		Active: true, Scope: holder.ScopesStillGranted(claims.Scope), ClientID: claims.ClientID, TokenType: "Bearer",
		Exp: int64(*claims.Expiry), Iat: numericDate(claims.IssuedAt), Nbf: numericDate(claims.NotBefore),
		Sub: claims.Subject, Aud: aud, Iss: claims.Issuer, Jti: claims.ID, Namespace: holder.Workspace,
	}
}

func numericDate(d *jwt.NumericDate) int64 {
	if d == nil {
		return 0
	}
	return int64(*d)
}
