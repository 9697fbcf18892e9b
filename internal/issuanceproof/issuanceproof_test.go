package issuanceproof

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func mustKey(t *testing.T, fill byte) *Key {
	t.Helper()
	k, err := ParseKey(bytes.Repeat([]byte{fill}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestProofBindsEveryField(t *testing.T) {
	key := mustKey(t, 1)
	claim := Claim{Kind: "APIKey", Namespace: "crm", Name: "billing", UID: "u-1", Serial: 3, Hash: "sha256:" + strings.Repeat("a", 64)}
	proof := key.Proof(claim)
	if !key.Verify(claim, proof) {
		t.Fatal("a proof does not verify for its own claim")
	}
	changed := map[string]func(c *Claim){
		"kind":      func(c *Claim) { c.Kind = "OAuthClient" },
		"namespace": func(c *Claim) { c.Namespace = "other" },
		"name":      func(c *Claim) { c.Name = "billing2" },
		"uid":       func(c *Claim) { c.UID = "u-2" },
		"serial":    func(c *Claim) { c.Serial = 4 },
		"hash":      func(c *Claim) { c.Hash = "sha256:" + strings.Repeat("b", 64) },
		// Fields are separated, not concatenated: moving a character across a boundary changes the claim.
		"boundary": func(c *Claim) { c.Namespace, c.Name = "crmb", "illing" },
	}
	for field, change := range changed {
		other := claim
		change(&other)
		if key.Verify(other, proof) {
			t.Errorf("a proof verifies for a claim with another %s", field)
		}
	}
	if mustKey(t, 2).Verify(claim, proof) {
		t.Error("a proof verifies under another key")
	}
	for _, bad := range []string{"", "v1", "v1." + key.ID(), "v2" + strings.TrimPrefix(proof, "v1"), proof + "A", strings.ToUpper(proof)} {
		if key.Verify(claim, bad) {
			t.Errorf("malformed proof %q verifies", bad)
		}
	}
}

func TestClientIDIsStablePerUIDAndKey(t *testing.T) {
	key := mustKey(t, 1)
	id := key.ClientID("uid-a")
	if len(id) != 24 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("client_id %q is not 24 lowercase hex digits", id)
	}
	if key.ClientID("uid-a") != id {
		t.Error("the same UID gives another client_id")
	}
	if key.ClientID("uid-b") == id {
		t.Error("two UIDs give the same client_id")
	}
	if mustKey(t, 2).ClientID("uid-a") == id {
		t.Error("another key gives the same client_id")
	}
}

func TestKeyMaterialIsNeverPrinted(t *testing.T) {
	raw, err := NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if s := key.String(); strings.Contains(s, string(raw)) || !strings.Contains(s, key.ID()) {
		t.Errorf("String() = %q", s)
	}
	if _, err := ParseKey(raw[:16]); err == nil || strings.Contains(err.Error(), string(raw[:16])) {
		t.Errorf("a short key is accepted or printed: %v", err)
	}
}
