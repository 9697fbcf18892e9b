package thirdparty

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/seal"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// Refresh tokens are "lkrt.<workspace>.<base64url(family secret | generation |
// random)>.<hint>". The workspace and the authenticated client name the grant; the
// family secret, which only refresh tokens hold (status keeps its hash), names the
// family; the generation tells a replayed token from the current one. The hint
// (sealed, a few seconds' validity) names the grant's version right after the
// write that issued the token: a token the watch has not delivered yet is told
// from a made-up one without asking the API server. The family's TokenHash is
// the hash of the token without its hint.
const refreshPrefix = "lkrt."

// refreshLagWindow is how long after it was issued a refresh token may name a
// family the index has not seen yet, as an access token may (index.AcceptToken).
const refreshLagWindow = index.WatchLagWindow

// maxRefreshTokenLength bounds what is parsed: the token, a 63-character
// workspace and the hint.
const maxRefreshTokenLength = 512

type refreshHint struct {
	Family       string `json:"f"`
	GrantVersion string `json:"v"`
}

// newRefreshCore is the hashed part of a refresh token.
func newRefreshCore(workspace string, familySecret []byte, generation int64) string {
	raw := make([]byte, 0, 40)
	raw = append(raw, familySecret...)
	raw = binary.BigEndian.AppendUint64(raw, uint64(generation))
	random := make([]byte, 16)
	_, _ = rand.Read(random)
	raw = append(raw, random...)
	return refreshPrefix + workspace + "." + base64.RawURLEncoding.EncodeToString(raw)
}

// withHint completes a refresh token written into grant: without its hint when no
// sealing key is loaded (it is then accepted once the watch delivers the write).
func (s *Server) withHint(core, familyID string, grant *latchkeyv1.OAuthGrant) string {
	now := s.Clock.Now()
	hint, err := s.Sealer().Seal(seal.PurposeRefreshHint, refreshHint{Family: familyID, GrantVersion: grant.ResourceVersion}, now, now.Add(refreshLagWindow))
	if err != nil {
		return core
	}
	return core + "." + hint
}

// refreshToken is a presented refresh token, parsed.
type refreshToken struct {
	core, hint   string
	workspace    string
	familySecret []byte
	generation   int64
}

// parseRefreshToken parses a well-formed refresh token.
func parseRefreshToken(token string) (refreshToken, bool) {
	rest, found := strings.CutPrefix(token, refreshPrefix)
	if !found || len(token) > maxRefreshTokenLength {
		return refreshToken{}, false
	}
	workspace, rest, found := strings.Cut(rest, ".")
	body, hint, _ := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if !found || err != nil || len(raw) != 40 || workspace == "" || len(workspace) > 63 {
		return refreshToken{}, false
	}
	gen := binary.BigEndian.Uint64(raw[16:24])
	if gen > 1<<62 {
		return refreshToken{}, false
	}
	return refreshToken{core: refreshPrefix + workspace + "." + body, hint: hint,
		workspace: workspace, familySecret: raw[:16], generation: int64(gen)}, true
}

func (t refreshToken) familyID() string { return shortHash(t.familySecret) }

// familyLive reports, from memory, whether a refresh token may name a live family
// of client: the index holds it in the client's grant, or the token's hint says
// it was written so recently that the index has not caught up with that write.
// Anything else — a made-up token, a family revoked or ended — is answered
// without asking the API server.
func (s *Server) familyLive(client *index.Client, t refreshToken) bool {
	familyID := t.familyID()
	g, ok := s.Index.GrantIn(t.workspace, client.ClientID)
	if ok && (g.Revoked || g.ClientUID != client.Ref.UID) {
		return false
	}
	if ok && g.HasFamily(familyID) {
		return true
	}
	var h refreshHint
	if t.hint == "" || s.Sealer().Open(seal.PurposeRefreshHint, t.hint, s.Clock.Now(), &h) != nil || h.Family != familyID {
		return false
	}
	return !ok || g.Behind(h.GrantVersion)
}

// refreshGrant rotates a refresh token (RFC 6749 §6, RFC 9700 §4.14.2): each
// use replaces it, in one write; a replaced token presented again kills its family.
type refreshGrant struct{ s *Server }

var _ oauth.Grant = refreshGrant{}

func (refreshGrant) Allowed(c *index.Client) bool { return c.RefreshToken }
func (refreshGrant) PublicClients() bool          { return true }
func (refreshGrant) DoesIO() bool                 { return true }

var (
	errUpstreamEnded     = oauth.NewError(http.StatusBadRequest, "invalid_grant", "the user's sign-in at the identity provider has ended; sign in again")
	errUpstreamNoSession = oauth.NewError(http.StatusBadRequest, "invalid_grant", "the identity provider gave no refresh token to confirm the user with; sign in again")
)

func (g refreshGrant) Issue(r *http.Request, client *index.Client, params url.Values) (oauth.TokenResponse, *oauth.Error) {
	s := g.s
	presented := params.Get("refresh_token")
	if presented == "" {
		return oauth.TokenResponse{}, oauth.ErrInvalidRequest("refresh_token is required")
	}
	token, ok := parseRefreshToken(presented)
	if !ok || !s.familyLive(client, token) {
		return oauth.TokenResponse{}, errBadRefresh
	}
	var requested []string
	if scope := params.Get("scope"); scope != "" {
		if requested, ok = oauth.ParseScope(scope); !ok {
			return oauth.TokenResponse{}, oauth.NewError(http.StatusBadRequest, "invalid_scope", "scope must be scope tokens of printable ASCII separated by spaces")
		}
	}
	var result refreshResult
	err := s.WithIO(r, func(ctx context.Context) error {
		var err error
		result, err = s.refresh(ctx, client, token, requested, s.Clock.Now())
		return err
	})
	switch {
	case errors.Is(err, errGrantGone):
		return oauth.TokenResponse{}, errBadRefresh
	case err != nil:
		s.Log.Error(err, "refreshing", "workspace", token.workspace, "client", client.Ref.String())
		return oauth.TokenResponse{}, errGrantUnavailable
	case result.refusal == errRefreshReused:
		s.Log.Info("a replaced refresh token was presented; its family is revoked", "workspace", token.workspace, "client", client.Ref.String(), "family", token.familyID())
		return oauth.TokenResponse{}, result.refusal
	case result.refusal != nil:
		return oauth.TokenResponse{}, result.refusal
	}
	scope := strings.Fields(result.family.Scope)
	if len(requested) > 0 {
		scope = requested
	}
	scope = oauth.Intersect(oauth.Intersect(scope, result.grant.Spec.Scopes), client.Scopes)
	if len(scope) == 0 {
		return oauth.TokenResponse{}, oauth.NewError(http.StatusBadRequest, "invalid_scope", "the app no longer has any of these scopes")
	}
	return s.issueForFamily(client, result.grant, token.familyID(), strings.Join(scope, " "), result.family.Subject, s.withHint(result.next, token.familyID(), result.grant))
}

// refreshResult is what a refresh did: the family as rotated (with the grant as
// written and the next token's core), or the refusal.
type refreshResult struct {
	refusal *oauth.Error
	grant   *latchkeyv1.OAuthGrant
	family  latchkeyv1.RefreshFamily
	next    string
}

// refreshCheck is what the grant, as read, says of a refresh: refused (and
// whether the refusal ends the family), or allowed for the family at index i,
// once the provider has confirmed the user (when due) and RBAC still lets them
// install apps.
type refreshCheck struct {
	refusal *oauth.Error
	drop    bool
	i       int
	// revalidate: the provider must confirm the user first (at most once per
	// interval).
	revalidate bool
}

// checkRefresh decides a refresh from the grant as read. It does no I/O.
func checkRefresh(grant *latchkeyv1.OAuthGrant, t refreshToken, presentedCore string, requested []string, now time.Time, revalidation time.Duration) refreshCheck {
	if grant.Spec.Revoked {
		return refreshCheck{refusal: errBadRefresh}
	}
	familyID := t.familyID()
	i := slices.IndexFunc(grant.Status.RefreshFamilies, func(f latchkeyv1.RefreshFamily) bool { return f.ID == familyID })
	if i < 0 {
		return refreshCheck{refusal: errBadRefresh}
	}
	f := grant.Status.RefreshFamilies[i]
	switch {
	case !now.Before(f.IssuedAt.Add(RefreshMaxLifetime)) || !now.Before(f.RefreshedAt.Add(RefreshIdleLifetime)):
		return refreshCheck{refusal: errBadRefresh} // ended; dropped with the next write of the grant
	case t.generation < f.Generation:
		return refreshCheck{refusal: errRefreshReused, drop: true}
	case t.generation != f.Generation || subtle.ConstantTimeCompare([]byte(tokenHash(presentedCore)), []byte(f.TokenHash)) != 1:
		return refreshCheck{refusal: errBadRefresh}
	case !oauth.Subset(requested, strings.Fields(f.Scope)):
		return refreshCheck{refusal: oauth.NewError(http.StatusBadRequest, "invalid_scope", "a refresh may only narrow the scope")}
	}
	validated := f.IssuedAt.Time
	if f.ValidatedAt != nil {
		validated = f.ValidatedAt.Time
	}
	return refreshCheck{i: i, revalidate: revalidation > 0 && !now.Before(validated.Add(revalidation))}
}

// refresh reads the grant, decides (checkRefresh), asks the provider and RBAC
// what they must be asked, and writes the rotated family once, guarded by the
// resourceVersion it read; on a conflict it reads and decides again, reusing the
// provider's answer. Every API-server and provider call is here, none in the
// decision.
func (s *Server) refresh(ctx context.Context, client *index.Client, t refreshToken, requested []string, now time.Time) (refreshResult, error) {
	name := latchkeyv1.GrantName(client.ClientID)
	var confirmed *user // the provider's answer, once asked
	var session string  // the provider's refresh token to keep, sealed to the family
	next := newRefreshCore(t.workspace, t.familySecret, t.generation+1)
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		grant, err := s.grants.read(ctx, t.workspace, name, string(client.Ref.UID))
		if err != nil {
			return refreshResult{}, err
		}
		check := checkRefresh(grant, t, t.core, requested, now, s.revalidation)
		if check.refusal != nil {
			if check.drop {
				dropFamily(&grant.Status, func(f latchkeyv1.RefreshFamily) bool { return f.ID == t.familyID() })
				if err := s.grants.writeStatus(ctx, grant); apierrors.IsConflict(err) {
					continue
				} else if err != nil {
					return refreshResult{}, err
				}
			}
			return refreshResult{refusal: check.refusal}, nil
		}
		f := grant.Status.RefreshFamilies[check.i]
		u := user{Name: f.Subject, Groups: f.Groups}
		if check.revalidate && confirmed == nil {
			answer, refusal, err := s.confirmUser(ctx, f, t.familySecret)
			if err != nil {
				return refreshResult{}, err
			}
			if refusal != nil { // the provider says the user is gone: the family ends
				dropFamily(&grant.Status, func(f latchkeyv1.RefreshFamily) bool { return f.ID == t.familyID() })
				if err := s.grants.writeStatus(ctx, grant); err != nil && !apierrors.IsConflict(err) {
					return refreshResult{}, err
				}
				return refreshResult{refusal: refusal}, nil
			}
			confirmed, session = &answer.user, answer.session
		}
		if confirmed != nil {
			u = *confirmed
		}
		// RBAC is asked again: a user who lost access stops renewing the app.
		if allowed, err := s.stillMayInstall(ctx, u, t.workspace); err != nil {
			return refreshResult{}, err
		} else if !allowed {
			return refreshResult{refusal: errNoLongerAllowed}, nil
		}
		rotated := &grant.Status.RefreshFamilies[check.i]
		stamp := metav1.NewTime(now.UTC().Truncate(time.Second))
		rotated.Generation++
		rotated.TokenHash, rotated.RefreshedAt = tokenHash(next), stamp
		if confirmed != nil {
			rotated.Groups, rotated.UpstreamSession, rotated.ValidatedAt = confirmed.Groups, session, &stamp
		}
		grant.Status.LastUsedAt = &stamp
		switch err := s.grants.writeStatus(ctx, grant); {
		case apierrors.IsConflict(err):
			continue
		case err != nil:
			return refreshResult{}, err
		}
		return refreshResult{grant: grant, family: *rotated, next: next}, nil
	}
	return refreshResult{}, fmt.Errorf("grant %s/%s kept changing under us", t.workspace, name)
}

