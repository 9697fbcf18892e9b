package thirdparty

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// grantStore reads and writes OAuthGrants on the API server. Every state change of
// a grant's codes and refresh tokens is one write, guarded by the resourceVersion
// read just before it (optimistic concurrency): two replicas redeeming the same code
// or refreshing the same token cannot both succeed, without any lock or database.
type grantStore struct {
	client client.Client
}

// maxWriteAttempts bounds the retries of a write that lost a race with an
// unrelated change of the same grant (another family's refresh, a status patch).
const maxWriteAttempts = 5

// errGrantGone means the grant the code or token names is gone, revoked, or now
// belongs to another object: the answer is invalid_grant.
var errGrantGone = errors.New("the app's grant in this workspace is gone or revoked")

// approve records that u installed client into workspace with scopes and
// audiences: at most one create or one update (two writes when a grant of a
// deleted client of the same client_id is still there: delete, then create).
func (gs *grantStore) approve(ctx context.Context, workspace string, c *index.Client, scopes, audiences []string, u user, now time.Time) (*latchkeyv1.OAuthGrant, error) {
	name := latchkeyv1.GrantName(c.ClientID)
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		grant := &latchkeyv1.OAuthGrant{}
		err := gs.client.Get(ctx, client.ObjectKey{Namespace: workspace, Name: name}, grant)
		switch {
		case apierrors.IsNotFound(err):
			grant = &latchkeyv1.OAuthGrant{
				ObjectMeta: metav1.ObjectMeta{Namespace: workspace, Name: name},
				Spec: latchkeyv1.OAuthGrantSpec{
					Client: latchkeyv1.GrantClientReference{Namespace: c.Ref.Namespace, Name: c.Ref.Name, ClientID: c.ClientID, UID: string(c.Ref.UID)},
					Scopes: scopes, Audiences: audiences, GrantedBy: u.Name, GrantedAt: metav1.NewTime(now.UTC().Truncate(time.Second)),
				},
			}
			err = gs.client.Create(ctx, grant)
		case err != nil:
			return nil, err
		case grant.Spec.Client.UID != string(c.Ref.UID) || grant.Spec.Revoked:
			// A grant of an app deleted and created again (same client_id, another
			// object) that the manager has not removed yet: it is not this app's. Or
			// a revoked grant: it stays revoked, and its tokens dead, so approving
			// again installs the app anew, under a new UID.
			err = gs.client.Delete(ctx, grant, client.Preconditions{UID: &grant.UID, ResourceVersion: &grant.ResourceVersion})
			if err == nil || apierrors.IsNotFound(err) {
				err = apierrors.NewConflict(latchkeyv1.GroupVersion.WithResource("oauthgrants").GroupResource(), name, errors.New("replaced"))
			}
		default:
			covered := oauth.Subset(scopes, grant.Spec.Scopes) && oauth.Subset(audiences, grant.Spec.Audiences)
			if covered {
				return grant, nil
			}
			grant.Spec.Scopes = oauth.Union(grant.Spec.Scopes, scopes)
			grant.Spec.Audiences = oauth.Union(grant.Spec.Audiences, audiences)
			grant.Spec.GrantedBy, grant.Spec.GrantedAt = u.Name, metav1.NewTime(now.UTC().Truncate(time.Second))
			err = gs.client.Update(ctx, grant)
		}
		if err == nil {
			return grant, nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("grant %s/%s kept changing under us", workspace, name)
}

// recordConsent writes into the grant's status that u approved scopes and
// audiences on the consent page (added to what u approved before): the page is
// skipped for u, and u alone, next time. Status is the token server's, so no
// tenant can write a consent for anyone.
func (gs *grantStore) recordConsent(ctx context.Context, grant *latchkeyv1.OAuthGrant, u user, scopes, audiences []string, now time.Time) error {
	stamp := metav1.NewTime(now.UTC().Truncate(time.Second))
	_, _, err := change(ctx, gs, grant.Namespace, grant.Name, grant.Spec.Client.UID, func(g *latchkeyv1.OAuthGrant) (struct{}, bool, error) {
		if g.UID != grant.UID {
			return struct{}{}, false, errGrantGone
		}
		consents := &g.Status.Consents
		i := slices.IndexFunc(*consents, func(c latchkeyv1.Consent) bool { return c.User == u.Name })
		if i < 0 {
			*consents = append(*consents, latchkeyv1.Consent{User: u.Name})
			i = len(*consents) - 1
		}
		c := &(*consents)[i]
		c.Scopes, c.Audiences, c.ApprovedAt = oauth.Union(c.Scopes, scopes), oauth.Union(c.Audiences, audiences), stamp
		if n := len(*consents) - latchkeyv1.MaxConsents; n > 0 {
			slices.SortFunc(*consents, func(a, b latchkeyv1.Consent) int { return a.ApprovedAt.Compare(b.ApprovedAt.Time) })
			*consents = (*consents)[n:]
		}
		return struct{}{}, true, nil
	})
	return err
}

// get reads the grant of the app with clientID in workspace from the API server.
func (gs *grantStore) get(ctx context.Context, workspace, clientID string) (*latchkeyv1.OAuthGrant, error) {
	grant := &latchkeyv1.OAuthGrant{}
	err := gs.client.Get(ctx, client.ObjectKey{Namespace: workspace, Name: latchkeyv1.GrantName(clientID)}, grant)
	return grant, err
}

// read reads the grant named name in workspace, if it is still the grant of the
// client with clientUID: errGrantGone otherwise.
func (gs *grantStore) read(ctx context.Context, workspace, name, clientUID string) (*latchkeyv1.OAuthGrant, error) {
	grant := &latchkeyv1.OAuthGrant{}
	if err := gs.client.Get(ctx, client.ObjectKey{Namespace: workspace, Name: name}, grant); apierrors.IsNotFound(err) {
		return nil, errGrantGone
	} else if err != nil {
		return nil, err
	}
	if grant.Spec.Client.UID != clientUID || !grant.DeletionTimestamp.IsZero() {
		return nil, errGrantGone
	}
	return grant, nil
}

// writeStatus writes grant's status, guarded by the resourceVersion it was read
// at: a conflict means that something else wrote first, and the caller reads and
// decides again.
func (gs *grantStore) writeStatus(ctx context.Context, grant *latchkeyv1.OAuthGrant) error {
	err := gs.client.Status().Update(ctx, grant)
	if apierrors.IsNotFound(err) {
		return errGrantGone
	}
	return err
}

// change reads the grant of clientUID (named name in workspace) and lets decide
// edit its status and say what happened (T), writing the result once with the
// resourceVersion read; decide returns false to write nothing. On a conflict it
// reads and decides again, on the grant as it is then: decide edits only the
// grant it is given and does no I/O.
func change[T any](ctx context.Context, gs *grantStore, workspace, name string, clientUID string, decide func(*latchkeyv1.OAuthGrant) (T, bool, error)) (*latchkeyv1.OAuthGrant, T, error) {
	var zero T
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		grant, err := gs.read(ctx, workspace, name, clientUID)
		if err != nil {
			return nil, zero, err
		}
		outcome, write, err := decide(grant)
		if err != nil || !write {
			return grant, outcome, err
		}
		if err := gs.writeStatus(ctx, grant); err == nil {
			return grant, outcome, nil
		} else if !apierrors.IsConflict(err) {
			return nil, zero, err
		}
	}
	return nil, zero, fmt.Errorf("grant %s/%s kept changing under us", workspace, name)
}

