package index

import (
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/accesstoken"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

func oauthClientWithID(uid, clientID, secretHash string) *latchkeyv1.OAuthClient {
	return &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: string(uid), UID: types.UID(uid)},
		Status: latchkeyv1.OAuthClientStatus{
			ClientID:         clientID,
			CredentialStatus: latchkeyv1.CredentialStatus{Credentials: []latchkeyv1.CredentialHash{{Hash: secretHash}}},
		},
	}
}

// countingLog counts the lines logged to it.
func countingLog(lines *[]string) logr.Logger {
	return funcr.New(func(prefix, args string) { *lines = append(*lines, args) }, funcr.Options{})
}

// Two OAuthClients claiming one client_id (a restored backup, a hand-edited status)
// must make that id unusable rather than let either answer for it, and say so once.
func TestIndexRefusesADuplicateClientID(t *testing.T) {
	const id = "0123456789abcdef01234567"
	var lines []string
	x := NewIndex(countingLog(&lines))
	x.UpsertClient(oauthClientWithID("a", id, credential.Hash("secret-a")))
	if c, ok := x.LookupClient(id); !ok || c.Ref.UID != "a" {
		t.Fatalf("one holder: got client=%v", c)
	}

	x.UpsertClient(oauthClientWithID("b", id, credential.Hash("secret-b")))
	for range 3 { // updates and lookups of a known duplicate log nothing more
		x.UpsertClient(oauthClientWithID("b", id, credential.Hash("secret-b")))
		if c, ok := x.LookupClient(id); ok {
			t.Fatalf("two holders: got client=%v, want none", c)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], id) {
		t.Errorf("want one log line naming the client_id, got %q", lines)
	}
	if _, clientIDs := x.Duplicates(); clientIDs != 1 {
		t.Errorf("Duplicates() counts %d client_ids, want 1", clientIDs)
	}

	// The manager withdraws the younger holder's secret: the older one answers again.
	withdrawn := oauthClientWithID("b", id, "")
	withdrawn.Status.Credentials = nil
	x.UpsertClient(withdrawn)
	if c, ok := x.LookupClient(id); !ok || c.Ref.UID != "a" {
		t.Fatalf("after the duplicate's secret is withdrawn: got client=%v", c)
	}
	x.UpsertClient(oauthClientWithID("b", id, credential.Hash("secret-b")))
	x.DeleteClient("b")
	if c, ok := x.LookupClient(id); !ok || c.Ref.UID != "a" {
		t.Fatalf("after the duplicate is deleted: got client=%v", c)
	}
}

// Two APIKeys accepting one hash: neither is answered for, the claim never flips to
// whichever wrote last, and the one left once the other is gone answers again.
func TestIndexRefusesAContestedAPIKeyHash(t *testing.T) {
	var lines []string
	x := NewIndex(countingLog(&lines))
	shared, own := credential.Hash("shared"), credential.Hash("own")
	victim := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "victim", Name: "k", UID: "v"}}
	victim.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: shared}}
	shadow := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "attacker", Name: "k", UID: "s"}}
	shadow.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: shared}, {Hash: own}}

	x.UpsertAPIKey(victim)
	x.UpsertAPIKey(shadow)
	for _, order := range [][]*latchkeyv1.APIKey{{victim}, {shadow}, {victim, shadow}} {
		for _, k := range order {
			x.UpsertAPIKey(k)
		}
		if k, ok := x.LookupAPIKey(mustDigest(t, shared)); ok {
			t.Fatalf("a contested hash is answered for, by %s", k.Ref)
		}
	}
	if k, ok := x.LookupAPIKey(mustDigest(t, own)); !ok || k.Ref.UID != "s" {
		t.Errorf("an uncontested hash of the same APIKey is not answered for")
	}
	if hashes, _ := x.Duplicates(); hashes != 1 {
		t.Errorf("Duplicates() counts %d hashes, want 1", hashes)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], credential.KeyID(shared)) || strings.Contains(lines[0], shared) {
		t.Errorf("want one log line naming the key ID (never the hash), got %q", lines)
	}

	// A relist that no longer has the shadow drops it, although its first hash is
	// contested (not among the answered hashes).
	shadow.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: shared}}
	x.UpsertAPIKey(shadow)
	x.ReplaceAPIKeys("attacker", nil)
	if k, ok := x.LookupAPIKey(mustDigest(t, shared)); !ok || k.Ref.UID != "v" {
		t.Fatalf("once the shadow is gone the victim's key is not answered for: %v", k)
	}
	if hashes, _ := x.Duplicates(); hashes != 0 {
		t.Errorf("Duplicates() counts %d hashes after the shadow is gone", hashes)
	}
}

