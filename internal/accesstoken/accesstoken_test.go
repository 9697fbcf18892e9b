package accesstoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/latchkey-dev/latchkey/internal/jsonappend"
)

func TestAccessTokenType(t *testing.T) {
	for typ, want := range map[any]bool{
		"at+jwt": true, "AT+JWT": true, "application/at+jwt": true, "Application/AT+JWT": true,
		"JWT": false, "jwt": false, "": false, "application/jwt": false, nil: false, 1: false,
	} {
		if accessTokenType(typ) != want {
			t.Errorf("accessTokenType(%v) = %v, want %v", typ, !want, want)
		}
	}
}

// canonicalBase64URL accepts exactly what base64.RawURLEncoding.Strict() decodes
// and re-encodes to the same string.
func TestCanonicalBase64URLMatchesStrictDecoding(t *testing.T) {
	for _, s := range []string{"", "A", "AA", "AB", "AAA", "AAB", "AAAA", "eyJ", "eyJh", "ab-_", "ab+/", "ab=", "Zg", "Zh", "Zm8", "Zm9", "a.b", "\xff"} {
		decoded, err := base64.RawURLEncoding.Strict().DecodeString(s)
		want := err == nil && base64.RawURLEncoding.EncodeToString(decoded) == s
		if got := canonicalBase64URL(s); got != want {
			t.Errorf("canonicalBase64URL(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzCanonicalBase64URL(f *testing.F) {
	for _, s := range []string{"", "AA", "AB", "Zm9", "eyJhbGciOiJFUzI1NiJ9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		decoded, err := base64.RawURLEncoding.Strict().DecodeString(s)
		want := err == nil && base64.RawURLEncoding.EncodeToString(decoded) == s
		if got := canonicalBase64URL(s); got != want {
			t.Fatalf("canonicalBase64URL(%q) = %v, want %v", s, got, want)
		}
	})
}

// The cache of verified tokens changes nothing that depends on time or on the keys:
// a cached token expires on time, and a new key set starts with an empty cache.
func TestVerifiedTokenCache(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: "k1", Algorithm: string(jose.ES256)}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwk}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	token, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: "https://iss", Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	v := NewCachingVerifier(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}}, 1)
	for i := range 2 {
		if _, ok := v.Verify(token, "https://iss", now); !ok {
			t.Fatalf("verification %d failed", i)
		}
	}
	if _, ok := v.Verify(token, "https://other", now); ok {
		t.Errorf("a cached token must still be checked for its issuer")
	}
	if _, ok := v.Verify(token, "https://iss", now.Add(time.Minute+Leeway+time.Second)); ok {
		t.Errorf("a cached token must still expire")
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rotated := NewCachingVerifier(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &other.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256)}}}, 1)
	if _, ok := rotated.Verify(token, "https://iss", now); ok {
		t.Errorf("a new key set must not accept what the old one cached")
	}
}

// AppendJSON writes what json.Marshal writes for every shape of claims the token
// server signs: one audience or several, a third-party app's claims or none,
// strings that need escaping.
func TestAppendJSONIsMarshal(t *testing.T) {
	date := jwt.NewNumericDate(time.Unix(1_790_000_000, 0))
	for _, c := range []Claims{
		{},
		{Claims: jwt.Claims{Issuer: "https://latchkey.example", Subject: "0123456789abcdef01234567", Audience: jwt.Audience{"https://api.example"},
			Expiry: date, IssuedAt: date, NotBefore: date, ID: "00112233445566778899aabbccddeeff"},
			ClientID: "0123456789abcdef01234567", Scope: "leads:read leads:write", Namespace: "team-a", ClientUID: "6f1c1a2e-2b5e-4d0e-9a57-2b2a8c7e9f10"},
		{Claims: jwt.Claims{Issuer: "http://127.0.0.1:8080", Subject: "oidc:alice <a&b>", Audience: jwt.Audience{"https://a.example", "urn:b\"c\\d"},
			Expiry: date, IssuedAt: date, ID: "j"},
			ClientID: "x", Namespace: "apps", ClientUID: "u", Workspace: "team-b", GrantUID: "g", Family: "f\u2028", GrantVersion: "42"},
		{Claims: jwt.Claims{Audience: jwt.Audience{}}, Scope: "\x00\xff"},
		filledClaims(),
	} {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	}
}

// filledClaims has every field set: a claim added to Claims but not to AppendJSON fails the test.
func filledClaims() Claims {
	var c Claims
	jsonappend.Filled(&c)
	return c
}
