package credential

import (
	"bytes"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math/big"
	"strings"
	"testing"
)

// Native fuzz targets. `go test ./internal/credential/` runs their seeds as
// ordinary tests; `make fuzz` fuzzes each one for FUZZTIME.
//
// The checks below are written independently of credential.go (their own
// alphabet, checksum and format rules), so each target is a differential test
// against a second implementation of the documented format.

// refAlphabet is base62 as the package documentation describes it, written out again.
const refAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// refPrefixOK: 1-12 of [a-z0-9], starting with a letter.
func refPrefixOK(p string) bool {
	if len(p) < 1 || len(p) > 12 || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// refChecksum is the CRC-32 (IEEE) of head as 6 base62 digits, most significant first.
func refChecksum(head string) string {
	v := uint64(crc32.ChecksumIEEE([]byte(head)))
	out := make([]byte, 6)
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = refAlphabet[v%62]
		v /= 62
	}
	return string(out)
}

// refValidKey decides whether s is a well-formed API key, from the documented format.
func refValidKey(s string) bool {
	parts := strings.Split(s, "_")
	if len(parts) != 3 || !refPrefixOK(parts[0]) || (parts[1] != "live" && parts[1] != "test") || len(parts[2]) != 43+6 {
		return false
	}
	for i := 0; i < len(parts[2]); i++ {
		if !strings.Contains(refAlphabet, string(parts[2][i])) {
			return false
		}
	}
	return refChecksum(s[:len(s)-6]) == s[len(s)-6:]
}

// refHex reports whether s is exactly n lowercase hex digits.
func refHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// fixedKey is a key generated from fixed "random" bytes, so the seeds are the same on every run.
func fixedKey(tb testing.TB, fill, prefix, env string) string {
	tb.Helper()
	key, err := NewAPIKey(strings.NewReader(strings.Repeat(fill, 32)), prefix, env)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// FuzzParseAPIKey: ParseAPIKey never panics, agrees with the documented
// format, and an accepted key re-parses identically, has the parts it was parsed
// into, and stops parsing when its last character changes.
//
// (It is not named FuzzParseAPIKey because credential_test.go already declares a
// smaller target of that name.)
func FuzzParseAPIKey(f *testing.F) {
	key := fixedKey(f, "x", "lk", "live")
	testKey := fixedKey(f, "\x00", "acme", "test")
	maxKey, _ := NewAPIKey(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32)), "abcdefghijkl", "live")
	for _, k := range []string{key, testKey, maxKey} {
		if !refValidKey(k) {
			f.Fatalf("the seed key %q does not have the documented format", k)
		}
	}
	body := len("lk_live_")
	for _, s := range []string{
		key, testKey, maxKey,
		key[:len(key)-1], key[:len(key)-ChecksumLength], key[:body+BodyLength], key[:body], key[:3], // truncated
		key + "0", "x" + key, // extended
		key[:body+5] + "-" + key[body+6:],            // a non-base62 character in the body
		key[:len(key)-1] + "é",                       // a multi-byte last character
		key[:body] + strings.Repeat("0", 49),         // right shape, wrong checksum
		strings.Replace(key, "live", "prod", 1),      // unknown environment
		strings.Replace(key, "lk_", "LK_", 1),        // upper-case prefix
		strings.Replace(key, "_live_", "_live__", 1), // an extra separator
		"abcdefghijklm" + key[2:],                    // 13-character prefix
		"1k" + key[2:],                               // prefix starting with a digit
		strings.ToUpper(key), "lk_live_", "lk__", "_", "__", "", "lk_live_☃", "ключ_live_" + key[body:],
		"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", strings.Repeat("a", 24),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parsed, err := ParseAPIKey(s)
		want := refValidKey(s)
		if (err == nil) != want {
			t.Fatalf("ParseAPIKey(%q): err=%v, but the documented format says valid=%v", s, err, want)
		}
		if LooksLikeAPIKey(s) != (err == nil) {
			t.Fatalf("LooksLikeAPIKey(%q) disagrees with ParseAPIKey (err=%v)", s, err)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseAPIKey(%q): error %v is not ErrMalformed", s, err)
			}
			if parsed != (APIKey{}) {
				t.Fatalf("ParseAPIKey(%q) failed but returned %+v", s, parsed)
			}
			return
		}
		again, err := ParseAPIKey(s)
		if err != nil || again != parsed {
			t.Fatalf("re-parsing %q gave %+v, %v; first parse %+v", s, again, err, parsed)
		}
		parts := strings.Split(s, "_")
		if parsed.Prefix != parts[0] || parsed.Environment != parts[1] || parsed.body != parts[2][:BodyLength] {
			t.Fatalf("ParseAPIKey(%q) = %+v, want prefix %q environment %q", s, parsed, parts[0], parts[1])
		}
		last := s[len(s)-1]
		other := refAlphabet[(strings.IndexByte(refAlphabet, last)+1)%len(refAlphabet)]
		for _, c := range []byte{other, '_', '-', 0} {
			flipped := s[:len(s)-1] + string(c)
			if _, err := ParseAPIKey(flipped); err == nil {
				t.Fatalf("changing the last character of %q to %q still parses: the checksum is not checked", s, c)
			}
		}
	})
}

