// Package accesstoken verifies the JWT access tokens (RFC 9068) that the token server
// issues, with public keys only: the token server's introspection and the edge
// authorizer both verify through it, so a token means the same thing to both.
package accesstoken

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
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
}

// Leeway absorbs clock skew between replicas on nbf and exp.
const Leeway = 5 * time.Second

// Verifier checks tokens against a set of public keys.
type Verifier struct {
	keys map[string]jose.JSONWebKey // kid -> public key
	algs []jose.SignatureAlgorithm  // the algorithms of those keys: no other is accepted
}

// NewVerifier verifies with the public half of every key in set. Keys without a kid
// or an algorithm are skipped: a token names its key by kid, and the key's own
// algorithm (never the token's header alone) decides how it is checked.
func NewVerifier(set jose.JSONWebKeySet) *Verifier {
	v := &Verifier{keys: map[string]jose.JSONWebKey{}}
	for _, k := range set.Keys {
		if k.KeyID == "" || k.Algorithm == "" || !k.Valid() {
			continue
		}
		k = k.Public()
		v.keys[k.KeyID] = k
		alg := jose.SignatureAlgorithm(k.Algorithm)
		if !contains(v.algs, alg) {
			v.algs = append(v.algs, alg)
		}
	}
	return v
}

// ParseJWKS builds a verifier from a JWK Set document (RFC 7517 §5). A document
// that holds a private key is refused: whoever wrote it got it wrong, and keeping
// it would spread the key.
func ParseJWKS(data []byte) (*Verifier, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parsing the JWK Set: %w", err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("the JWK Set holds a private key (kid %q)", k.KeyID)
		}
	}
	return NewVerifier(set), nil
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
// must still exist with the same UID and be active).
func (v *Verifier) Verify(token, issuer string, now time.Time) (*Claims, bool) {
	if v == nil || !canonicalJWS(token) {
		return nil, false
	}
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
	if claims.Expiry == nil || claims.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Time: now}, Leeway) != nil {
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
		decoded, err := base64.RawURLEncoding.Strict().DecodeString(part)
		if err != nil || base64.RawURLEncoding.EncodedLen(len(decoded)) != len(part) {
			return false
		}
	}
	return true
}

// accessTokenType accepts the typ header values RFC 9068 §4 allows: "at+jwt", or
// the full media type "application/at+jwt", compared case-insensitively (RFC 2045).
func accessTokenType(typ any) bool {
	s, ok := typ.(string)
	return ok && (strings.EqualFold(s, "at+jwt") || strings.EqualFold(s, "application/at+jwt"))
}

func contains(list []jose.SignatureAlgorithm, alg jose.SignatureAlgorithm) bool {
	for _, a := range list {
		if a == alg {
			return true
		}
	}
	return false
}
