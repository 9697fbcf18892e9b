// Package credential generates, checks and hashes the secrets Latchkey issues.
// It is shared by the operator (which generates) and the token server (which verifies),
// so both agree on the formats byte for byte.
//
// API key format:
//
//	<prefix>_<environment>_<body><checksum>
//
//	prefix       1-12 of [a-z0-9], starting with a letter ("lk")
//	environment  "live" or "test"
//	body         43 base62 characters: 256 bits from crypto/rand
//	checksum     6 base62 characters: CRC-32 (IEEE) of everything before it
//
// for example lk_live_3VgqK…(43)…1Xk9aB. The checksum lets secret scanners and the
// token server reject a mistyped or truncated key without a lookup; it is not a
// security feature (the 256 random bits are).
//
// Only SHA-256 hashes of credentials, "sha256:<hex>", are ever stored outside a Secret.
// A plain (unsalted, fast) hash is right here: the input has 256 bits of entropy, so
// there is nothing to brute-force, and the token server must hash on every request.
package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"regexp"
	"strings"
	"unsafe"
)

const (
	base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

	// BodyLength is the number of base62 characters that carry 256 random bits.
	BodyLength = 43
	// ChecksumLength is the number of base62 characters of the CRC-32 checksum.
	ChecksumLength = 6

	hashPrefix = "sha256:"
)

var prefixPattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// isBase62 marks the bytes of base62Alphabet. ParseAPIKey runs on every request that
// presents a key, so its checks are table lookups, not regular expressions.
var isBase62 = func() (t [256]bool) {
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = true
	}
	return t
}()

// validPrefix is prefixPattern without the regular expression.
func validPrefix(p string) bool {
	if len(p) < 1 || len(p) > 12 || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if c := p[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// ErrMalformed is returned for a string that is not a well-formed API key.
var ErrMalformed = errors.New("not a well-formed API key")

// APIKey is a parsed API key. Its String method returns the plaintext key, so
// never pass an APIKey to a logger.
type APIKey struct {
	Prefix      string
	Environment string
	body        string
}

// NewAPIKey generates a key with 256 bits from random (crypto/rand.Reader in production).
func NewAPIKey(random io.Reader, prefix, environment string) (string, error) {
	if !prefixPattern.MatchString(prefix) {
		return "", fmt.Errorf("invalid key prefix %q: want 1-12 lowercase letters or digits, starting with a letter", prefix)
	}
	if environment != "live" && environment != "test" {
		return "", fmt.Errorf("invalid environment %q: want live or test", environment)
	}
	var raw [32]byte
	if _, err := io.ReadFull(random, raw[:]); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	head := prefix + "_" + environment + "_" + base62(new(big.Int).SetBytes(raw[:]), BodyLength)
	return head + checksum(head), nil
}

// ParseAPIKey checks a key's shape and checksum without any lookup.
// The error never contains the key.
func ParseAPIKey(key string) (APIKey, error) {
	prefix, rest, ok := strings.Cut(key, "_")
	if !ok || !validPrefix(prefix) {
		return APIKey{}, ErrMalformed
	}
	environment, rest, ok := strings.Cut(rest, "_")
	if !ok || (environment != "live" && environment != "test") || len(rest) != BodyLength+ChecksumLength {
		return APIKey{}, ErrMalformed
	}
	for i := 0; i < len(rest); i++ {
		if !isBase62[rest[i]] {
			return APIKey{}, ErrMalformed
		}
	}
	head := key[:len(key)-ChecksumLength]
	if sum := checksumOf(head); string(sum[:]) != key[len(key)-ChecksumLength:] { // compared in place: no allocation
		return APIKey{}, ErrMalformed
	}
	return APIKey{Prefix: prefix, Environment: environment, body: rest[:BodyLength]}, nil
}

// LooksLikeAPIKey is a cheap shape check that tells an API key from a JWT.
func LooksLikeAPIKey(token string) bool {
	_, err := ParseAPIKey(token)
	return err == nil
}

// Hash returns "sha256:<hex>" of a credential.
func Hash(plaintext string) string {
	sum := Sum(plaintext)
	return HashOfDigest(sum[:])
}

// Sum is the raw SHA-256 of a presented credential (or token), hashed in place:
// the []byte(s) a caller would write copies the credential onto the heap on
// every request (sha256's argument escapes).
func Sum(s string) [sha256.Size]byte {
	return sha256.Sum256(readOnly(s))
}

// readOnly is s's bytes without a copy, for functions that only read them
// (sha256, crc32): nothing may write through it.
func readOnly(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// HashOfDigest is Hash for a credential known only by its raw SHA-256.
func HashOfDigest(sum []byte) string {
	return hashPrefix + hex.EncodeToString(sum)
}

// DigestOfHash is HashOfDigest's inverse: the raw SHA-256 a "sha256:<64 hex>" names.
func DigestOfHash(hash string) ([sha256.Size]byte, bool) {
	var sum [sha256.Size]byte
	hexPart, ok := strings.CutPrefix(hash, hashPrefix)
	if !ok || len(hexPart) != hex.EncodedLen(sha256.Size) {
		return sum, false
	}
	_, err := hex.Decode(sum[:], []byte(hexPart))
	return sum, err == nil
}

// KeyID is the short public identifier of a credential: the first 12 hex digits of its hash.
func KeyID(hash string) string {
	h := strings.TrimPrefix(hash, hashPrefix)
	if len(h) < 12 {
		return h
	}
	return h[:12]
}

// NewClientSecret returns 64 lowercase hex characters (256 random bits).
func NewClientSecret(random io.Reader) (string, error) { return randomHex(random, 32) }

var (
	clientIDPattern     = regexp.MustCompile(`^[0-9a-f]{24}$`)
	clientSecretPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidClientID reports whether s has the client_id format (24 lowercase hex
// digits; the manager derives them: internal/issuanceproof).
func ValidClientID(s string) bool { return clientIDPattern.MatchString(s) }

// ValidClientSecret reports whether s has the client_secret format.
func ValidClientSecret(s string) bool { return clientSecretPattern.MatchString(s) }

func randomHex(random io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// checksum is the CRC-32 of s in base62, padded to ChecksumLength (checksumOf
// gives its digits). It avoids big.Int: 62^6 > 2^32.
func checksum(s string) string {
	sum := checksumOf(s)
	return string(sum[:])
}

// checksumOf is checksum's digits, without a string to allocate: it runs on
// every request that presents a key.
func checksumOf(s string) [ChecksumLength]byte {
	n := crc32.Update(0, crc32.IEEETable, readOnly(s)) // no copy of the key
	var out [ChecksumLength]byte
	for i := ChecksumLength - 1; i >= 0; i-- {
		out[i] = base62Alphabet[n%62]
		n /= 62
	}
	return out
}

// base62 encodes n in exactly width digits, most significant first.
func base62(n *big.Int, width int) string {
	out := make([]byte, width)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62Alphabet[mod.Int64()]
	}
	if n.Sign() != 0 {
		panic("base62: value does not fit the width") // unreachable for the widths used here
	}
	return string(out)
}

// Rand is the production random source; tests inject their own.
var Rand io.Reader = rand.Reader
