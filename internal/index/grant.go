package index

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/accesstoken"
)

// Grant is what the index keeps of one OAuthGrant: enough to accept or refuse the
// access tokens issued under it, and to tell the consent page whether it already
// covers a request.
type Grant struct {
	Ref       Ref
	ClientUID types.UID
	ClientID  string
	Scopes    []string
	Audiences []string
	Revoked   bool
	// resourceVersion is the grant's as the watch last delivered it: a token
	// issued at a later version may name a family the index has not seen yet.
	resourceVersion string
	// families are the IDs of the live refresh-token families: an access token
	// names its family, and dies with it.
	families map[string]struct{}
	// consents are what each user approved on the consent page (status.consents,
	// which only the token server writes).
	consents map[string]latchkeyv1.Consent
}

// HasFamily reports whether a refresh-token family is still live.
func (g *Grant) HasFamily(id string) bool {
	_, ok := g.families[id]
	return ok
}

// ConsentedBy reports whether user already approved, on the consent page, the
// app with clientUID for scopes and audiences, and the grant still allows them:
// the consent page is then skipped for that user. A grant written by hand has no
// consent, whatever its spec says: consent belongs to a user, not to a workspace.
func (g *Grant) ConsentedBy(user string, clientUID types.UID, scopes, audiences []string) bool {
	if g.Revoked || g.ClientUID != clientUID {
		return false
	}
	c, ok := g.consents[user]
	return ok && subset(scopes, g.Scopes) && subset(audiences, g.Audiences) &&
		subset(scopes, c.Scopes) && subset(audiences, c.Audiences)
}

// GrantConsented is ConsentedBy for an OAuthGrant as read from the API server.
func GrantConsented(o *latchkeyv1.OAuthGrant, user string, clientUID types.UID, scopes, audiences []string) bool {
	return grantFrom(o).ConsentedBy(user, clientUID, scopes, audiences)
}

func subset(items, of []string) bool {
	for _, i := range items {
		if !slices.Contains(of, i) {
			return false
		}
	}
	return true
}

func grantFrom(o *latchkeyv1.OAuthGrant) *Grant {
	g := &Grant{
		Ref:       Ref{Namespace: o.Namespace, Name: o.Name, UID: o.UID},
		ClientUID: types.UID(o.Spec.Client.UID), ClientID: o.Spec.Client.ClientID,
		Scopes: o.Spec.Scopes, Audiences: o.Spec.Audiences, Revoked: o.Spec.Revoked,
		resourceVersion: o.ResourceVersion,
		families:        make(map[string]struct{}, len(o.Status.RefreshFamilies)),
	}
	for _, f := range o.Status.RefreshFamilies {
		g.families[f.ID] = struct{}{}
	}
	if len(o.Status.Consents) > 0 {
		g.consents = make(map[string]latchkeyv1.Consent, len(o.Status.Consents))
		for _, c := range o.Status.Consents {
			g.consents[c.User] = c
		}
	}
	return g
}

// UpsertGrant replaces everything known of one OAuthGrant.
func (x *Index) UpsertGrant(o *latchkeyv1.OAuthGrant) {
	g := grantFrom(o)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.putGrant(g)
}

// putGrant adds g, in place of any grant of the same UID or name.
func (x *Index) putGrant(g *Grant) {
	x.dropGrant(g.Ref.UID)
	if old, ok := x.grantsByName[g.Ref.String()]; ok {
		delete(x.grants, old.Ref.UID) // a grant deleted and created again under its name
	}
	x.grants[g.Ref.UID] = g
	x.grantsByName[g.Ref.String()] = g
}

func (x *Index) dropGrant(uid types.UID) {
	if g, ok := x.grants[uid]; ok {
		delete(x.grants, uid)
		if x.grantsByName[g.Ref.String()] == g {
			delete(x.grantsByName, g.Ref.String())
		}
	}
}

// DeleteGrant forgets an OAuthGrant: its tokens stop being accepted.
func (x *Index) DeleteGrant(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropGrant(uid)
}

