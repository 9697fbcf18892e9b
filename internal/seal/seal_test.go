package seal

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

type payload struct{ User string }

func ring(t *testing.T, now time.Time) (*Ring, signingkeys.Set) {
	t.Helper()
	set, _, err := signingkeys.Reconcile(signingkeys.Set{}, signingkeys.Policy{SealingRotation: time.Hour}, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRing(set)
	if err != nil {
		t.Fatal(err)
	}
	return r, set
}

func TestSealOpensOnlyIntactForItsPurposeAndTime(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	r, _ := ring(t, now)
	sealed, err := r.Seal(PurposeLogin, payload{"alice"}, now, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "alice") {
		t.Fatal("the sealed value shows its payload")
	}
	var got payload
	if err := r.Open(PurposeLogin, sealed, now, &got); err != nil || got.User != "alice" {
		t.Fatalf("open: %v %+v", err, got)
	}
	// After the next key took over, what the previous one sealed still opens.
	next, err := r.Seal(PurposeLogin, payload{"alice"}, now.Add(time.Hour+time.Second), now.Add(2*time.Hour))
	if err != nil || strings.Split(next, ".")[0] == strings.Split(sealed, ".")[0] {
		t.Fatalf("the next key did not take over on schedule: %v", err)
	}
	long, _ := r.Seal(PurposeLogin, payload{"alice"}, now, now.Add(2*time.Hour))
	if err := r.Open(PurposeLogin, long, now.Add(time.Hour+time.Minute), &got); err != nil {
		t.Fatalf("a value of the previous key no longer opens: %v", err)
	}
	other, _ := ring(t, now)
	kid, body, _ := strings.Cut(sealed, ".")
	flipped := []byte(body)
	flipped[len(flipped)/2] ^= 1
	for name, tc := range map[string]struct {
		ring    *Ring
		purpose string
		value   string
		at      time.Time
	}{
		"other purpose": {r, PurposeCode, sealed, now},
		"expired":       {r, PurposeLogin, sealed, now.Add(time.Minute)},
		"other key set": {other, PurposeLogin, sealed, now},
		"tampered":      {r, PurposeLogin, kid + "." + string(flipped), now},
		"no kid":        {r, PurposeLogin, body, now},
		"truncated":     {r, PurposeLogin, kid + "." + body[:10], now},
		"empty":         {r, PurposeLogin, "", now},
		"huge":          {r, PurposeLogin, kid + "." + strings.Repeat("A", 20<<10), now},
		"not base64url": {r, PurposeLogin, kid + ".+/+/", now},
		"nil ring":      {nil, PurposeLogin, sealed, now},
	} {
		if err := tc.ring.Open(tc.purpose, tc.value, tc.at, &got); err != ErrInvalid {
			t.Errorf("%s: opened (%v)", name, err)
		}
	}
}

func TestSealWithSecret(t *testing.T) {
	secret := []byte("0123456789abcdef")
	sealed, err := SealWithSecret(secret, PurposeUpstream, []byte("upstream refresh token"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "upstream") {
		t.Fatal("the plaintext shows")
	}
	got, err := OpenWithSecret(secret, PurposeUpstream, sealed)
	if err != nil || string(got) != "upstream refresh token" {
		t.Fatalf("opened %q, %v", got, err)
	}
	for name, open := range map[string]func() ([]byte, error){
		"another secret":  func() ([]byte, error) { return OpenWithSecret([]byte("0123456789abcdeX"), PurposeUpstream, sealed) },
		"another purpose": func() ([]byte, error) { return OpenWithSecret(secret, PurposeCode, sealed) },
		"tampered": func() ([]byte, error) {
			b := []byte(sealed)
			b[len(b)/2] ^= 1 // another character mid-value: the ciphertext no longer authenticates
			return OpenWithSecret(secret, PurposeUpstream, string(b))
		},
		"short secret": func() ([]byte, error) { return OpenWithSecret(secret[:8], PurposeUpstream, sealed) },
	} {
		if _, err := open(); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}
