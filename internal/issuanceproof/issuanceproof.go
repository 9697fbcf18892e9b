// Package issuanceproof holds the manager's issuance key: a secret that only the manager
// knows, which binds what it writes into a tenant's namespace to the object it
// wrote it for.
//
// A credential Secret lives in the tenant's namespace, and the tenant may edit it.
// The manager writes the Secret first and the hash into status second, so after a
// crash between the two it must recognise a credential that it generated itself —
// and nothing else, since anything else in that Secret may be the tenant's. A
// Proof is an HMAC-SHA256, under the issuance key, of the object's kind, namespace,
// name and UID, the credential's serial and its hash: the tenant can read it but
// cannot make one for another credential, serial or object.
//
// An OAuthClient's client_id is derived from its UID with the same key (ClientID),
// so it is chosen by the manager and never read back from a Secret.
package issuanceproof

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// KeySize is the size of a new issuance key in bytes.
const KeySize = 32

// Key is the issuance key. Its String method never prints the secret.
type Key struct {
	id     string // public: the first 8 hex digits of the key's SHA-256
	secret []byte
}

// NewKey returns fresh key material from random (crypto/rand.Reader in production).
func NewKey(random io.Reader) ([]byte, error) {
	raw := make([]byte, KeySize)
	if _, err := io.ReadFull(random, raw); err != nil {
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	return raw, nil
}

// ParseKey loads key material. Errors never include it.
func ParseKey(raw []byte) (*Key, error) {
	if len(raw) < KeySize {
		return nil, fmt.Errorf("issuance key has %d bytes, want at least %d", len(raw), KeySize)
	}
	sum := sha256.Sum256(raw)
	return &Key{id: hex.EncodeToString(sum[:4]), secret: append([]byte(nil), raw...)}, nil
}

// ID identifies the key publicly (safe to log).
func (k *Key) ID() string { return k.id }

func (k *Key) String() string { return "issuance key " + k.id }

// Claim is what a Proof binds together.
type Claim struct {
	Kind      string // "APIKey", "OAuthClient"
	Namespace string
	Name      string
	UID       types.UID
	Serial    int64
	Hash      string // "sha256:<hex>" of the credential
}

// proofVersion starts every proof, so that the format can change.
const proofVersion = "v1"

// Proof returns the proof for c: "v1.<key id>.<base64url HMAC>".
func (k *Key) Proof(c Claim) string {
	return proofVersion + "." + k.id + "." + base64.RawURLEncoding.EncodeToString(k.mac("proof", c.message()))
}

// Verify reports whether proof was made by this key for exactly c.
func (k *Key) Verify(c Claim, proof string) bool {
	version, rest, _ := strings.Cut(proof, ".")
	id, encoded, _ := strings.Cut(rest, ".")
	if version != proofVersion || id != k.id {
		return false
	}
	mac, err := base64.RawURLEncoding.DecodeString(encoded)
	return err == nil && hmac.Equal(mac, k.mac("proof", c.message()))
}

// ClientID derives an OAuthClient's client_id from its UID: 24 hex digits (96
// bits) of a keyed PRF, as unpredictable as random ones and the same on every
// reconcile, so that a crash before status is written changes nothing.
func (k *Key) ClientID(uid types.UID) string {
	return hex.EncodeToString(k.mac("client-id", string(uid))[:12])
}

// mac is HMAC-SHA256 over a purpose label and a message, so that a value made for
// one purpose is never valid for another.
func (k *Key) mac(purpose, message string) []byte {
	h := hmac.New(sha256.New, k.secret)
	h.Write([]byte("latchkey.dev/" + purpose + "\x00" + message))
	return h.Sum(nil)
}

// message joins the fields with NUL, which none of them can contain (Kubernetes
// names and UIDs, decimal serials and hex hashes).
func (c Claim) message() string {
	return strings.Join([]string{c.Kind, c.Namespace, c.Name, string(c.UID), strconv.FormatInt(c.Serial, 10), c.Hash}, "\x00")
}