// ReplaceGrants makes the grants of namespace ("" for all) exactly list.
func (x *Index) ReplaceGrants(namespace string, list []*latchkeyv1.OAuthGrant) {
	fresh := make([]*Grant, 0, len(list))
	for _, o := range list {
		fresh = append(fresh, grantFrom(o))
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for uid, g := range x.grants {
		if namespace == "" || g.Ref.Namespace == namespace {
			x.dropGrant(uid)
		}
	}
	for _, g := range fresh {
		x.putGrant(g)
	}
}

// Grants returns how many OAuthGrants the index holds.
func (x *Index) Grants() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.grants)
}

// GrantIn returns the grant of the app with clientID in workspace, if any.
func (x *Index) GrantIn(workspace, clientID string) (*Grant, bool) {
	name := workspace + "/" + latchkeyv1.GrantName(clientID)
	x.mu.RLock()
	defer x.mu.RUnlock()
	g, ok := x.grantsByName[name]
	return g, ok
}

// TokenHolder is who an access token acts for, as things are now.
type TokenHolder struct {
	Client *Client
	// Grant is set for a token issued through authorization_code or refresh_token.
	Grant *Grant
	// Workspace is the namespace the token acts in: the grant's for a third-party
	// app, the client's own otherwise. An API's namespaces are checked against it.
	Workspace string
}

// AllowsAudience reports whether the token may still be used at the API with this
// identifier: the client still has the audience and, for a grant's token, so does
// the grant (an administrator who removes an API from a grant ends its tokens
// there at once).
func (h TokenHolder) AllowsAudience(identifier string) bool {
	return slices.Contains(h.Client.Audiences, identifier) && (h.Grant == nil || slices.Contains(h.Grant.Audiences, identifier))
}

// ScopesStillGranted keeps the scopes of the token's scope claim that the client
// still has and, for a grant's token, that the grant still allows.
func (h TokenHolder) ScopesStillGranted(tokenScope string) string {
	scope := h.Client.ScopesStillGranted(tokenScope)
	if h.Grant == nil {
		return scope
	}
	var kept []string
	for s := range strings.SplitSeq(scope, " ") {
		if slices.Contains(h.Grant.Scopes, s) {
			kept = append(kept, s)
		}
	}
	return strings.Join(kept, " ")
}

// WatchLagWindow is how long after a write a token (or a refresh token's sealed
// hint) that names it is taken at its word while the index has not seen the
// write: long enough for a running watch to deliver it, short enough that a
// watch that has stopped (the API server out of reach, an object it cannot
// decode) does not let a revoked grant's tokens through for their lifetime.
const WatchLagWindow = 30 * time.Second

// AcceptToken returns who a verified access token acts for, if the client still
// exists with the same UID, client_id and namespace and is active at now and, for a
// third-party app's token, its grant still exists with the same UID, is not
// revoked, is the client's, and still holds the token's refresh-token family.
// Revoking or deleting either ends the token at once, wherever it is checked.
// A grant or family written after what the watch has delivered (the token's
// GrantVersion says when) is taken as the token describes it until the watch
// catches up, for WatchLagWindow after the token was issued: a token is good
// from the moment it is issued, at every replica.
func (x *Index) AcceptToken(claims *accesstoken.Claims, now time.Time) (TokenHolder, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	c, ok := x.clientByUID[types.UID(claims.ClientUID)]
	if !ok || c.ClientID != claims.ClientID || c.Ref.Namespace != claims.Namespace || !c.Active(now) {
		return TokenHolder{}, false
	}
	if claims.GrantUID == "" {
		if claims.Workspace != "" || claims.Family != "" {
			return TokenHolder{}, false
		}
		return TokenHolder{Client: c, Workspace: c.Ref.Namespace}, true
	}
	// Only a token issued a moment ago may name what the watch has not delivered.
	fresh := claims.IssuedAt != nil && now.Sub(claims.IssuedAt.Time()) <= WatchLagWindow
	g, ok := x.grants[types.UID(claims.GrantUID)]
	if !ok && fresh && x.grantsBehind(claims.Workspace, claims.GrantVersion) {
		// Issued under a grant the watch has not delivered yet (a first consent a
		// moment ago): the grant is what the token says it was at issuance until
		// then. A deletion or revocation is a later write still.
		g, ok = grantAsIssued(claims, c), true
	}
	if !ok || g.Revoked || g.ClientUID != c.Ref.UID || g.Ref.Namespace != claims.Workspace {
		return TokenHolder{}, false
	}
	if !g.HasFamily(claims.Family) && !(fresh && g.Behind(claims.GrantVersion)) {
		return TokenHolder{}, false
	}
	return TokenHolder{Client: c, Grant: g, Workspace: g.Ref.Namespace}, true
}

