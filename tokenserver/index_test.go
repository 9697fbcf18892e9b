package tokenserver

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
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

// Two OAuthClients claiming one client_id (a restored backup, a hand-edited status)
// must make that id unusable rather than let either answer for it.
func TestIndexRefusesADuplicateClientID(t *testing.T) {
	const id = "0123456789abcdef01234567"
	x := NewIndex()
	x.upsertClient(oauthClientWithID("a", id, credential.Hash("secret-a")))
	if c, dup := x.LookupClient(id); c == nil || dup {
		t.Fatalf("one holder: got client=%v duplicate=%v", c, dup)
	}

	x.upsertClient(oauthClientWithID("b", id, credential.Hash("secret-b")))
	if c, dup := x.LookupClient(id); c != nil || !dup {
		t.Fatalf("two holders: got client=%v duplicate=%v, want no client and duplicate", c, dup)
	}

	x.deleteClient("b")
	if c, dup := x.LookupClient(id); c == nil || dup || c.ref.UID != "a" {
		t.Fatalf("after the duplicate is deleted: got client=%v duplicate=%v", c, dup)
	}
}

// An update replaces what was known of an object: a rotated-away hash is gone.
func TestIndexReplacesAnAPIKeysHashesOnUpdate(t *testing.T) {
	x := NewIndex()
	key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "k", UID: "k"}}
	old, current := credential.Hash("old"), credential.Hash("current")
	key.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: old}}
	x.upsertAPIKey(key)
	key.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: current}}
	x.upsertAPIKey(key)

	if _, ok := x.LookupAPIKey(mustDigest(t, old)); ok {
		t.Error("the replaced hash is still accepted")
	}
	if _, ok := x.LookupAPIKey(mustDigest(t, current)); !ok {
		t.Error("the current hash is not accepted")
	}
	key.Spec.Revoked = true
	x.upsertAPIKey(key)
	if hashes, _ := x.Sizes(); hashes != 0 {
		t.Errorf("a revoked key still has %d hashes", hashes)
	}
}

func mustDigest(t *testing.T, hash string) digest {
	t.Helper()
	d, ok := parseHash(hash)
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
	x := NewIndex()
	for _, k := range []*latchkeyv1.APIKey{apiKey("a", "kept"), apiKey("a", "deleted"), apiKey("b", "other")} {
		x.upsertAPIKey(k)
	}
	x.upsertClient(oauthClientWithID("gone", "0123456789abcdef01234567", credential.Hash("s1")))
	x.upsertClient(oauthClientWithID("stays", "89abcdef0123456789abcdef", credential.Hash("s2")))

	x.replaceAPIKeys("a", []*latchkeyv1.APIKey{apiKey("a", "kept"), apiKey("a", "new")})
	for uid, want := range map[string]bool{"kept": true, "new": true, "deleted": false, "other": true} {
		if _, ok := x.LookupAPIKey(mustDigest(t, credential.Hash("key-"+uid))); ok != want {
			t.Errorf("key %s: accepted=%v, want %v", uid, ok, want)
		}
	}
	x.replaceClients("", []*latchkeyv1.OAuthClient{oauthClientWithID("stays", "89abcdef0123456789abcdef", credential.Hash("s2"))})
	if c, _ := x.LookupClient("0123456789abcdef01234567"); c != nil {
		t.Error("a client missing from the relist is still known")
	}
	if c, _ := x.LookupClient("89abcdef0123456789abcdef"); c == nil {
		t.Error("a relisted client was dropped")
	}
}
