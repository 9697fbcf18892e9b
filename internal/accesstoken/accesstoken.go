// Package accesstoken verifies the JWT access tokens (RFC 9068) that the token server
// issues, with public keys only: the token server's introspection and the edge
// authorizer both verify through it, so a token means the same thing to both.
package accesstoken

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/jsonappend"
)

// Claims are the claims of a Latchkey access token.
type Claims struct {
	jwt.Claims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	// Namespace and ClientUID name the OAuthClient, so that a token of a
	// deleted-and-recreated client (same name, new UID) is told from a live one.
	Namespace string `json:"latchkey.dev/namespace"`
	ClientUID string `json:"latchkey.dev/client_uid"`
	// A third-party app's token (authorization_code, refresh_token) also names the
	// workspace it acts in, the OAuthGrant that lets it (by UID) and its
	// refresh-token family: deleting the grant or killing the family ends it.
	Workspace string `json:"latchkey.dev/workspace,omitempty"`
	GrantUID  string `json:"latchkey.dev/grant_uid,omitempty"`
	Family    string `json:"latchkey.dev/family,omitempty"`
	// GrantVersion is the grant's resourceVersion after the write that started or
	// rotated the family: a checker whose watch has not caught up with it accepts
	// the token rather than refusing a family it has not seen yet.
	GrantVersion string `json:"latchkey.dev/grant_version,omitempty"`
}

// Leeway absorbs clock skew between replicas on nbf and exp.
const Leeway = 5 * time.Second

// Verifier checks tokens against a set of public keys.
type Verifier struct {
	keys map[string]jose.JSONWebKey // kid -> public key
	algs []jose.SignatureAlgorithm  // the algorithms of those keys: no other is accepted
	// verified remembers tokens whose signature checked out, by SHA-256 of the
	// token: a client presents one token for its whole lifetime, so most checks
	// cost a hash and a lookup instead of a signature verification. Only verified
	// tokens are kept (garbage cannot fill it), each still checked for exp, nbf and
	// iss on every use; a new key set is a new Verifier, with an empty cache.
	mu        sync.Mutex
	verified  map[[32]byte]*Claims
	cacheSize int
}

// DefaultCacheSize bounds the verified-token cache: ~200 bytes of claims a token.
const DefaultCacheSize = 10000

// NewVerifier verifies with the public half of every key in set. Keys without a kid
// or an algorithm are skipped: a token names its key by kid, and the key's own
// algorithm (never the token's header alone) decides how it is checked.
func NewVerifier(set jose.JSONWebKeySet) *Verifier { return NewCachingVerifier(set, DefaultCacheSize) }

// NewCachingVerifier is NewVerifier remembering up to cacheSize verified tokens (0: none).
func NewCachingVerifier(set jose.JSONWebKeySet, cacheSize int) *Verifier {
	v := &Verifier{keys: map[string]jose.JSONWebKey{}, cacheSize: cacheSize, verified: map[[32]byte]*Claims{}}
	for _, k := range set.Keys {
		if k.KeyID == "" || k.Algorithm == "" || !k.Valid() {
			continue
		}
		k = k.Public()
		v.keys[k.KeyID] = k
		alg := jose.SignatureAlgorithm(k.Algorithm)
		if !slices.Contains(v.algs, alg) {
			v.algs = append(v.algs, alg)
		}
	}
	return v
}

// ParseJWKS builds a verifier from a JWK Set document (RFC 7517 §5). A document
// that holds a private key is refused: whoever wrote it got it wrong, and keeping
// it would spread the key.
func ParseJWKS(data []byte, cacheSize int) (*Verifier, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parsing the JWK Set: %w", err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("the JWK Set holds a private key (kid %q)", k.KeyID)
		}
	}
	return NewCachingVerifier(set, cacheSize), nil
}

// Size is the number of keys the verifier knows (0 for nil).
func (v *Verifier) Size() int {
	if v == nil {
		return 0
	}
	return len(v.keys)
}