// FuzzClientIDAndSecret: ValidClientID and ValidClientSecret accept exactly 24 and
// 64 lowercase hex digits.
func FuzzClientIDAndSecret(f *testing.F) {
	id := hex.EncodeToString([]byte(strings.Repeat("i", 12)))
	secret, _ := NewClientSecret(strings.NewReader(strings.Repeat("s", 32)))
	for _, s := range []string{
		id, secret, strings.ToUpper(id), strings.ToUpper(secret),
		id[:23], id + "0", secret[:63], secret + "0", id + "\n", secret + "\n", "\n" + id,
		strings.Repeat("g", 24), strings.Repeat("0", 64), id[:22] + "é", secret[:62] + "é",
		id[:12] + " " + id[13:], "", "0x" + id[2:],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidClientID(s), refHex(s, 24); got != want {
			t.Fatalf("ValidClientID(%q) = %v, want %v", s, got, want)
		}
		if got, want := ValidClientSecret(s), refHex(s, 64); got != want {
			t.Fatalf("ValidClientSecret(%q) = %v, want %v", s, got, want)
		}
	})
}

// FuzzNewAPIKey: NewAPIKey succeeds exactly for a valid prefix, a known environment
// and at least 32 random bytes; what it returns parses, carries those parts, and
// encodes exactly the first 32 bytes.
func FuzzNewAPIKey(f *testing.F) {
	x32 := []byte(strings.Repeat("x", 32))
	for _, seed := range []struct {
		random      []byte
		prefix, env string
	}{
		{x32, "lk", "live"},
		{make([]byte, 32), "acme", "test"},
		{bytes.Repeat([]byte{0xff}, 32), "abcdefghijkl", "live"},
		{bytes.Repeat([]byte{0xa5}, 64), "a1", "test"},
		{x32[:31], "lk", "live"},
		{nil, "lk", "live"},
		{x32, "", "live"},
		{x32, "LK", "live"},
		{x32, "1lk", "live"},
		{x32, "abcdefghijklm", "live"},
		{x32, "l_k", "live"},
		{x32, "lk", "prod"},
		{x32, "lk", "Live"},
		{x32, "lk\n", "live"},
	} {
		f.Add(seed.random, seed.prefix, seed.env)
	}
	f.Fuzz(func(t *testing.T, random []byte, prefix, env string) {
		key, err := NewAPIKey(bytes.NewReader(random), prefix, env)
		want := len(random) >= 32 && refPrefixOK(prefix) && (env == "live" || env == "test")
		if (err == nil) != want {
			t.Fatalf("NewAPIKey(%d bytes, %q, %q): err=%v, want success=%v", len(random), prefix, env, err, want)
		}
		if err != nil {
			if key != "" {
				t.Fatalf("NewAPIKey failed (%v) but returned %q", err, key)
			}
			return
		}
		parsed, err := ParseAPIKey(key)
		if err != nil {
			t.Fatalf("ParseAPIKey(NewAPIKey(%x, %q, %q) = %q): %v", random, prefix, env, key, err)
		}
		if parsed.Prefix != prefix || parsed.Environment != env || !refValidKey(key) {
			t.Fatalf("NewAPIKey(%q, %q) = %q parsed as %+v", prefix, env, key, parsed)
		}
		again, _ := NewAPIKey(bytes.NewReader(random), prefix, env)
		if again != key {
			t.Fatalf("the same random bytes gave %q and %q", key, again)
		}
		// The body is the first 32 bytes as a big-endian number in base62.
		n := new(big.Int)
		for _, c := range []byte(key[len(prefix)+1+len(env)+1 : len(key)-6]) {
			n.Mul(n, big.NewInt(62))
			n.Add(n, big.NewInt(int64(strings.IndexByte(refAlphabet, c))))
		}
		if n.BitLen() > 256 {
			t.Fatalf("the body of %q decodes to more than 256 bits", key)
		}
		if got := n.FillBytes(make([]byte, 32)); !bytes.Equal(got, random[:32]) {
			t.Fatalf("the body of %q decodes to %x, want %x", key, got, random[:32])
		}
	})
}
