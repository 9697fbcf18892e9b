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
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// tokenGrant serves one grant_type at the token endpoint (as Ory fosite's handlers
// do): the endpoint reads the parameters and authenticates the client once, and
// each grant decides the rest.
type tokenGrant interface {
	// allowed reports whether client may use the grant (unauthorized_client if not).
	allowed(client *index.Client) bool
	// publicClients says whether a public client (no secret) may use the grant.
	publicClients() bool
	// issue answers the request.
	issue(r *http.Request, client *index.Client, params url.Values) (tokenResponse, *oauthError)
}

// grants are the grant types the token endpoint serves.
func (s *Server) grants() map[string]tokenGrant {
	return map[string]tokenGrant{
		"client_credentials": clientCredentialsGrant{s},
		"authorization_code": authorizationCodeGrant{s},
		"refresh_token":      refreshTokenGrant{s},
	}
}

// handleToken is the token endpoint (RFC 6749 §3.2).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, call oauthCall) {
	params := call.params
	grantType := params.Get("grant_type")
	if grantType == "" {
		writeError(w, errInvalidRequest("grant_type is required"))
		return
	}
	grant, known := s.tokenGrants[grantType]
	client := call.client
	switch {
	case call.authErr != nil:
		writeError(w, call.authErr)
		return
	case client.Public && !(known && grant.publicClients()):
		writeError(w, errInvalidClient) // as for a wrong secret: public clients are not served here
		return
	}
	if !known {
		writeError(w, &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant_type " + grantType + " is not supported"})
		return
	}
	if !grant.allowed(client) {
		writeError(w, &oauthError{http.StatusBadRequest, "unauthorized_client", "this client may not use the " + grantType + " grant"})
		return
	}
	resp, oerr := grant.issue(r, client, params)
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	s.usage.Used(index.KindOAuthClient, client.Ref)
	writeJSON(w, http.StatusOK, resp)
}

// errSigning is the answer when no signing key signs now.
var errSigning = &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", "no signing key is available"}

// clientCredentialsGrant: a client acting for itself (RFC 6749 §4.4).
type clientCredentialsGrant struct{ s *Server }

func (clientCredentialsGrant) allowed(c *index.Client) bool { return c.ClientCredentials && !c.Public }
func (clientCredentialsGrant) publicClients() bool          { return false }

func (g clientCredentialsGrant) issue(_ *http.Request, client *index.Client, params url.Values) (tokenResponse, *oauthError) {
	scope, oerr := grantedScope(client, params.Get("scope"))
	if oerr != nil {
		return tokenResponse{}, oerr
	}
	audience, oerr := grantedAudience(client, params)
	if oerr != nil {
		return tokenResponse{}, oerr
	}
	token, err := g.s.sign(client, scope, audience, nil)
	if err != nil {
		g.s.log.Error(err, "signing an access token")
		return tokenResponse{}, errSigning
	}
	return tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(client.TTL / time.Second), Scope: scope}, nil
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

// grantClaims are the claims of a token a third-party app gets through a grant.
type grantClaims struct {
	subject, workspace, grantUID, family, grantVersion string
}

// sign issues the JWT: to the client itself, or with via set, to a third-party app
// for the user who authorized it in a workspace (RFC 9068: sub is the user).
func (s *Server) sign(client *index.Client, scope string, audience jwt.Audience, via *grantClaims) (string, error) {
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
	if via != nil {
		claims.Subject = via.subject
		claims.Workspace, claims.GrantUID, claims.Family, claims.GrantVersion = via.workspace, via.grantUID, via.family, via.grantVersion
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
