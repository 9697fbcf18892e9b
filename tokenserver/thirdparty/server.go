// Package thirdparty is the token server's side for third-party apps: a
// partner's app that users install into their workspaces. It signs users in at
// the upstream OpenID provider, shows the consent page, records OAuthGrants, and
// serves the authorization_code (with PKCE) and refresh_token grants and the
// revocation of refresh-token families, each answered from the watch-fed index
// until a request has proven what it presents, and then with one
// optimistic-concurrency write of the grant's status.
package thirdparty

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/seal"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// Options turn on third-party apps: authorization_code with PKCE, the consent
// page, refresh tokens and revocation.
type Options struct {
	Upstream UpstreamConfig
	// UpstreamRevalidation is how often, at most, a refresh asks the upstream
	// provider whether the user is still who signed in (with the provider's refresh
	// token); zero never does.
	UpstreamRevalidation time.Duration
	// SignInsPerMinute is each source address's budget of sign-ins (callbacks
	// from the provider), in bursts as large (default 60).
	SignInsPerMinute int
	// Clientset answers SubjectAccessReviews and watches workspaces; Writer writes
	// OAuthGrants.
	Clientset kubernetes.Interface
	Writer    client.Client
	// LoadClientSecret reads the upstream client secret when Upstream has none.
	LoadClientSecret func(context.Context) (string, error)
}

// Host is what the token server lends the flow: its index, clock and logger, its
// issuer, its sealing and signing keys, and its admission of I/O.
type Host struct {
	Index     *index.Index
	Clock     clock.PassiveClock
	Log       logr.Logger
	IssuerURL string
	// Sealer returns the sealing keys (nil before they are loaded).
	Sealer func() *seal.Ring
	// Sign signs an access token of client for the user and workspace of via.
	Sign func(client *index.Client, scope string, audience jwt.Audience, via *oauth.Via) (string, error)
	// Verify checks an access token's signature and claims (false when invalid).
	Verify func(token string) (*accesstoken.Claims, bool)
	// WithIO runs the request's API-server and upstream calls in the I/O seats.
	WithIO func(r *http.Request, fn func(context.Context) error) error
	// SourceAddr is the address a request comes from (behind trusted proxies too).
	SourceAddr func(r *http.Request) string
	// UpstreamCalls counts the calls to the provider's token endpoint.
	UpstreamCalls *prometheus.CounterVec
}

// Server is the token server's third-party side: the pages of sign-in and
// consent, the authorization_code and refresh_token grants, and the revocation
// of refresh-token families.
type Server struct {
	Host
	upstream   *upstream
	workspaces *workspaces
	// workspacesSynced reports when the watch of the workspaces has listed them:
	// the server is ready only then.
	workspacesSynced func() bool
	grants           *grantStore
	// revalidation is Options.UpstreamRevalidation.
	revalidation time.Duration
	// spentLogins are the login states and consent forms this replica has acted
	// on: each once. signIns is each source address's budget of sign-ins.
	spentLogins *spentSet
	signIns     *flowcontrol.Budget
}

// Bounds of sign-ins: the states and forms one replica remembers, and the source
// addresses whose budget it keeps.
const (
	maxSpentLogins   = 100000
	maxSignInSources = 100000
)

// Lifetimes of what the authorization_code flow hands out (RFC 9700 §4.2: codes
// live at most a minute; the login cookie a sign-in's worth).
const (
	codeLifetime  = 60 * time.Second
	loginLifetime = 10 * time.Minute
	// A refresh-token family ends RefreshIdleLifetime after its last refresh and
	// RefreshMaxLifetime after the user signed in, whatever happens (RFC 9700
	// §4.14.2): the user signs in again, and the upstream provider and RBAC are
	// asked afresh.
	RefreshIdleLifetime = 30 * 24 * time.Hour
	RefreshMaxLifetime  = 90 * 24 * time.Hour
)

