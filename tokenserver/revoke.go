package tokenserver

import (
	"context"
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
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, call oauthCall) {
	params, client := call.params, call.client
	if call.authErr != nil {
		writeError(w, call.authErr)
		return
	}
	token := params.Get("token")
	if token == "" {
		writeError(w, errInvalidRequest("token is required"))
		return
	}
	// token_type_hint is only a hint (RFC 7009 §2.1): every kind of token is
	// looked for whatever it says. A family the index does not hold (a made-up
	// token, a family already ended) costs no API call: 200, nothing to do.
	workspace, family, ok := s.familyOf(token, client)
	if ok && s.thirdParty != nil {
		err := s.withIO(r, func(ctx context.Context) error {
			_, err := s.thirdParty.grants.change(ctx, workspace, latchkeyv1.GrantName(client.ClientID), string(client.Ref.UID),
				func(grant *latchkeyv1.OAuthGrant) (bool, error) {
					return dropFamily(&grant.Status, func(f latchkeyv1.RefreshFamily) bool { return f.ID == family }), nil
				})
			return err
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
			if claims, valid := ring.verifier.Verify(token, s.cfg.IssuerURL, s.clock.Now()); valid && claims.ClientID == client.ClientID && claims.GrantUID == "" {
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

// familyOf names the live refresh-token family of a refresh token of client (by
// its secret), or of a valid grant access token of client (by its claim), as far
// as memory tells: the index holds the family, or has not caught up yet with the
// write that started it.
func (s *Server) familyOf(token string, client *index.Client) (workspace, family string, ok bool) {
	if t, valid := parseRefreshToken(token); valid {
		return t.workspace, t.familyID(), s.familyLive(client, t)
	}
	ring := s.keys.current()
	if ring == nil {
		return "", "", false
	}
	now := s.clock.Now()
	claims, valid := ring.verifier.Verify(token, s.cfg.IssuerURL, now)
	if !valid || claims.ClientID != client.ClientID || claims.GrantUID == "" || claims.Family == "" {
		return "", "", false
	}
	if holder, live := s.index.AcceptToken(claims, now); !live || holder.Grant == nil {
		return "", "", false
	}
	return claims.Workspace, claims.Family, true
}
