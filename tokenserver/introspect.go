package tokenserver

import (
	"crypto/sha256"
	"net/http"
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
	// API keys only.
	Environment string `json:"environment,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	KeyID       string `json:"key_id,omitempty"`
}

var inactive = introspection{Active: false}

// tokenLeeway absorbs clock skew between replicas on nbf and exp.
const tokenLeeway = 5 * time.Second

// handleIntrospect is RFC 7662 introspection for resource servers, which
// authenticate as an active OAuthClient. token is an API key or an access token.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	form, oerr := s.readForm(w, r)
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	if _, oerr := s.authenticateClient(r, form); oerr != nil {
		writeError(w, oerr)
		return
	}
	token := form.Get("token")
	if token == "" {
		writeError(w, errInvalidRequest("token is required"))
		return
	}
	result := inactive
	if credential.LooksLikeAPIKey(token) {
		result = s.introspectAPIKey(token)
	} else if strings.Count(token, ".") == 2 {
		result = s.introspectJWT(token)
	}
	writeJSON(w, http.StatusOK, result)
}

// introspectAPIKey: active while its hash is accepted (including a grace period)
// and the key has not expired. A revoked key's hashes are already gone.
func (s *Server) introspectAPIKey(token string) introspection {
	hash := digest(sha256.Sum256([]byte(token)))
	key, ok := s.index.LookupAPIKey(hash)
	now := s.clock.Now()
	if !ok || !key.acceptedAt(now) {
		return inactive
	}
	s.usage.Used(kindAPIKey, key.ref)
	return introspection{
		Active: true, Scope: key.scope.Value(), TokenType: "api_key", Environment: key.environment,
		Exp: key.expiry(), Namespace: key.ref.Namespace, Name: key.ref.Name,
		Sub:   "apikey:" + key.ref.Namespace + "/" + key.ref.Name,
		KeyID: credential.KeyID("sha256:" + hexDigest(hash)),
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
// deleting a client ends its outstanding tokens at once.
func (s *Server) introspectJWT(token string) introspection {
	ring := s.keys.current()
	if ring == nil {
		return inactive
	}
	parsed, err := jwt.ParseSigned(token, ring.algs)
	if err != nil || len(parsed.Headers) != 1 || parsed.Headers[0].ExtraHeaders[jose.HeaderType] != "at+jwt" {
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
	if !ok || client.clientID != claims.ClientID || client.ref.Namespace != claims.Namespace || !client.active(now) {
		return inactive
	}
	return introspection{
		Active: true, Scope: claims.Scope, ClientID: claims.ClientID, TokenType: "Bearer",
		Exp: int64(*claims.Expiry), Iat: numericDate(claims.IssuedAt), Nbf: numericDate(claims.NotBefore),
		Sub: claims.Subject, Aud: claims.Audience, Iss: claims.Issuer, Jti: claims.ID,
	}
}

func numericDate(d *jwt.NumericDate) int64 {
	if d == nil {
		return 0
	}
	return int64(*d)
}