// New starts discovering the upstream provider and watching the workspaces,
// until ctx ends.
func New(ctx context.Context, host Host, o Options) (*Server, error) {
	up, err := newUpstream(o.Upstream, host.Log.WithName("upstream"), host.UpstreamCalls)
	if err != nil {
		return nil, err
	}
	up.loadSecret = o.LoadClientSecret
	signInsPerMinute := o.SignInsPerMinute
	if signInsPerMinute <= 0 {
		signInsPerMinute = 60
	}
	ws, synced := newWorkspaces(ctx, o.Clientset, host.Clock.Now)
	s := &Server{Host: host, upstream: up, workspaces: ws, workspacesSynced: synced, grants: &grantStore{client: o.Writer},
		revalidation: o.UpstreamRevalidation,
		spentLogins:  newSpentSet(loginLifetime, maxSpentLogins),
		signIns:      flowcontrol.NewBudget(signInsPerMinute, time.Minute, signInsPerMinute, maxSignInSources)}
	go up.discover(ctx)
	return s, nil
}

// WorkspacesSynced reports when the watch of the workspaces has listed them.
func (s *Server) WorkspacesSynced() bool { return s.workspacesSynced() }

// Grants are the token endpoint's handlers of the flow's grant types.
func (s *Server) Grants() map[string]oauth.Grant {
	return map[string]oauth.Grant{"authorization_code": codeGrant{s}, "refresh_token": refreshGrant{s}}
}

// DisabledGrants answer the flow's grant types while third-party apps are off.
func DisabledGrants() map[string]oauth.Grant {
	return map[string]oauth.Grant{
		"authorization_code": disabledGrant{func(c *index.Client) bool { return c.AuthorizationCode }},
		"refresh_token":      disabledGrant{func(c *index.Client) bool { return c.RefreshToken }},
	}
}

// disabledGrant refuses its grant type: third-party apps are off.
type disabledGrant struct{ allowed func(*index.Client) bool }

var _ oauth.Grant = disabledGrant{}

func (g disabledGrant) Allowed(c *index.Client) bool { return g.allowed(c) }
func (disabledGrant) PublicClients() bool            { return true }
func (disabledGrant) DoesIO() bool                   { return false }
func (disabledGrant) Issue(*http.Request, *index.Client, url.Values) (oauth.TokenResponse, *oauth.Error) {
	return oauth.TokenResponse{}, errThirdPartyOff
}

// authCode is what an authorization code carries, sealed: the code is its own
// record, so issuing one writes nothing. Redeeming it writes its ID into the
// grant (once, across replicas).
type authCode struct {
	// Request is the authorization request the user approved: client, redirect
	// URI, PKCE challenge, scopes and audiences are bound to the code.
	Request   pendingRequest `json:"r"`
	ID        string         `json:"id"`
	Workspace string         `json:"ws"`
	GrantUID  string         `json:"g"`
	User      user           `json:"u"`
	Expires   int64          `json:"exp"`
	// UpstreamRefresh is the provider's refresh token of the user's sign-in, if it
	// gave one: sealed into the family the code starts.
	UpstreamRefresh string `json:"ur,omitempty"`
}

var (
	errBadCode          = oauth.NewError(http.StatusBadRequest, "invalid_grant", "the authorization code is invalid, expired or not this client's")
	errCodeReused       = oauth.NewError(http.StatusBadRequest, "invalid_grant", "the authorization code was already used; the tokens issued from it are revoked")
	errBadRefresh       = oauth.NewError(http.StatusBadRequest, "invalid_grant", "the refresh token is invalid, expired or revoked")
	errRefreshReused    = oauth.NewError(http.StatusBadRequest, "invalid_grant", "the refresh token was already used; every token of its family is revoked")
	errGrantRevoked     = oauth.NewError(http.StatusBadRequest, "invalid_grant", "the app is no longer installed in this workspace")
	errNoLongerAllowed  = oauth.NewError(http.StatusBadRequest, "invalid_grant", "the user who authorized the app may no longer install apps in this workspace")
	errThirdPartyOff    = oauth.NewError(http.StatusBadRequest, "unauthorized_client", "third-party apps are not enabled on this server")
	errGrantUnavailable = oauth.NewError(http.StatusServiceUnavailable, "temporarily_unavailable", "the grant could not be read or written; retry")
)

