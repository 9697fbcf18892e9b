package tokenserver

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
	"github.com/latchkey-dev/latchkey/tokenserver/thirdparty"
)

// grants are the grant types the token endpoint serves: client_credentials here,
// the third-party flow's where it is on.
func (s *Server) grants() map[string]oauth.Grant {
	grants := thirdparty.DisabledGrants()
	if s.thirdParty != nil {
		grants = s.thirdParty.Grants()
	}
	grants["client_credentials"] = clientCredentialsGrant{s}
	return grants
}

// handleToken is the token endpoint (RFC 6749 §3.2).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, call oauthCall) {
	params := call.params
	grantType := params.Get("grant_type")
	if grantType == "" {
		oauth.WriteError(w, oauth.ErrInvalidRequest("grant_type is required"))
		return
	}
	grant, known := s.tokenGrants[grantType]
	client := call.client
	switch {
	case call.authErr != nil:
		oauth.WriteError(w, call.authErr)
		return
	case client.Public && !(known && grant.PublicClients()):
		oauth.WriteError(w, oauth.ErrInvalidClient) // as for a wrong secret: public clients are not served here
		return
	}
	if !known {
		oauth.WriteError(w, oauth.NewError(http.StatusBadRequest, "unsupported_grant_type", "grant_type "+grantType+" is not supported"))
		return
	}
	if !grant.Allowed(client) {
		oauth.WriteError(w, oauth.NewError(http.StatusBadRequest, "unauthorized_client", "this client may not use the "+grantType+" grant"))
		return
	}
	if grant.DoesIO() {
		r = call.withAdmission(r)
	}
	resp, oerr := grant.Issue(r, client, params)
	if oerr == nil && grant.DoesIO() {
		// The grant waited for an I/O seat and the API server (up to IOTimeout
		// each): a client revoked, expired or rotated out meanwhile gets nothing.
		// What the grant wrote stays (a code redeemed: the app starts over).
		call.now = s.clock.Now()
		client, _, oerr = s.authenticatedAgain(r, call)
	}
	if oerr != nil {
		oauth.WriteError(w, oerr)
		return
	}
	s.usage.Used(index.KindOAuthClient, client.Ref, &client.UseNoted, call.now)
	oauth.WriteAppended(w, http.StatusOK, resp)
}

// clientCredentialsGrant: a client acting for itself (RFC 6749 §4.4).
type clientCredentialsGrant struct{ s *Server }

var _ oauth.Grant = clientCredentialsGrant{}

func (clientCredentialsGrant) Allowed(c *index.Client) bool { return c.ClientCredentials && !c.Public }
func (clientCredentialsGrant) PublicClients() bool          { return false }
func (clientCredentialsGrant) DoesIO() bool                 { return false }

func (g clientCredentialsGrant) Issue(_ *http.Request, client *index.Client, params url.Values) (oauth.TokenResponse, *oauth.Error) {
	scope, oerr := grantedScope(client, params.Get("scope"))
	if oerr != nil {
		return oauth.TokenResponse{}, oerr
	}
	audience, oerr := grantedAudience(client, params)
	if oerr != nil {
		return oauth.TokenResponse{}, oerr
	}
	token, err := g.s.sign(client, scope, audience, nil)
	if err != nil {
		g.s.log.Error(err, "signing an access token")
		return oauth.TokenResponse{}, oauth.ErrSigning
	}
	return oauth.TokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(client.TTL / time.Second), Scope: scope}, nil
}

// grantedScope is the requested scope if every part is allowed, or all the client's scopes.
func grantedScope(client *index.Client, requested string) (string, *oauth.Error) {
	if requested == "" {
		return strings.Join(client.Scopes, " "), nil
	}
	parts, ok := oauth.ParseScope(requested)
	if !ok {
		return "", oauth.NewError(http.StatusBadRequest, "invalid_scope", "scope must be scope tokens of printable ASCII separated by spaces")
	}
	for _, p := range parts {
		if !slices.Contains(client.Scopes, p) {
			return "", oauth.NewError(http.StatusBadRequest, "invalid_scope", "scope "+p+" is not allowed for this client")
		}
	}
	return strings.Join(parts, " "), nil
}

// grantedAudience is the requested audience (RFC 8707 "resource", or "audience") if
// allowed, or the client's first audience.
func grantedAudience(client *index.Client, form url.Values) (jwt.Audience, *oauth.Error) {
	requested := append(append([]string{}, form["resource"]...), form["audience"]...)
	if len(requested) == 0 {
		if len(client.Audiences) == 0 {
			return nil, oauth.NewError(http.StatusBadRequest, "invalid_target", "the client has no audience")
		}
		return jwt.Audience{client.Audiences[0]}, nil
	}
	var aud jwt.Audience
	for _, a := range requested {
		if !slices.Contains(client.Audiences, a) {
			return nil, oauth.NewError(http.StatusBadRequest, "invalid_target", "audience "+a+" is not allowed for this client")
		}
		if !slices.Contains(aud, a) {
			aud = append(aud, a)
		}
	}
	return aud, nil
}

// sign issues the JWT: to the client itself, or with via set, to a third-party app
// for the user who authorized it in a workspace (RFC 9068: sub is the user).
func (s *Server) sign(client *index.Client, scope string, audience jwt.Audience, via *oauth.Via) (string, error) {
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
		claims.Subject = via.Subject
		claims.Workspace, claims.GrantUID, claims.Family, claims.GrantVersion = via.Workspace, via.GrantUID, via.Family, via.GrantVersion
	}
	// Written once and signed directly: jwt.Signed's builder marshals the claims,
	// decodes them into a map to merge and marshals again, which doubled the cost of
	// an ES256 or EdDSA token (BenchmarkTokenEndpoint); AppendJSON writes what
	// json.Marshal would, without reflection.
	return signer.sign(claims.AppendJSON(make([]byte, 0, 512)))
}