// Verify returns the claims of token if it is a canonical compact JWS with typ
// at+jwt, signed by one of the keys with that key's algorithm, issued by issuer,
// and valid at now (exp required, nbf and exp with Leeway). Nothing about the
// client the token was issued to is checked here: that is the index's (the client
// must still exist with the same UID and be active). The claims returned may be
// shared with other callers: never modify them.
func (v *Verifier) Verify(token, issuer string, now time.Time) (*Claims, bool) {
	if v == nil || !canonicalJWS(token) {
		return nil, false
	}
	var sum [32]byte
	if v.cacheSize > 0 {
		sum = credential.Sum(token)
		v.mu.Lock()
		claims, ok := v.verified[sum]
		v.mu.Unlock()
		if ok {
			return claims, valid(claims, issuer, now)
		}
	}
	claims, ok := v.verify(token)
	if !ok || !valid(claims, issuer, now) {
		return nil, false
	}
	if v.cacheSize > 0 {
		v.mu.Lock()
		if len(v.verified) >= v.cacheSize {
			for k := range v.verified { // full: drop an arbitrary entry (Go's map order is random)
				delete(v.verified, k)
				break
			}
		}
		v.verified[sum] = claims
		v.mu.Unlock()
	}
	return claims, true
}

// valid checks what changes with time and the expected issuer: exp (required),
// nbf and iss, with Leeway.
func valid(claims *Claims, issuer string, now time.Time) bool {
	return claims.Expiry != nil && claims.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Time: now}, Leeway) == nil
}

// verify checks the signature and the header of a canonical token.
func (v *Verifier) verify(token string) (*Claims, bool) {
	parsed, err := jwt.ParseSigned(token, v.algs)
	if err != nil || len(parsed.Headers) != 1 || !accessTokenType(parsed.Headers[0].ExtraHeaders[jose.HeaderType]) {
		return nil, false
	}
	header := parsed.Headers[0]
	key, ok := v.keys[header.KeyID]
	if !ok || key.Algorithm != header.Algorithm {
		return nil, false
	}
	var claims Claims
	if err := parsed.Claims(key.Key, &claims); err != nil {
		return nil, false
	}
	return &claims, true
}

// canonicalJWS reports whether each of the three parts of a compact JWS is
// base64url exactly as RFC 7515 §2 spells it: no padding, no line breaks, no
// non-zero trailing bits. go-jose decodes leniently and re-encodes the payload
// before checking the signature, so without this one token would have many
// spellings that all verify, and anything a resource server keys on the token
// string (a cache, a deny list, an audit log) could be sidestepped.
func canonicalJWS(token string) bool {
	if strings.Count(token, ".") != 2 {
		return false
	}
	for part := range strings.SplitSeq(token, ".") {
		if !canonicalBase64URL(part) {
			return false
		}
	}
	return true
}

// canonicalBase64URL is base64.RawURLEncoding.Strict()'s check without decoding:
// only the URL alphabet, no length that cannot occur, and zero bits after the last
// whole byte.
func canonicalBase64URL(s string) bool {
	if len(s)%4 == 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if base64URLValue[s[i]] < 0 {
			return false
		}
	}
	if len(s) == 0 {
		return true
	}
	last := base64URLValue[s[len(s)-1]]
	switch len(s) % 4 {
	case 2:
		return last&0x0f == 0
	case 3:
		return last&0x03 == 0
	}
	return true
}

// base64URLValue is each byte's value in the base64url alphabet, or -1.
var base64URLValue = func() (t [256]int8) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// accessTokenType accepts the typ header values RFC 9068 §4 allows: "at+jwt", or
// the full media type "application/at+jwt", compared case-insensitively (RFC 2045).
func accessTokenType(typ any) bool {
	s, ok := typ.(string)
	return ok && (strings.EqualFold(s, "at+jwt") || strings.EqualFold(s, "application/at+jwt"))
}

// AppendJSON appends c as encoding/json marshals it, byte for byte (the tests
// compare), without reflection: what the token endpoint signs.
func (c *Claims) AppendJSON(b []byte) []byte {
	o := jsonappend.Open(b)
	o.String("iss", c.Issuer, true)
	o.String("sub", c.Subject, true)
	o.StringOrStrings("aud", c.Audience)
	for _, d := range []struct {
		name string
		date *jwt.NumericDate
	}{{"exp", c.Expiry}, {"nbf", c.NotBefore}, {"iat", c.IssuedAt}} {
		if d.date != nil {
			o.Int(d.name, int64(*d.date), false)
		}
	}
	o.String("jti", c.ID, true)
	o.String("client_id", c.ClientID, false)
	o.String("scope", c.Scope, true)
	o.String("latchkey.dev/namespace", c.Namespace, false)
	o.String("latchkey.dev/client_uid", c.ClientUID, false)
	o.String("latchkey.dev/workspace", c.Workspace, true)
	o.String("latchkey.dev/grant_uid", c.GrantUID, true)
	o.String("latchkey.dev/family", c.Family, true)
	o.String("latchkey.dev/grant_version", c.GrantVersion, true)
	return o.Close()
}
