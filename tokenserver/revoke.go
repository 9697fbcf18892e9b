package tokenserver

import (
	"net/http"
	"strings"

	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
	"github.com/latchkey-dev/latchkey/tokenserver/thirdparty"
)

// handleRevoke is the revocation endpoint (RFC 7009). A refresh token, or an access
// token a third-party app got through a grant, ends its whole family: every token
// the family issued stops being accepted at once, in one write. Tokens that are
// unknown, expired, malformed or another client's get 200 and change nothing
// (RFC 7009 §2.2), so that nothing can be learned by probing.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, call oauthCall) {
	params, client := call.params, call.client
	if call.authErr != nil {
		oauth.WriteError(w, call.authErr)
		return
	}
	token := params.Get("token")
	if token == "" {
		oauth.WriteError(w, oauth.ErrInvalidRequest("token is required"))
		return
	}
	// token_type_hint is only a hint (RFC 7009 §2.1): every kind of token is
	// looked for whatever it says.
	if s.thirdParty != nil {
		if family, oerr := s.thirdParty.Revoke(call.withAdmission(r), client, token); oerr != nil {
			oauth.WriteError(w, oerr)
			return
		} else if family {
			s.revoked(w, call)
			return
		}
	}
	if strings.Count(token, ".") == 2 && !thirdparty.IsRefreshToken(token) {
		// A valid client_credentials token of this client is not revocable one by
		// one: revoking the OAuthClient (spec.revoked) ends them all.
		if claims, valid := s.verify(token); valid && claims.ClientID == client.ClientID && claims.GrantUID == "" {
			oauth.WriteError(w, oauth.NewError(http.StatusBadRequest, "unsupported_token_type",
				"a client_credentials access token is not revoked alone; revoke or rotate the OAuthClient"))
			return
		}
	}
	s.revoked(w, call)
}

// revoked answers a revocation: 200 whatever was found (RFC 7009 §2.2).
func (s *Server) revoked(w http.ResponseWriter, call oauthCall) {
	s.usage.Used(index.KindOAuthClient, call.client.Ref, &call.client.UseNoted, call.now)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// verify checks an access token's signature and claims with the current keys.
func (s *Server) verify(token string) (*accesstoken.Claims, bool) {
	ring := s.keys.current()
	if ring == nil {
		return nil, false
	}
	return ring.verifier.Verify(token, s.cfg.IssuerURL, s.clock.Now())
}
