package thirdparty

import (
	"context"
	"errors"
	"net/http"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// Revoke ends the refresh-token family of token, a refresh token of client or an
// access token it got through a grant, in one write (RFC 7009): every token the
// family issued stops being accepted at once. It reports whether token named a
// live family of client at all; a family the index does not hold (a made-up
// token, a family already ended) is not asked about, and costs no API call.
func (s *Server) Revoke(r *http.Request, client *index.Client, token string) (bool, *oauth.Error) {
	workspace, family, ok := s.familyOf(token, client)
	if !ok {
		return false, nil
	}
	err := s.WithIO(r, func(ctx context.Context) error {
		_, _, err := change(ctx, s.grants, workspace, latchkeyv1.GrantName(client.ClientID), string(client.Ref.UID),
			func(grant *latchkeyv1.OAuthGrant) (struct{}, bool, error) {
				return struct{}{}, dropFamily(&grant.Status, func(f latchkeyv1.RefreshFamily) bool { return f.ID == family }), nil
			})
		return err
	})
	if err != nil && !errors.Is(err, errGrantGone) {
		s.Log.Error(err, "revoking a token family", "workspace", workspace, "client", client.Ref.String())
		return true, errGrantUnavailable
	}
	return true, nil
}

// familyOf names the live refresh-token family of a refresh token of client (by
// its secret), or of a valid grant access token of client (by its claim), as far
// as memory tells: the index holds the family, or has not caught up yet with the
// write that started it.
func (s *Server) familyOf(token string, client *index.Client) (workspace, family string, ok bool) {
	if t, valid := parseRefreshToken(token); valid {
		return t.workspace, t.familyID(), s.familyLive(client, t)
	}
	claims, valid := s.Verify(token)
	if !valid || claims.ClientID != client.ClientID || claims.GrantUID == "" || claims.Family == "" {
		return "", "", false
	}
	if holder, live := s.Index.AcceptToken(claims, s.Clock.Now()); !live || holder.Grant == nil {
		return "", "", false
	}
	return claims.Workspace, claims.Family, true
}

// IsRefreshToken reports whether token has the shape of a refresh token.
func IsRefreshToken(token string) bool {
	_, ok := parseRefreshToken(token)
	return ok
}
