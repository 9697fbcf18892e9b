package tokenserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/jsonappend"
)

// TestECDSADERToJWS converts enough signatures that R or S is shorter than 32
// bytes (about 1 in 128) or has its high bit set (1 in 2) many times over, and
// checks each converted signature against the key.
func TestECDSADERToJWS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	short := 0
	for i := range 3000 {
		digest := sha256.Sum256(fmt.Appendf(nil, "message %d", i))
		der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		jws, err := ecdsaDERToJWS(der)
		if err != nil {
			t.Fatal(err)
		}
		if len(jws) != 64 {
			t.Fatalf("signature of %d bytes", len(jws))
		}
		r, s := new(big.Int).SetBytes(jws[:32]), new(big.Int).SetBytes(jws[32:])
		if len(r.Bytes()) < 32 || len(s.Bytes()) < 32 {
			short++
		}
		if !ecdsa.Verify(&key.PublicKey, digest[:], r, s) {
			t.Fatalf("converted signature %d does not verify", i)
		}
	}
	if short == 0 {
		t.Fatal("no short R or S in 3000 signatures: the padding path was not exercised")
	}
	for _, bad := range [][]byte{nil, {0x30, 0x00}, {0x30, 0x03, 0x02, 0x01, 0x01}, append([]byte{0x30, 0x26, 0x02, 0x21}, make([]byte, 37)...)} {
		if _, err := ecdsaDERToJWS(bad); err == nil {
			t.Errorf("accepted malformed signature %x", bad)
		}
	}
}

// The introspection answer is what encoding/json wrote before AppendJSON, in
// each shape: inactive, an API key, a token with one audience or several.
func TestIntrospectionAppendJSONIsMarshal(t *testing.T) {
	for _, i := range []introspection{
		inactive,
		{Active: true, Scope: "leads:read", TokenType: "api_key", Environment: "live", Exp: 1_790_000_000,
			Namespace: "team-a", Name: "billing", Sub: "apikey:team-a/billing", KeyID: "k_0123456789ab"},
		{Active: true, Scope: "a b", ClientID: "0123456789abcdef01234567", TokenType: "Bearer", Exp: 2, Iat: 1, Nbf: 1,
			Sub: "oidc:<alice>&", Aud: jwt.Audience{"https://api.example"}, Iss: "https://issuer", Jti: "j", Namespace: "n"},
		{Active: true, Aud: jwt.Audience{"a", "b\"c"}},
		filledIntrospection(),
	} {
		want, err := json.Marshal(i)
		if err != nil {
			t.Fatal(err)
		}
		if got := i.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	}
}

// An API key's answer, written from the key (apiKeyIntrospection), is the one
// its introspection struct marshals to: with and without an expiry, in its grace
// period, with names that would need escaping.
func TestAPIKeyIntrospectionAppendJSONIsMarshal(t *testing.T) {
	expires := time.Unix(1_790_000_000, 0)
	for _, key := range []*index.Key{
		{Ref: index.Ref{Namespace: "team-a", Name: "billing"}, Environment: "live", ExpiresAt: expires},
		{Ref: index.Ref{Namespace: "team-b", Name: "ci.v2"}, Environment: "test"},
		{Ref: index.Ref{Namespace: "n", Name: "k"}, Environment: "live", ExpiresAt: expires, NotAfter: expires.Add(-time.Hour)},
		{Ref: index.Ref{Namespace: `<a&"b>`, Name: "é\\n"}},
	} {
		key.Subject = index.APIKeySubjectPrefix + key.Ref.Namespace + "/" + key.Ref.Name // as the index makes it
		a := apiKeyIntrospection{key: key, scope: "leads:read leads:write", hash: index.DigestOf("lk_live_" + key.Ref.Name)}
		want, err := json.Marshal(a.introspection())
		if err != nil {
			t.Fatal(err)
		}
		if got := a.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	}
}

// filledIntrospection has every field set: a member added to introspection but
// not to AppendJSON fails the test.
func filledIntrospection() introspection {
	var i introspection
	jsonappend.Filled(&i)
	return i
}
