package tokenserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/seal"
)

// ThirdPartyOptions turn on third-party apps: authorization_code with PKCE, the
// consent page, refresh tokens and revocation.
type ThirdPartyOptions struct {
	Upstream UpstreamConfig
	// UpstreamRevalidation is how often, at most, a refresh asks the upstream
	// provider whether the user is still who signed in (with the provider's refresh
	// token); zero never does.
	UpstreamRevalidation time.Duration
	// SignInsPerMinute is each source address's budget of sign-ins (callbacks
	// from the provider), in bursts as large (default 60).
	SignInsPerMinute int
	// Clientset answers SubjectAccessReviews and lists workspaces; Writer writes
	// OAuthGrants.
	Clientset kubernetes.Interface
	Writer    client.Client
	// LoadClientSecret reads the upstream client secret when Upstream has none.
	LoadClientSecret func(context.Context) (string, error)
}

// thirdParty is the server's authorization_code side.
type thirdParty struct {
	upstream   *upstream
	workspaces *workspaces
	// workspacesSynced reports when the watch of the workspaces has listed them:
	// the server is ready only then.
	workspacesSynced func() bool
	grants           *grantStore
	// revalidation is ThirdPartyOptions.UpstreamRevalidation.
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

// EnableThirdPartyApps starts discovering the upstream provider and serves the
// authorization_code flow.
func (s *Server) EnableThirdPartyApps(ctx context.Context, o ThirdPartyOptions) error {
	up, err := newUpstream(o.Upstream, s.log.WithName("upstream"), s.metrics.upstreamCalls)
	if err != nil {
		return err
	}
	up.loadSecret = o.LoadClientSecret
	signInsPerMinute := o.SignInsPerMinute
	if signInsPerMinute <= 0 {
		signInsPerMinute = 60
	}
	ws, synced := newWorkspaces(ctx, o.Clientset, s.clock.Now)
	s.thirdParty = &thirdParty{upstream: up, workspaces: ws, workspacesSynced: synced, grants: &grantStore{client: o.Writer},
		revalidation: o.UpstreamRevalidation,
		spentLogins:  newSpentSet(loginLifetime, maxSpentLogins),
		signIns:      flowcontrol.NewBudget(signInsPerMinute, time.Minute, signInsPerMinute, maxSignInSources)}
	go up.discover(ctx)
	if err := s.renderMetadata(); err != nil {
		return err
	}
	return nil
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
	errBadCode          = &oauthError{http.StatusBadRequest, "invalid_grant", "the authorization code is invalid, expired or not this client's"}
	errCodeReused       = &oauthError{http.StatusBadRequest, "invalid_grant", "the authorization code was already used; the tokens issued from it are revoked"}
	errBadRefresh       = &oauthError{http.StatusBadRequest, "invalid_grant", "the refresh token is invalid, expired or revoked"}
	errRefreshReused    = &oauthError{http.StatusBadRequest, "invalid_grant", "the refresh token was already used; every token of its family is revoked"}
	errGrantRevoked     = &oauthError{http.StatusBadRequest, "invalid_grant", "the app is no longer installed in this workspace"}
	errNoLongerAllowed  = &oauthError{http.StatusBadRequest, "invalid_grant", "the user who authorized the app may no longer install apps in this workspace"}
	errThirdPartyOff    = &oauthError{http.StatusBadRequest, "unauthorized_client", "third-party apps are not enabled on this server"}
	errGrantUnavailable = &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", "the grant could not be read or written; retry"}
)

// authorizationCodeGrant redeems a code (RFC 6749 §4.1.3, RFC 7636 §4.6).
type authorizationCodeGrant struct{ s *Server }

func (authorizationCodeGrant) allowed(c *index.Client) bool { return c.AuthorizationCode }
func (authorizationCodeGrant) publicClients() bool          { return true }

func (g authorizationCodeGrant) issue(r *http.Request, client *index.Client, params url.Values) (tokenResponse, *oauthError) {
	s, tp := g.s, g.s.thirdParty
	if tp == nil {
		return tokenResponse{}, errThirdPartyOff
	}
	raw := params.Get("code")
	if raw == "" {
		return tokenResponse{}, errInvalidRequest("code is required")
	}
	now := s.clock.Now()
	var code authCode
	if err := s.keys.sealer().Open(seal.PurposeCode, raw, now, &code); err != nil ||
		code.Request.ClientUID != string(client.Ref.UID) || code.Request.ClientID != client.ClientID {
		return tokenResponse{}, errBadCode
	}
	// RFC 6749 §4.1.3: redirect_uri must be identical when it was sent to authorize.
	if sent := params.Get("redirect_uri"); (code.Request.RedirectSent || sent != "") && sent != code.Request.RedirectURI {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request"}
	}
	if oerr := checkVerifier(code.Request.Challenge, params.Get("code_verifier")); oerr != nil {
		return tokenResponse{}, oerr
	}
	codeID := shortHash([]byte(code.ID))
	familySecret := make([]byte, 16)
	if _, err := rand.Read(familySecret); err != nil {
		return tokenResponse{}, errGrantUnavailable
	}
	familyID := shortHash(familySecret)
	refresh := newRefreshCore(code.Workspace, familySecret, 0)
	var session string
	if code.UpstreamRefresh != "" {
		var err error
		if session, err = seal.SealWithSecret(familySecret, seal.PurposeUpstream, []byte(code.UpstreamRefresh)); err != nil {
			return tokenResponse{}, errGrantUnavailable
		}
	}
	var scope []string
	reused, forgotten := false, false
	var grant *latchkeyv1.OAuthGrant
	err := s.withIO(r, func(ctx context.Context) (err error) {
		grant, err = tp.grants.change(ctx, code.Workspace, latchkeyv1.GrantName(client.ClientID), string(client.Ref.UID),
			func(grant *latchkeyv1.OAuthGrant) (bool, error) {
				if string(grant.UID) != code.GrantUID || grant.Spec.Revoked {
					return false, errGrantGone
				}
				status := &grant.Status
				if slices.ContainsFunc(status.RedeemedCodes, func(c latchkeyv1.RedeemedCode) bool { return c.ID == codeID }) {
					reused = true // RFC 6749 §4.1.2: revoke what the code gave
					return dropFamily(status, func(f latchkeyv1.RefreshFamily) bool { return f.Code == codeID }), nil
				}
				if redeemedCodeMayBeForgotten(status.RedeemedCodes, code.Expires, now) {
					forgotten = true
					return false, nil
				}
				scope = intersect(intersect(code.Request.Scope, grant.Spec.Scopes), client.Scopes)
				if len(scope) == 0 {
					return false, errGrantGone
				}
				stamp := metav1.NewTime(now.UTC().Truncate(time.Second))
				status.RedeemedCodes = append(status.RedeemedCodes, latchkeyv1.RedeemedCode{ID: codeID, ExpiresAt: metav1.Unix(code.Expires+1, 0)})
				status.RefreshFamilies = append(status.RefreshFamilies, latchkeyv1.RefreshFamily{
					ID: familyID, Code: codeID, TokenHash: tokenHash(refresh), Subject: code.User.Name, Groups: code.User.Groups,
					Scope: strings.Join(scope, " "), Audiences: intersect(code.Request.Audiences, grant.Spec.Audiences), IssuedAt: stamp, RefreshedAt: stamp,
					UpstreamSession: session, ValidatedAt: &stamp,
				})
				status.LastUsedAt = &stamp
				pruneGrantStatus(status, now)
				return true, nil
			})
		return err
	})
	switch {
	case errors.Is(err, errGrantGone):
		return tokenResponse{}, errGrantRevoked
	case err != nil:
		s.log.Error(err, "redeeming an authorization code", "workspace", code.Workspace, "client", client.Ref.String())
		return tokenResponse{}, errGrantUnavailable
	case reused:
		s.log.Info("an authorization code was presented twice; its tokens are revoked", "workspace", code.Workspace, "client", client.Ref.String())
		return tokenResponse{}, errCodeReused
	case forgotten:
		return tokenResponse{}, errBadCode
	}
	return s.issueForFamily(client, grant, familyID, strings.Join(scope, " "), code.User.Name, s.withHint(refresh, familyID, grant))
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
func (s *Server) issueForFamily(client *index.Client, grant *latchkeyv1.OAuthGrant, familyID, scope, subject, refresh string) (tokenResponse, *oauthError) {
	var audiences jwt.Audience
	for _, f := range grant.Status.RefreshFamilies {
		if f.ID == familyID {
			audiences = intersect(intersect(f.Audiences, client.Audiences), grant.Spec.Audiences)
		}
	}
	if len(audiences) == 0 {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_target", "the app may no longer get tokens for any API it was granted"}
	}
	token, err := s.sign(client, scope, audiences, &grantClaims{
		subject: subject, workspace: grant.Namespace, grantUID: string(grant.UID), family: familyID, grantVersion: grant.ResourceVersion,
	})
	if err != nil {
		s.log.Error(err, "signing an access token")
		return tokenResponse{}, errSigning
	}
	resp := tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(client.TTL / time.Second), Scope: scope}
	if client.RefreshToken {
		resp.RefreshToken = refresh
	}
	return resp, nil
}

// checkVerifier applies PKCE (RFC 7636 §4.6, S256 only). A verifier sent for a code
// issued without a challenge is refused too (RFC 9700 §2.1.1: a downgrade).
func checkVerifier(challenge, verifier string) *oauthError {
	switch {
	case challenge == "" && verifier == "":
		return nil
	case challenge == "":
		return &oauthError{http.StatusBadRequest, "invalid_grant", "code_verifier sent for a code issued without code_challenge"}
	case verifier == "":
		return errInvalidRequest("code_verifier is required")
	case !pkceValue(verifier):
		return errInvalidRequest("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) != 1 {
		return &oauthError{http.StatusBadRequest, "invalid_grant", "code_verifier does not match code_challenge"}
	}
	return nil
}

// pkceValue reports whether v is a valid code_verifier or S256 code_challenge
// (RFC 7636 §4.1: 43-128 unreserved characters).
func pkceValue(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// stillMayInstall: the namespace is still a workspace (as listed at most
// rbacCacheTTL ago) and RBAC, asked now, still lets u install apps in it.
func (tp *thirdParty) stillMayInstall(ctx context.Context, u user, workspace string) (bool, error) {
	if ok, err := tp.workspaces.isWorkspace(ctx, workspace); err != nil || !ok {
		return false, err
	}
	return tp.workspaces.mayInstall(ctx, u, workspace, true)
}
