package credential

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

func TestNewAPIKeyFormat(t *testing.T) {
	for _, tc := range []struct{ prefix, env string }{{"lk", "live"}, {"acme", "test"}, {"a", "live"}, {"abcdefghijkl", "test"}} {
		key, err := NewAPIKey(rand.Reader, tc.prefix, tc.env)
		if err != nil {
			t.Fatalf("NewAPIKey(%q, %q): %v", tc.prefix, tc.env, err)
		}
		wantLen := len(tc.prefix) + 1 + len(tc.env) + 1 + BodyLength + ChecksumLength
		if len(key) != wantLen {
			t.Errorf("length %d, want %d", len(key), wantLen)
		}
		if !strings.HasPrefix(key, tc.prefix+"_"+tc.env+"_") {
			t.Errorf("key does not start with %s_%s_", tc.prefix, tc.env)
		}
		parsed, err := ParseAPIKey(key)
		if err != nil {
			t.Fatalf("ParseAPIKey of a fresh key: %v", err)
		}
		if parsed.Prefix != tc.prefix || parsed.Environment != tc.env {
			t.Errorf("parsed %+v", parsed)
		}
	}
}

func TestNewAPIKeyRejectsBadInput(t *testing.T) {
	for _, tc := range []struct{ prefix, env string }{{"", "live"}, {"LK", "live"}, {"1lk", "live"}, {"abcdefghijklm", "live"}, {"l_k", "live"}, {"lk", "prod"}} {
		if _, err := NewAPIKey(rand.Reader, tc.prefix, tc.env); err == nil {
			t.Errorf("NewAPIKey(%q, %q) succeeded", tc.prefix, tc.env)
		}
	}
}

func TestNewAPIKeyFailsOnShortRandom(t *testing.T) {
	if _, err := NewAPIKey(io.LimitReader(rand.Reader, 31), "lk", "live"); err == nil {
		t.Fatal("expected an error when fewer than 32 random bytes are available")
	}
}

func TestAPIKeyIsDeterministicForItsRandomBytes(t *testing.T) {
	seed := bytes.Repeat([]byte{0xff}, 32) // the largest 256-bit value must still fit 43 digits
	a, err := NewAPIKey(bytes.NewReader(seed), "lk", "live")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewAPIKey(bytes.NewReader(seed), "lk", "live")
	if a != b {
		t.Fatal("same random bytes gave different keys")
	}
	zero, _ := NewAPIKey(bytes.NewReader(make([]byte, 32)), "lk", "live")
	if got := zero[len("lk_live_") : len("lk_live_")+BodyLength]; got != strings.Repeat("0", BodyLength) {
		t.Fatalf("zero bytes encode as %q", got)
	}
}

func TestBodyCarries256Bits(t *testing.T) {
	if bits := float64(BodyLength) * math.Log2(62); bits < 256 {
		t.Fatalf("%d base62 digits carry %.1f bits, want >= 256", BodyLength, bits)
	}
	if bits := float64(ChecksumLength) * math.Log2(62); bits < 32 {
		t.Fatalf("%d base62 digits cannot hold a CRC-32", ChecksumLength)
	}
}

func TestChecksumCatchesTypos(t *testing.T) {
	key, _ := NewAPIKey(rand.Reader, "lk", "live")
	// Every single-character substitution anywhere in the key is rejected.
	for i := 0; i < len(key); i++ {
		for _, c := range []byte{'0', 'a', 'Z', '_'} {
			if key[i] == c {
				continue
			}
			typo := key[:i] + string(c) + key[i+1:]
			if _, err := ParseAPIKey(typo); err == nil {
				t.Fatalf("substituting %q at %d was accepted", c, i)
			}
		}
	}
	// Swapping two adjacent distinct characters of the body is rejected.
	start := len("lk_live_")
	for i := start; i < len(key)-1; i++ {
		if key[i] == key[i+1] {
			continue
		}
		swapped := key[:i] + string(key[i+1]) + string(key[i]) + key[i+2:]
		if _, err := ParseAPIKey(swapped); err == nil {
			t.Fatalf("transposition at %d was accepted", i)
		}
	}
}

func TestParseAPIKeyRejectsMalformed(t *testing.T) {
	key, _ := NewAPIKey(rand.Reader, "lk", "test")
	for name, s := range map[string]string{
		"empty":       "",
		"truncated":   key[:len(key)-1],
		"extended":    key + "0",
		"no env":      "lk_" + key[len("lk_test_"):],
		"bad env":     "lk_prod_" + key[len("lk_test_"):],
		"jwt":         "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
		"upper":       strings.ToUpper(key),
		"client id":   strings.Repeat("a", 24),
		"env changed": strings.Replace(key, "_test_", "_live_", 1),
	} {
		if _, err := ParseAPIKey(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestHashAndKeyID(t *testing.T) {
	// Known SHA-256 vector: sha256("abc").
	const abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := Hash("abc"); got != abc {
		t.Fatalf("Hash(abc) = %s", got)
	}
	if got := KeyID(abc); got != "ba7816bf8f01" {
		t.Fatalf("KeyID = %s", got)
	}
}

func TestClientIDAndSecret(t *testing.T) {
	if !ValidClientID("0123456789abcdef01234567") {
		t.Fatal("a well-formed client id is refused")
	}
	secret, err := NewClientSecret(rand.Reader)
	if err != nil || !ValidClientSecret(secret) {
		t.Fatalf("client secret of length %d, err %v", len(secret), err)
	}
	if ValidClientID(strings.Repeat("A", 24)) || ValidClientSecret(secret[:63]) {
		t.Fatal("malformed id or secret accepted")
	}
}

func TestValidPrefixMatchesPattern(t *testing.T) {
	for _, p := range []string{"", "a", "lk", "Lk", "1k", "a1", "abcdefghijkl", "abcdefghijklm", "a_b", "a-b", "é", "a\x00"} {
		if validPrefix(p) != prefixPattern.MatchString(p) {
			t.Errorf("validPrefix(%q) = %v, the pattern says %v", p, validPrefix(p), !validPrefix(p))
		}
	}
}

// ParseAPIKey runs on every request that presents a key (introspection, the
// authorizer): it checks the checksum without allocating.
func TestParseAPIKeyAllocatesNothing(t *testing.T) {
	key, _ := NewAPIKey(rand.Reader, "lk", "live")
	if _, err := ParseAPIKey(key); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseAPIKey(key) }); n != 0 {
		t.Errorf("ParseAPIKey allocates %.0f times per key", n)
	}
}
