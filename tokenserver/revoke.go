package tokenserver

import (
	"errors"
	"net/http"
	"strings"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
)

// handleRevoke is the revocation endpoint (RFC 7009). A refresh token, or an access
// token a third-party app got through a grant, ends its whole family: every token
// the family issued stops being accepted at once, in one write. Tokens that are
// unknown, expired, malformed or another client's get 200 and change nothing
// (RFC 7009 §2.2), so that nothing can be learned by probing.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	params, oerr := s.readParams(w, r)
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	client, oerr := s.authenticateClient(r, params, true)
	if oerr != nil {
		writeError(w, oerr)
		return
	}
	token := params.Get("token")
	if token == "" {
		writeError(w, errInvalidRequest("token is required"))
		return
	}
	// token_type_hint is only a hint (RFC 7009 §2.1): every kind of token is
	// looked for whatever it says.
	workspace, family, ok := s.familyOf(token, client.ClientID)
	if ok && s.thirdParty != nil {
		_, err := s.thirdParty.grants.change(r.Context(), workspace, latchkeyv1.GrantName(client.ClientID), string(client.Ref.UID),
			func(grant *latchkeyv1.OAuthGrant) (bool, error) {
				return dropFamily(&grant.Status, func(f latchkeyv1.RefreshFamily) bool { return f.ID == family }), nil
			})
		if err != nil && !errors.Is(err, errGrantGone) {
			s.log.Error(err, "revoking a token family", "workspace", workspace, "client", client.Ref.String())
			writeError(w, errGrantUnavailable)
			return
		}
	} else if !ok && strings.Count(token, ".") == 2 && !strings.HasPrefix(token, refreshPrefix) {
		// A valid client_credentials token of this client is not revocable one by
		// one: revoking the OAuthClient (spec.revoked) ends them all.
		if ring := s.keys.current(); ring != nil {
			if claims, valid := ring.verifier.Verify(token, s.cfg.IssuerURL, s.clock.Now()); valid && claims.ClientID == client.ClientID {
				writeError(w, &oauthError{http.StatusBadRequest, "unsupported_token_type",
					"a client_credentials access token is not revoked alone; revoke or rotate the OAuthClient"})
				return
			}
		}
	}
	s.usage.Used(index.KindOAuthClient, client.Ref)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// familyOf names the refresh-token family of a refresh token (by its secret) or of
// a valid grant access token of clientID (by its claim).
func (s *Server) familyOf(token, clientID string) (workspace, family string, ok bool) {
	if ws, secret, _, valid := parseRefreshToken(token); valid {
		return ws, shortHash(secret), true
	}
	ring := s.keys.current()
	if ring == nil {
		return "", "", false
	}
	claims, valid := ring.verifier.Verify(token, s.cfg.IssuerURL, s.clock.Now())
	if !valid || claims.ClientID != clientID || claims.GrantUID == "" || claims.Family == "" {
		return "", "", false
	}
	return claims.Workspace, claims.Family, true
}
