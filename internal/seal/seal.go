// Package seal encrypts the token server's state so that it can travel through
// the browser or the client, or rest where others can read it, and come back
// unaltered: login cookies, authorization codes, the freshness hint of refresh
// tokens (Ring, under the manager's rotating sealing keys), and the upstream
// provider's refresh token of a user's sign-in (SealWithSecret, under a key only
// the family's own refresh token yields). Nothing is written to the API server to sign a user in or
// to issue a code; every replica opens what any replica sealed, because the keys
// are the manager's sealing keys (package signingkeys) from one Secret.
//
// A sealed value is "<kid>.<base64url(nonce | AES-256-GCM ciphertext)>". The
// purpose (login, code, ...) is the additional data, so a value sealed for one
// purpose never opens as another, and the payload carries its own expiry.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// Purposes bound into every sealed value.
const (
	PurposeLogin       = "latchkey login v1"
	PurposeCode        = "latchkey authorization code v1"
	PurposeRefreshHint = "latchkey refresh token hint v1"
	PurposeUpstream    = "latchkey upstream refresh token v1"
)

// ErrInvalid is every failure to open: unknown key, tampering, wrong purpose,
// expired. One error, so that nothing tells them apart.
var ErrInvalid = errors.New("sealed value is invalid or expired")

// errNoKey means no sealing key is active (the manager has not published one).
var errNoKey = errors.New("no active sealing key")

// Ring is the loaded sealing keys of one version of the key Secret.
type Ring struct {
	set   signingkeys.Set        // for the schedule: which key seals when
	aeads map[string]cipher.AEAD // kid -> AEAD, every key not yet dropped
}

// NewRing builds a ring from the key set.
func NewRing(set signingkeys.Set) (*Ring, error) {
	r := &Ring{set: set, aeads: make(map[string]cipher.AEAD, len(set.Sealing))}
	for _, k := range set.Sealing {
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, err
		}
		if r.aeads[k.KID], err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// envelope is what is encrypted: the payload and when it stops opening.
type envelope struct {
	Exp     int64           `json:"exp"`
	Payload json.RawMessage `json:"p"`
}

// Seal encrypts payload (any JSON value) for purpose with the key that seals at
// now, valid until expires. Keys change hands by the schedule, not by a write, so
// every replica switches at the same moment.
func (r *Ring) Seal(purpose string, payload any, now, expires time.Time) (string, error) {
	if r == nil {
		return "", errNoKey
	}
	key, ok := r.set.ActiveSealing(now)
	if !ok {
		return "", errNoKey
	}
	aead := r.aeads[key.KID]
	raw, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	plaintext, err := json.Marshal(envelope{Exp: expires.Unix(), Payload: raw})
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := aead.Seal(nonce, nonce, plaintext, []byte(purpose))
	return key.KID + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts a value sealed for purpose into payload, if it is intact and not
// expired at now.
func (r *Ring) Open(purpose, value string, now time.Time, payload any) error {
	if r == nil || len(value) > 16<<10 {
		return ErrInvalid
	}
	kid, body, ok := strings.Cut(value, ".")
	aead, known := r.aeads[kid]
	if !ok || !known {
		return ErrInvalid
	}
	sealed, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(sealed) < aead.NonceSize()+aead.Overhead() {
		return ErrInvalid
	}
	plaintext, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(purpose))
	if err != nil {
		return ErrInvalid
	}
	var env envelope
	if err := json.Unmarshal(plaintext, &env); err != nil || !now.Before(time.Unix(env.Exp, 0)) {
		return ErrInvalid
	}
	if err := json.Unmarshal(env.Payload, payload); err != nil {
		return ErrInvalid
	}
	return nil
}

// SealWithSecret encrypts plaintext for purpose under a key derived (HKDF-SHA256)
// from secret, so that only a holder of secret opens it: a value stored where
// others can read it (an OAuthGrant's status) and opened only when its owner
// presents the secret (a refresh token). The manager's rotating keys play no
// part, so it opens for as long as secret lives. The value is base64url(nonce |
// AES-256-GCM ciphertext), with purpose as the additional data.
func SealWithSecret(secret []byte, purpose string, plaintext []byte) (string, error) {
	aead, err := secretAEAD(secret, purpose)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plaintext, []byte(purpose))), nil
}

// OpenWithSecret opens what SealWithSecret sealed with the same secret and purpose.
func OpenWithSecret(secret []byte, purpose, value string) ([]byte, error) {
	aead, err := secretAEAD(secret, purpose)
	if err != nil {
		return nil, ErrInvalid
	}
	sealed, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrInvalid
	}
	plaintext, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(purpose))
	if err != nil {
		return nil, ErrInvalid
	}
	return plaintext, nil
}

func secretAEAD(secret []byte, purpose string) (cipher.AEAD, error) {
	if len(secret) < 16 {
		return nil, errors.New("the secret is too short to derive a key from")
	}
	key, err := hkdf.Key(sha256.New, secret, nil, purpose, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