// GrantsSeenAt records that the OAuthGrant watch of namespace ("" for all) has
// delivered everything up to resourceVersion: its list, or an event or bookmark,
// once the index holds what it brought.
func (x *Index) GrantsSeenAt(namespace, resourceVersion string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	// Never backwards: after a relist served from a lagging API server's cache,
	// a grant newer than that list is refused (as if deleted) until the watch
	// brings it again, not taken on a token's word.
	if seen, ok := x.grantsSeenAt[namespace]; ok && olderThan(resourceVersion, seen) {
		return
	}
	x.grantsSeenAt[namespace] = resourceVersion
}

// grantsBehind reports whether the watch that delivers workspace's grants has
// not reached version yet: a grant absent from the index may then be one written
// since, not one deleted. Unknown (no watch covers the workspace, or no version)
// is not behind. Called with x.mu held.
func (x *Index) grantsBehind(workspace, version string) bool {
	if version == "" {
		return false
	}
	seen, ok := x.grantsSeenAt[workspace]
	if !ok {
		if seen, ok = x.grantsSeenAt[""]; !ok {
			return false
		}
	}
	return olderThan(seen, version)
}

// grantAsIssued is the grant a verified token of client c was issued under, as
// the token describes it: its workspace, UID, scopes and audiences (each bounded
// by the grant when the token was issued) and the token's live family.
func grantAsIssued(claims *accesstoken.Claims, c *Client) *Grant {
	return &Grant{
		Ref:       Ref{Namespace: claims.Workspace, Name: latchkeyv1.GrantName(c.ClientID), UID: types.UID(claims.GrantUID)},
		ClientUID: c.Ref.UID, ClientID: c.ClientID,
		Scopes: strings.Fields(claims.Scope), Audiences: claims.Audience,
		families: map[string]struct{}{claims.Family: {}},
	}
}

// Behind reports whether the index's copy of the grant is older than version (the
// grant's resourceVersion right after the write that started a token's family).
// Then the family's absence means only that the watch has not delivered that write
// yet, not that it was revoked: a revocation is a later write still, and deleting
// the grant removes it from the index. So a token is accepted from the moment it is
// issued, without waiting for the watch, and refused as soon as its family is gone.
func (g *Grant) Behind(version string) bool {
	return version != "" && olderThan(g.resourceVersion, version)
}

// olderThan reports whether resourceVersion a is older than b; false when they
// cannot be compared (either empty or not the API server's).
func olderThan(a, b string) bool {
	cmp, err := resourceversion.CompareResourceVersion(a, b)
	return err == nil && cmp < 0
}

// ScopeDescriptions returns the description of each scope as the served APIs with
// these identifiers (audiences) describe it: a consent page quotes the API the
// token will be for, never another namespace's catalogue.
func (x *Index) ScopeDescriptions(audiences []string) map[string]string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := map[string]string{}
	for _, aud := range audiences {
		for _, api := range x.apis.served {
			if api.Identifier != aud {
				continue
			}
			for scope, description := range api.Catalogue {
				if _, seen := out[scope]; !seen {
					out[scope] = description
				}
			}
		}
	}
	return out
}