// An update replaces what was known of an object: a rotated-away hash is gone.
func TestIndexReplacesAnAPIKeysHashesOnUpdate(t *testing.T) {
	x := NewIndex(logr.Discard())
	key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "k", UID: "k"}}
	old, current := credential.Hash("old"), credential.Hash("current")
	key.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: old}}
	x.UpsertAPIKey(key)
	key.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: current}}
	x.UpsertAPIKey(key)

	if _, ok := x.LookupAPIKey(mustDigest(t, old)); ok {
		t.Error("the replaced hash is still accepted")
	}
	entry, ok := x.LookupAPIKey(mustDigest(t, current))
	if !ok {
		t.Fatal("the current hash is not accepted")
	}
	if entry.Subject != "apikey:ns/k" || entry.Ref.Namespace != "ns" || entry.Ref.Name != "k" {
		t.Errorf("subject %q, namespace %q, name %q; want apikey:ns/k, ns, k", entry.Subject, entry.Ref.Namespace, entry.Ref.Name)
	}
	key.Spec.Revoked = true
	x.UpsertAPIKey(key)
	if hashes, _ := x.Sizes(); hashes != 0 {
		t.Errorf("a revoked key still has %d hashes", hashes)
	}
}

func mustDigest(t *testing.T, hash string) Digest {
	t.Helper()
	d, ok := ParseHash(hash)
	if !ok {
		t.Fatalf("bad hash %q", hash)
	}
	return d
}

// A relist (the Reflector's Replace) drops what is no longer there, in the relisted
// namespace only, and keeps what is.
func TestIndexReplaceDropsWhatARelistNoLongerHas(t *testing.T) {
	apiKey := func(ns, uid string) *latchkeyv1.APIKey {
		return &latchkeyv1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: uid, UID: types.UID(uid)},
			Status: latchkeyv1.APIKeyStatus{CredentialStatus: latchkeyv1.CredentialStatus{
				Credentials: []latchkeyv1.CredentialHash{{Hash: credential.Hash("key-" + uid)}}}},
		}
	}
	x := NewIndex(logr.Discard())
	for _, k := range []*latchkeyv1.APIKey{apiKey("a", "kept"), apiKey("a", "deleted"), apiKey("b", "other")} {
		x.UpsertAPIKey(k)
	}
	x.UpsertClient(oauthClientWithID("gone", "0123456789abcdef01234567", credential.Hash("s1")))
	x.UpsertClient(oauthClientWithID("stays", "89abcdef0123456789abcdef", credential.Hash("s2")))

	x.ReplaceAPIKeys("a", []*latchkeyv1.APIKey{apiKey("a", "kept"), apiKey("a", "new")})
	for uid, want := range map[string]bool{"kept": true, "new": true, "deleted": false, "other": true} {
		if _, ok := x.LookupAPIKey(mustDigest(t, credential.Hash("key-"+uid))); ok != want {
			t.Errorf("key %s: accepted=%v, want %v", uid, ok, want)
		}
	}
	x.ReplaceClients("", []*latchkeyv1.OAuthClient{oauthClientWithID("stays", "89abcdef0123456789abcdef", credential.Hash("s2"))})
	if c, _ := x.LookupClient("0123456789abcdef01234567"); c != nil {
		t.Error("a client missing from the relist is still known")
	}
	if c, _ := x.LookupClient("89abcdef0123456789abcdef"); c == nil {
		t.Error("a relisted client was dropped")
	}
}

