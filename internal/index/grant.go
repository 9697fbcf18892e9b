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
}

// HasFamily reports whether a refresh-token family is still live.
func (g *Grant) HasFamily(id string) bool {
	_, ok := g.families[id]
	return ok
}

// Covers reports whether the grant already allows scopes and audiences for the
// client with uid: the consent page is then skipped.
func (g *Grant) Covers(clientUID types.UID, scopes, audiences []string) bool {
	if g.Revoked || g.ClientUID != clientUID {
		return false
	}
	for _, s := range scopes {
		if !slices.Contains(g.Scopes, s) {
			return false
		}
	}
	for _, a := range audiences {
		if !slices.Contains(g.Audiences, a) {
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
	return g
}

// UpsertGrant replaces everything known of one OAuthGrant.
func (x *Index) UpsertGrant(o *latchkeyv1.OAuthGrant) {
	g := grantFrom(o)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.grants[o.UID] = g
}

// DeleteGrant forgets an OAuthGrant: its tokens stop being accepted.
func (x *Index) DeleteGrant(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.grants, uid)
}

// ReplaceGrants makes the grants of namespace ("" for all) exactly list.
func (x *Index) ReplaceGrants(namespace string, list []*latchkeyv1.OAuthGrant) {
	fresh := make(map[types.UID]*Grant, len(list))
	for _, o := range list {
		fresh[o.UID] = grantFrom(o)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for uid, g := range x.grants {
		if namespace == "" || g.Ref.Namespace == namespace {
			delete(x.grants, uid)
		}
	}
	for uid, g := range fresh {
		x.grants[uid] = g
	}
}

// GrantIn returns the grant of the app with clientID in workspace, if any. It is
// a scan of the grants; the consent page asks it once per workspace the user may
// install into, and grants are few next to credentials.
func (x *Index) GrantIn(workspace, clientID string) (*Grant, bool) {
	name := latchkeyv1.GrantName(clientID)
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, g := range x.grants {
		if g.Ref.Namespace == workspace && g.Ref.Name == name {
			return g, true
		}
	}
	return nil, false
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

// AcceptToken returns who a verified access token acts for, if the client still
// exists with the same UID, client_id and namespace and is active at now and, for a
// third-party app's token, its grant still exists with the same UID, is not
// revoked, is the client's, and still holds the token's refresh-token family.
// Revoking or deleting either ends the token at once, wherever it is checked.
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
	g, ok := x.grants[types.UID(claims.GrantUID)]
	if !ok || g.Revoked || g.ClientUID != c.Ref.UID || g.Ref.Namespace != claims.Workspace {
		return TokenHolder{}, false
	}
	if !g.HasFamily(claims.Family) && !g.behind(claims.GrantVersion) {
		return TokenHolder{}, false
	}
	return TokenHolder{Client: c, Grant: g, Workspace: g.Ref.Namespace}, true
}

// behind reports whether the index's copy of the grant is older than version (the
// grant's resourceVersion right after the write that started a token's family).
// Then the family's absence means only that the watch has not delivered that write
// yet, not that it was revoked: a revocation is a later write still, and deleting
// the grant removes it from the index. So a token is accepted from the moment it is
// issued, without waiting for the watch, and refused as soon as its family is gone.
func (g *Grant) behind(version string) bool {
	if version == "" {
		return false
	}
	cmp, err := resourceversion.CompareResourceVersion(g.resourceVersion, version)
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
