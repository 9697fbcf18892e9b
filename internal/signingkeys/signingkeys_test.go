package signingkeys

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

var policy = Policy{Algorithms: []string{ES256, EdDSA}, RotationInterval: 30 * 24 * time.Hour, MaxTokenLifetime: 24 * time.Hour,
	SealingRotation: 30 * 24 * time.Hour}

func TestReconcileCreatesActiveAndNextKeys(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	set, wake, err := Reconcile(Set{}, policy, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range policy.Algorithms {
		active, ok := set.Active(alg, now)
		if !ok {
			t.Fatalf("no active %s key", alg)
		}
		next, ok := set.Active(alg, active.RetiresAt)
		if !ok || next.KID == active.KID {
			t.Fatalf("no next %s key ready when the active one retires", alg)
		}
		if next.CreatedAt.After(active.RetiresAt.Add(-policy.RotationInterval)) {
			t.Fatalf("next key published too late: %v", next.CreatedAt)
		}
	}
	if len(set.Keys) != 4 {
		t.Fatalf("%d keys, want 4", len(set.Keys))
	}
	if !wake.Equal(now.Add(policy.RotationInterval)) {
		t.Fatalf("wake at %v, want when the next key activates", wake)
	}
}

func TestReconcileIsStableAndRotatesOnSchedule(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	set, _, _ := Reconcile(Set{}, policy, now, rand.Reader)
	again, _, _ := Reconcile(set, policy, now.Add(time.Hour), rand.Reader)
	if again.Fingerprint() != set.Fingerprint() {
		t.Fatal("reconciling within the interval changed the set")
	}
	first, _ := set.Active(ES256, now)

	// One interval later the next key signs, a new next key appears and the first is kept.
	later := now.Add(policy.RotationInterval)
	rotated, _, _ := Reconcile(again, policy, later, rand.Reader)
	active, _ := rotated.Active(ES256, later)
	if active.KID == first.KID {
		t.Fatal("the key did not change after the interval")
	}
	if !hasKID(rotated, first.KID) {
		t.Fatal("the retired key was dropped while its tokens may still be valid")
	}
	if _, ok := rotated.Active(ES256, active.RetiresAt); !ok {
		t.Fatal("no next key after the rotation")
	}

	// Once every token the retired key signed has expired, it is removed.
	gone, _, _ := Reconcile(rotated, policy, later.Add(policy.MaxTokenLifetime+2*time.Minute), rand.Reader)
	if hasKID(gone, first.KID) {
		t.Fatal("the retired key outlived every token it signed")
	}
}

func TestReconcileRecoversAfterLongDowntime(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	set, _, _ := Reconcile(Set{}, policy, now, rand.Reader)
	muchLater := now.Add(10 * policy.RotationInterval)
	recovered, _, _ := Reconcile(set, policy, muchLater, rand.Reader)
	if _, ok := recovered.Active(ES256, muchLater); !ok {
		t.Fatal("no active key after a long downtime")
	}
	if len(recovered.Keys) != 4 {
		t.Fatalf("%d keys after a long downtime, want 4 (old ones dropped)", len(recovered.Keys))
	}
}

func TestParseRoundTripAndRejectsPublicKeys(t *testing.T) {
	now := time.Now()
	set, _, _ := Reconcile(Set{}, Policy{Algorithms: SupportedAlgorithms, RotationInterval: time.Hour, MaxTokenLifetime: time.Hour}, now, rand.Reader)
	data, err := set.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Fingerprint() != set.Fingerprint() || len(parsed.Public().Keys) != 6 {
		t.Fatal("round trip changed the set")
	}
	for _, k := range parsed.Public().Keys {
		if !k.IsPublic() {
			t.Fatal("JWKS contains private material")
		}
	}
	public := strings.Replace(string(data), `"d":`, `"x_d":`, -1)
	if _, err := Parse([]byte(public)); err == nil {
		t.Fatal("a set without private keys was accepted")
	}
	if _, err := Parse([]byte("not json")); err == nil || strings.Contains(err.Error(), "not json") {
		t.Fatalf("bad input: %v", err)
	}
}

func hasKID(s Set, kid string) bool {
	for _, k := range s.Keys {
		if k.KID == kid {
			return true
		}
	}
	return false
}

// Sealing keys follow their own, shorter schedule: one seals now, the next is
// already there, and a retired one is kept only SealingRetention.
func TestReconcileKeepsSealingKeysOnTheirSchedule(t *testing.T) {
	p := policy
	p.SealingRotation = 24 * time.Hour
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	set, wake, err := Reconcile(Set{}, p, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	active, ok := set.ActiveSealing(now)
	if !ok || len(active.Secret) != SealingKeySize {
		t.Fatal("no sealing key active now")
	}
	if next, ok := set.ActiveSealing(active.RetiresAt); !ok || next.KID == active.KID {
		t.Fatal("no next sealing key ready when the active one retires")
	}
	if !wake.Equal(now.Add(24 * time.Hour)) {
		t.Fatalf("wake at %v, want when the next sealing key activates", wake)
	}
	data, _ := set.Marshal()
	if parsed, err := Parse(data); err != nil || len(parsed.Sealing) != 2 {
		t.Fatalf("round trip: %v, %d sealing keys", err, len(parsed.Sealing))
	}
	later := now.Add(24*time.Hour + SealingRetention + time.Minute)
	rotated, _, _ := Reconcile(set, p, later, rand.Reader)
	for _, k := range rotated.Sealing {
		if k.KID == active.KID {
			t.Fatal("a sealing key was kept past its retention")
		}
	}
	if _, ok := rotated.ActiveSealing(later); !ok {
		t.Fatal("no sealing key after the rotation")
	}
}