// A grant's token is accepted while its family is live, and also before the watch
// has delivered the write that started the family (the token names that version),
// but not once the index has seen a version at or past it without the family.
func TestAcceptTokenOfAGrantFollowsItsFamily(t *testing.T) {
	x := NewIndex(logr.Discard())
	client := &latchkeyv1.OAuthClient{Spec: latchkeyv1.OAuthClientSpec{ClientType: latchkeyv1.ClientPublic,
		GrantTypes: []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}, Scopes: []string{"leads:read"}, Audiences: []string{"api"}}}
	client.Namespace, client.Name, client.UID, client.Status.ClientID = "partners", "crm", "client-uid", "0123456789abcdef01234567"
	x.UpsertClient(client)
	grant := &latchkeyv1.OAuthGrant{Spec: latchkeyv1.OAuthGrantSpec{Scopes: []string{"leads:read"}, Audiences: []string{"api"},
		Client: latchkeyv1.GrantClientReference{Namespace: "partners", Name: "crm", ClientID: client.Status.ClientID, UID: "client-uid"}}}
	grant.Namespace, grant.Name, grant.UID, grant.ResourceVersion = "acme", "app-x", "grant-uid", "100"
	x.UpsertGrant(grant)
	claims := &accesstoken.Claims{ClientID: client.Status.ClientID, Namespace: "partners", ClientUID: "client-uid",
		Workspace: "acme", GrantUID: "grant-uid", Family: "f1", GrantVersion: "105"}
	now := time.Now()
	claims.IssuedAt = jwt.NewNumericDate(now)
	if h, ok := x.AcceptToken(claims, now); !ok || h.Workspace != "acme" {
		t.Fatal("a token newer than the index's grant is refused before the watch delivers its family")
	}
	if _, ok := x.AcceptToken(claims, now.Add(WatchLagWindow+time.Second)); ok {
		t.Fatal("a family the watch has not delivered is taken on the word of a token issued longer ago than the watch's lag")
	}
	grant.ResourceVersion = "105"
	x.UpsertGrant(grant)
	if _, ok := x.AcceptToken(claims, now); ok {
		t.Fatal("a family the index has seen the grant without is accepted")
	}
	grant.Status.RefreshFamilies = []latchkeyv1.RefreshFamily{{ID: "f1"}}
	grant.ResourceVersion = "106"
	x.UpsertGrant(grant)
	if _, ok := x.AcceptToken(claims, now); !ok {
		t.Fatal("a live family's token is refused")
	}
	grant.Spec.Revoked = true
	x.UpsertGrant(grant)
	if _, ok := x.AcceptToken(claims, now); ok {
		t.Fatal("a revoked grant's token is accepted")
	}
	x.DeleteGrant("grant-uid")
	claims.GrantVersion = "999"
	if _, ok := x.AcceptToken(claims, now); ok {
		t.Fatal("a deleted grant's token is accepted")
	}
}

// A token issued under a grant the watch has not delivered yet (the consent that
// created the grant was a moment ago) is accepted as the token describes the
// grant, while the watch of its workspace's grants is behind the token's version;
// once the watch is at or past it, a grant still absent was deleted since.
func TestAcceptTokenOfAGrantNotDeliveredYet(t *testing.T) {
	x := NewIndex(logr.Discard())
	client := &latchkeyv1.OAuthClient{Spec: latchkeyv1.OAuthClientSpec{ClientType: latchkeyv1.ClientPublic,
		GrantTypes: []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}, Scopes: []string{"leads:read", "leads:write"}, Audiences: []string{"api", "other"}}}
	client.Namespace, client.Name, client.UID, client.Status.ClientID = "partners", "crm", "client-uid", "0123456789abcdef01234567"
	x.UpsertClient(client)
	claims := &accesstoken.Claims{ClientID: client.Status.ClientID, Namespace: "partners", ClientUID: "client-uid", Scope: "leads:read",
		Workspace: "acme", GrantUID: "grant-uid", Family: "f1", GrantVersion: "105"}
	claims.Audience = []string{"api"}
	now := time.Now()
	claims.IssuedAt = jwt.NewNumericDate(now)
	if _, ok := x.AcceptToken(claims, now); ok {
		t.Fatal("accepted with no watch of the workspace's grants to say it is behind")
	}

	x.GrantsSeenAt("", "100")
	h, ok := x.AcceptToken(claims, now)
	if !ok {
		t.Fatal("a token of a grant written after what the watch has delivered is refused")
	}
	if h.Workspace != "acme" || h.Grant == nil || h.Grant.Ref.Name != latchkeyv1.GrantName(client.Status.ClientID) || h.Grant.Ref.UID != "grant-uid" {
		t.Fatalf("holder %+v: not the grant the token names", h)
	}
	if !h.AllowsAudience("api") || h.AllowsAudience("other") {
		t.Error("the audiences are not the token's: the grant bounded them when it was issued")
	}
	if got := h.ScopesStillGranted("leads:read leads:write"); got != "leads:read" {
		t.Errorf("scopes still granted %q, want the token's leads:read", got)
	}
	if _, ok := x.AcceptToken(claims, now.Add(WatchLagWindow+time.Second)); ok {
		t.Fatal("taken at its word longer than the watch's lag: a watch that stopped would let it through for its lifetime")
	}

	x.GrantsSeenAt("", "105")
	if _, ok := x.AcceptToken(claims, now); ok {
		t.Fatal("accepted once the watch is past the token's version without the grant (deleted since)")
	}

	scoped := NewIndex(logr.Discard())
	scoped.UpsertClient(client)
	scoped.GrantsSeenAt("elsewhere", "100")
	if _, ok := scoped.AcceptToken(claims, now); ok {
		t.Fatal("accepted on the word of a watch of another namespace")
	}
	scoped.GrantsSeenAt("acme", "104")
	if _, ok := scoped.AcceptToken(claims, now); !ok {
		t.Fatal("refused while the workspace's own watch is behind")
	}
	claims.GrantVersion = ""
	if _, ok := scoped.AcceptToken(claims, now); ok {
		t.Fatal("a token without a grant version is accepted without its grant")
	}
}