// confirmation is the provider's answer for a family's user: who they are now,
// and its refresh token to keep, sealed to the family.
type confirmation struct {
	user    user
	session string
}

// confirmUser asks the provider, with the refresh token of the family's sign-in,
// whether the user is still who signed in. A refusal ends the family: the user
// is gone, is someone else, or never gave a refresh token to ask with.
func (s *Server) confirmUser(ctx context.Context, f latchkeyv1.RefreshFamily, familySecret []byte) (confirmation, *oauth.Error, error) {
	if f.UpstreamSession == "" {
		return confirmation{}, errUpstreamNoSession, nil
	}
	upstreamToken, err := seal.OpenWithSecret(familySecret, seal.PurposeUpstream, f.UpstreamSession)
	if err != nil {
		return confirmation{}, errUpstreamNoSession, nil
	}
	now, next, err := s.upstream.revalidate(ctx, string(upstreamToken))
	switch {
	case errors.Is(err, errUpstreamRefused):
		return confirmation{}, errUpstreamEnded, nil
	case err != nil:
		return confirmation{}, nil, err
	case now.Name != f.Subject:
		return confirmation{}, errUpstreamEnded, nil
	}
	session, err := seal.SealWithSecret(familySecret, seal.PurposeUpstream, []byte(next))
	if err != nil {
		return confirmation{}, nil, err
	}
	return confirmation{user: now, session: session}, nil, nil
}