// codeGrant redeems a code (RFC 6749 §4.1.3, RFC 7636 §4.6).
type codeGrant struct{ s *Server }

func (codeGrant) Allowed(c *index.Client) bool { return c.AuthorizationCode }
func (codeGrant) PublicClients() bool          { return true }
func (codeGrant) DoesIO() bool                 { return true }

func (g codeGrant) Issue(r *http.Request, client *index.Client, params url.Values) (oauth.TokenResponse, *oauth.Error) {
	s := g.s
	raw := params.Get("code")
	if raw == "" {
		return oauth.TokenResponse{}, oauth.ErrInvalidRequest("code is required")
	}
	now := s.Clock.Now()
	var code authCode
	if err := s.Sealer().Open(seal.PurposeCode, raw, now, &code); err != nil ||
		code.Request.ClientUID != string(client.Ref.UID) || code.Request.ClientID != client.ClientID {
		return oauth.TokenResponse{}, errBadCode
	}
	// RFC 6749 §4.1.3: redirect_uri must be identical when it was sent to authorize.
	if sent := params.Get("redirect_uri"); (code.Request.RedirectSent || sent != "") && sent != code.Request.RedirectURI {
		return oauth.TokenResponse{}, oauth.NewError(http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
	}
	if oerr := checkVerifier(code.Request.Challenge, params.Get("code_verifier")); oerr != nil {
		return oauth.TokenResponse{}, oerr
	}
	codeID := shortHash([]byte(code.ID))
	familySecret := make([]byte, 16)
	if _, err := rand.Read(familySecret); err != nil {
		return oauth.TokenResponse{}, errGrantUnavailable
	}
	familyID := shortHash(familySecret)
	refresh := newRefreshCore(code.Workspace, familySecret, 0)
	var session string
	if code.UpstreamRefresh != "" {
		var err error
		if session, err = seal.SealWithSecret(familySecret, seal.PurposeUpstream, []byte(code.UpstreamRefresh)); err != nil {
			return oauth.TokenResponse{}, errGrantUnavailable
		}
	}
	family := latchkeyv1.RefreshFamily{ID: familyID, Code: codeID, TokenHash: tokenHash(refresh),
		Subject: code.User.Name, Groups: code.User.Groups, UpstreamSession: session}
	var grant *latchkeyv1.OAuthGrant
	var redeemed redemption
	err := s.WithIO(r, func(ctx context.Context) (err error) {
		grant, redeemed, err = change(ctx, s.grants, code.Workspace, latchkeyv1.GrantName(client.ClientID), string(client.Ref.UID),
			func(grant *latchkeyv1.OAuthGrant) (redemption, bool, error) {
				return redeem(grant, code, client, family, now)
			})
		return err
	})
	switch {
	case errors.Is(err, errGrantGone):
		return oauth.TokenResponse{}, errGrantRevoked
	case err != nil:
		s.Log.Error(err, "redeeming an authorization code", "workspace", code.Workspace, "client", client.Ref.String())
		return oauth.TokenResponse{}, errGrantUnavailable
	case redeemed.reused:
		s.Log.Info("an authorization code was presented twice; its tokens are revoked", "workspace", code.Workspace, "client", client.Ref.String())
		return oauth.TokenResponse{}, errCodeReused
	case redeemed.forgotten:
		return oauth.TokenResponse{}, errBadCode
	}
	scope := redeemed.scope
	return s.issueForFamily(client, grant, familyID, strings.Join(scope, " "), code.User.Name, s.withHint(refresh, familyID, grant))
}

// redemption is what redeeming a code did to its grant: the family started with
// scope, or the code refused as presented before (reused: the family it started
// is dropped, RFC 6749 §4.1.2) or possibly forgotten.
type redemption struct {
	scope             []string
	reused, forgotten bool
}

// redeem records code's redemption in grant, starting family (its ID, code,
// token hash, user and provider session set), or says why not. It does no I/O.
func redeem(grant *latchkeyv1.OAuthGrant, code authCode, client *index.Client, family latchkeyv1.RefreshFamily, now time.Time) (redemption, bool, error) {
	if string(grant.UID) != code.GrantUID || grant.Spec.Revoked {
		return redemption{}, false, errGrantGone
	}
	status := &grant.Status
	if slices.ContainsFunc(status.RedeemedCodes, func(c latchkeyv1.RedeemedCode) bool { return c.ID == family.Code }) {
		return redemption{reused: true}, dropFamily(status, func(f latchkeyv1.RefreshFamily) bool { return f.Code == family.Code }), nil
	}
	if redeemedCodeMayBeForgotten(status.RedeemedCodes, code.Expires, now) {
		return redemption{forgotten: true}, false, nil
	}
	scope := oauth.Intersect(oauth.Intersect(code.Request.Scope, grant.Spec.Scopes), client.Scopes)
	if len(scope) == 0 {
		return redemption{}, false, errGrantGone
	}
	stamp := metav1.NewTime(now.UTC().Truncate(time.Second))
	family.Scope, family.Audiences = strings.Join(scope, " "), oauth.Intersect(code.Request.Audiences, grant.Spec.Audiences)
	family.IssuedAt, family.RefreshedAt, family.ValidatedAt = stamp, stamp, &stamp
	status.RedeemedCodes = append(status.RedeemedCodes, latchkeyv1.RedeemedCode{ID: family.Code, ExpiresAt: metav1.Unix(code.Expires+1, 0)})
	status.RefreshFamilies = append(status.RefreshFamilies, family)
	status.LastUsedAt = &stamp
	pruneGrantStatus(status, now)
	return redemption{scope: scope}, true, nil
}

// redeemedCodeMayBeForgotten reports whether a code that expires at expires (Unix
// seconds) may be one of those pushed out of a full list of remembered
// redemptions: older than the oldest one remembered, while the list is full. Such
// a code is refused, so that no code is redeemed twice. A list that is not full
// has dropped only codes that have expired since (the oldest remembered expires
// first, and by then every code dropped before it has too).
func redeemedCodeMayBeForgotten(remembered []latchkeyv1.RedeemedCode, expires int64, now time.Time) bool {
	live := 0
	oldest := int64(math.MaxInt64)
	for _, c := range remembered {
		if now.Before(c.ExpiresAt.Time) {
			live++
			oldest = min(oldest, c.ExpiresAt.Unix())
		}
	}
	// Remembered codes expire a second after their code (ExpiresAt = exp+1).
	return live >= latchkeyv1.MaxRedeemedCodes && expires+1 < oldest
}

// issueForFamily signs the access token of a family (and hands over its refresh
// token, when the client may refresh).
func (s *Server) issueForFamily(client *index.Client, grant *latchkeyv1.OAuthGrant, familyID, scope, subject, refresh string) (oauth.TokenResponse, *oauth.Error) {
	var audiences jwt.Audience
	for _, f := range grant.Status.RefreshFamilies {
		if f.ID == familyID {
			audiences = oauth.Intersect(oauth.Intersect(f.Audiences, client.Audiences), grant.Spec.Audiences)
		}
	}
	if len(audiences) == 0 {
		return oauth.TokenResponse{}, oauth.NewError(http.StatusBadRequest, "invalid_target", "the app may no longer get tokens for any API it was granted")
	}
	token, err := s.Sign(client, scope, audiences, &oauth.Via{
		Subject: subject, Workspace: grant.Namespace, GrantUID: string(grant.UID), Family: familyID, GrantVersion: grant.ResourceVersion,
	})
	if err != nil {
		s.Log.Error(err, "signing an access token")
		return oauth.TokenResponse{}, oauth.ErrSigning
	}
	resp := oauth.TokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(client.TTL / time.Second), Scope: scope}
	if client.RefreshToken {
		resp.RefreshToken = refresh
	}
	return resp, nil
}

// stillMayInstall: the namespace is still a workspace (as listed at most
// rbacCacheTTL ago) and RBAC, asked now, still lets u install apps in it.
func (s *Server) stillMayInstall(ctx context.Context, u user, workspace string) (bool, error) {
	if ok, err := s.workspaces.isWorkspace(ctx, workspace); err != nil || !ok {
		return false, err
	}
	return s.workspaces.mayInstall(ctx, u, workspace, true)
}
