package tokenserver

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/index"
)

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// handleToken is the token endpoint (RFC 6749 §4.4, client_credentials).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	form, oerr := s.readForm(w, r, "resource", "audience")
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	grantType := form.Get("grant_type")
	if grantType == "" {
		writeError(w, errInvalidRequest("grant_type is required"))
		return
	}
	client, oerr := s.authenticateClient(r, form)
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	if oerr := checkGrant(client, grantType); oerr != nil {
		writeError(w, oerr)
		return
	}
	scope, oerr := grantedScope(client, form.Get("scope"))
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	audience, oerr := grantedAudience(client, form)
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	token, err := s.sign(client, scope, audience)
	if err != nil {
		s.log.Error(err, "signing an access token")
		writeError(w, &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", "no signing key is available"})
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(client.TTL / time.Second), Scope: scope,
	})
}

// checkGrant: client_credentials is served; the other grants the schema knows are
// not served yet, and anything else is unknown.
func checkGrant(client *index.Client, grantType string) *oauthError {
	switch grantType {
	case "client_credentials":
		if client.ClientCredentials {
			return nil
		}
		return &oauthError{http.StatusBadRequest, "unauthorized_client", "this client may not use the client_credentials grant"}
	case "authorization_code", "refresh_token":
		return &oauthError{http.StatusBadRequest, "unauthorized_client", "the " + grantType + " grant is not served by this server"}
	}
	return &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant_type " + grantType + " is not supported"}
}

// grantedScope is the requested scope if every part is allowed, or all the client's scopes.
func grantedScope(client *index.Client, requested string) (string, *oauthError) {
	if requested == "" {
		return strings.Join(client.Scopes, " "), nil
	}
	parts, ok := parseScope(requested)
	if !ok {
		return "", &oauthError{http.StatusBadRequest, "invalid_scope", "scope must be scope tokens of printable ASCII separated by spaces"}
	}
	for _, p := range parts {
		if !contains(client.Scopes, p) {
			return "", &oauthError{http.StatusBadRequest, "invalid_scope", "scope " + p + " is not allowed for this client"}
		}
	}
	return strings.Join(parts, " "), nil
}

// parseScope splits a scope parameter as RFC 6749 §3.3 defines it: tokens of
// %x21 / %x23-5B / %x5D-7E separated by spaces (ASCII space only: no tab, no
// Unicode space), each kept once. It reports false for anything else.
func parseScope(scope string) ([]string, bool) {
	var tokens []string
	for token := range strings.SplitSeq(scope, " ") {
		if token == "" {
			continue // tolerate doubled or trailing spaces
		}
		for i := 0; i < len(token); i++ {
			if c := token[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return nil, false
			}
		}
		if !contains(tokens, token) {
			tokens = append(tokens, token)
		}
	}
	return tokens, len(tokens) > 0
}

// grantedAudience is the requested audience (RFC 8707 "resource", or "audience") if
// allowed, or the client's first audience.
func grantedAudience(client *index.Client, form url.Values) (jwt.Audience, *oauthError) {
	requested := append(append([]string{}, form["resource"]...), form["audience"]...)
	if len(requested) == 0 {
		if len(client.Audiences) == 0 {
			return nil, &oauthError{http.StatusBadRequest, "invalid_target", "the client has no audience"}
		}
		return jwt.Audience{client.Audiences[0]}, nil
	}
	var aud jwt.Audience
	for _, a := range requested {
		if !contains(client.Audiences, a) {
			return nil, &oauthError{http.StatusBadRequest, "invalid_target", "audience " + a + " is not allowed for this client"}
		}
		if !contains(aud, a) {
			aud = append(aud, a)
		}
	}
	return aud, nil
}

// sign issues the JWT.
func (s *Server) sign(client *index.Client, scope string, audience jwt.Audience) (string, error) {
	now := s.clock.Now()
	signer, _, err := s.keys.Signer(now)
	if err != nil {
		return "", err
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	claims := accesstoken.Claims{
		Claims: jwt.Claims{
			Issuer:    s.cfg.IssuerURL,
			Subject:   client.ClientID,
			Audience:  audience,
			Expiry:    jwt.NewNumericDate(now.Add(client.TTL)),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ID:        hex.EncodeToString(jti[:]),
		},
		ClientID:  client.ClientID,
		Scope:     scope,
		Namespace: client.Ref.Namespace,
		ClientUID: string(client.Ref.UID),
	}
	// Marshalled once and signed directly: jwt.Signed's builder marshals the claims,
	// decodes them into a map to merge and marshals again, which doubled the cost of
	// an ES256 or EdDSA token (BenchmarkTokenEndpoint).
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return signer.sign(payload)
}