// shortHash is the public form of a secret identifier (a family's, a code's):
// the first 128 bits of its SHA-256, in hex.
func shortHash(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:16])
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// dropFamily removes the family with id (or, with byCode, the one a code started)
// and reports whether there was one.
func dropFamily(status *latchkeyv1.OAuthGrantStatus, match func(latchkeyv1.RefreshFamily) bool) bool {
	before := len(status.RefreshFamilies)
	status.RefreshFamilies = slices.DeleteFunc(status.RefreshFamilies, match)
	return len(status.RefreshFamilies) != before
}

// pruneGrantStatus forgets redeemed codes that have expired and, past the limits,
// the least recently refreshed families and the oldest codes.
func pruneGrantStatus(status *latchkeyv1.OAuthGrantStatus, now time.Time) {
	status.RedeemedCodes = slices.DeleteFunc(status.RedeemedCodes, func(c latchkeyv1.RedeemedCode) bool {
		return !now.Before(c.ExpiresAt.Time)
	})
	status.RefreshFamilies = slices.DeleteFunc(status.RefreshFamilies, func(f latchkeyv1.RefreshFamily) bool {
		return !now.Before(f.IssuedAt.Add(RefreshMaxLifetime)) || !now.Before(f.RefreshedAt.Add(RefreshIdleLifetime))
	})
	if n := len(status.RedeemedCodes) - latchkeyv1.MaxRedeemedCodes; n > 0 {
		slices.SortFunc(status.RedeemedCodes, func(a, b latchkeyv1.RedeemedCode) int { return a.ExpiresAt.Compare(b.ExpiresAt.Time) })
		status.RedeemedCodes = status.RedeemedCodes[n:]
	}
	if n := len(status.RefreshFamilies) - latchkeyv1.MaxRefreshFamilies; n > 0 {
		slices.SortFunc(status.RefreshFamilies, func(a, b latchkeyv1.RefreshFamily) int {
			return a.RefreshedAt.Compare(b.RefreshedAt.Time)
		})
		status.RefreshFamilies = status.RefreshFamilies[n:]
	}
}
