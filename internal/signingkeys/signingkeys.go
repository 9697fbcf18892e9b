// Package signingkeys defines the token-signing key set that the manager keeps in
// one Secret and every token-server replica reads.
//
// Each key carries its own schedule: it is published from CreatedAt, signs from
// ActivatesAt until RetiresAt, and is deleted once every token it could have signed
// has expired (RetiresAt + the longest token lifetime). The manager generates each
// key one full rotation interval before it starts signing, so resource servers see
// it in the JWKS long before the first token it signs. Because replicas choose the
// signing key by time, not by a state field, they switch together without talking
// to each other.
package signingkeys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// SecretDataKey is the data key of the Secret that holds the key set.
const SecretDataKey = "keys.json"

// Algorithms the token server can sign with.
const (
	RS256 = "RS256"
	ES256 = "ES256"
	EdDSA = "EdDSA"
)

// SupportedAlgorithms lists the algorithms in the order they are documented.
var SupportedAlgorithms = []string{RS256, ES256, EdDSA}

// Key is one signing key with its schedule. It holds private material: never log it.
type Key struct {
	KID         string    `json:"kid"`
	Algorithm   string    `json:"alg"`
	CreatedAt   time.Time `json:"createdAt"`
	ActivatesAt time.Time `json:"activatesAt"`
	RetiresAt   time.Time `json:"retiresAt"`
	// Private is the private JWK (RFC 7517).
	Private jose.JSONWebKey `json:"jwk"`
}

// Set is the content of the Secret.
type Set struct {
	Keys []Key `json:"keys"`
	// Sealing are the symmetric keys that seal the token server's short-lived
	// state: login cookies and authorization codes (package seal). Kept beside the
	// signing keys so that every replica opens what any replica sealed.
	Sealing []SealingKey `json:"sealing,omitempty"`
}

// SealingKey is one 256-bit AEAD key with its schedule. Never log it.
type SealingKey struct {
	KID         string    `json:"kid"`
	CreatedAt   time.Time `json:"createdAt"`
	ActivatesAt time.Time `json:"activatesAt"`
	RetiresAt   time.Time `json:"retiresAt"`
	Secret      []byte    `json:"secret"`
}

// SealingKeySize is the size of a sealing key (AES-256).
const SealingKeySize = 32

// DefaultSealingRotation is how long one sealing key seals. What it seals lives
// minutes, so a retired key is kept only SealingRetention.
const (
	DefaultSealingRotation = 24 * time.Hour
	SealingRetention       = time.Hour
)

// ActiveSealing returns the sealing key that seals at now.
func (s Set) ActiveSealing(now time.Time) (SealingKey, bool) {
	for _, k := range s.Sealing {
		if !now.Before(k.ActivatesAt) && now.Before(k.RetiresAt) {
			return k, true
		}
	}
	return SealingKey{}, false
}

// Policy is how the manager schedules keys.
type Policy struct {
	Algorithms []string
	// RotationInterval is how long each key signs.
	RotationInterval time.Duration
	// MaxTokenLifetime bounds every token's lifetime (the largest accessTokenTTL);
	// a retired key is kept this long, plus a minute of clock skew.
	MaxTokenLifetime time.Duration
	// SealingRotation is how long each sealing key seals (DefaultSealingRotation
	// when zero).
	SealingRotation time.Duration
}

// Parse decodes the Secret data. Errors never include key material.
func Parse(data []byte) (Set, error) {
	var set Set
	if err := json.Unmarshal(data, &set); err != nil {
		return Set{}, fmt.Errorf("signing key set is not valid JSON")
	}
	for _, k := range set.Keys {
		if !k.Private.Valid() || k.Private.IsPublic() || !slices.Contains(SupportedAlgorithms, k.Algorithm) {
			return Set{}, fmt.Errorf("signing key %s is not a valid private %s key", k.KID, k.Algorithm)
		}
	}
	for _, k := range set.Sealing {
		if len(k.Secret) != SealingKeySize || k.KID == "" {
			return Set{}, fmt.Errorf("sealing key %q is not a %d-byte key", k.KID, SealingKeySize)
		}
	}
	return set, nil
}

// Marshal encodes the set for the Secret.
func (s Set) Marshal() ([]byte, error) { return json.Marshal(s) }

// Active returns the key of alg that signs at now.
func (s Set) Active(alg string, now time.Time) (Key, bool) {
	for _, k := range s.Keys {
		if k.Algorithm == alg && !now.Before(k.ActivatesAt) && now.Before(k.RetiresAt) {
			return k, true
		}
	}
	return Key{}, false
}

// Public returns the JWKS (RFC 7517) of every key in the set: the retired ones that
// may have signed a still-valid token, the active ones and the next ones.
func (s Set) Public() jose.JSONWebKeySet {
	jwks := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(s.Keys))}
	for _, k := range s.Keys {
		jwks.Keys = append(jwks.Keys, k.Private.Public())
	}
	return jwks
}

// Reconcile returns the set the policy wants at now, and the next moment it must
// be reconciled again. It keeps every key still needed, removes the expired ones,
// and generates the active and next key of each algorithm where missing.
func Reconcile(current Set, p Policy, now time.Time, random io.Reader) (Set, time.Time, error) {
	retention := p.MaxTokenLifetime + time.Minute
	var next Set
	for _, k := range current.Keys {
		if now.Before(k.RetiresAt.Add(retention)) {
			next.Keys = append(next.Keys, k)
		}
	}
	for _, alg := range p.Algorithms {
		// Walk the schedule forward: a key active now, and one after it.
		activatesAt := now
		if last, ok := latest(next, alg); ok && !last.RetiresAt.Before(now) {
			activatesAt = last.RetiresAt
		}
		for !activatesAt.After(now.Add(p.RotationInterval)) {
			key, err := Generate(alg, random, now, activatesAt, activatesAt.Add(p.RotationInterval))
			if err != nil {
				return Set{}, time.Time{}, err
			}
			next.Keys = append(next.Keys, key)
			activatesAt = key.RetiresAt
		}
	}
	slices.SortFunc(next.Keys, func(a, b Key) int { return a.ActivatesAt.Compare(b.ActivatesAt) })
	var err error
	if next.Sealing, err = reconcileSealing(current.Sealing, p, now, random); err != nil {
		return Set{}, time.Time{}, err
	}
	return next, wakeAt(next, retention, now), nil
}

// reconcileSealing keeps the sealing keys as Reconcile keeps the signing keys: one
// sealing now and the next one, each published a rotation before it seals, so that
// every replica can open what another sealed with it.
func reconcileSealing(current []SealingKey, p Policy, now time.Time, random io.Reader) ([]SealingKey, error) {
	rotation := p.SealingRotation
	if rotation <= 0 {
		rotation = DefaultSealingRotation
	}
	var next []SealingKey
	activatesAt := now
	for _, k := range current {
		if now.Before(k.RetiresAt.Add(SealingRetention)) {
			next = append(next, k)
			if !k.RetiresAt.Before(now) && k.RetiresAt.After(activatesAt) {
				activatesAt = k.RetiresAt
			}
		}
	}
	for !activatesAt.After(now.Add(rotation)) {
		secret := make([]byte, SealingKeySize)
		if _, err := io.ReadFull(random, secret); err != nil {
			return nil, fmt.Errorf("generating a sealing key: %w", err)
		}
		kid := make([]byte, 8)
		if _, err := io.ReadFull(random, kid); err != nil {
			return nil, fmt.Errorf("generating a sealing key: %w", err)
		}
		next = append(next, SealingKey{
			KID: base64.RawURLEncoding.EncodeToString(kid), Secret: secret, CreatedAt: now.UTC().Truncate(time.Second),
			ActivatesAt: activatesAt.UTC().Truncate(time.Second), RetiresAt: activatesAt.Add(rotation).UTC().Truncate(time.Second),
		})
		activatesAt = next[len(next)-1].RetiresAt
	}
	slices.SortFunc(next, func(a, b SealingKey) int { return a.ActivatesAt.Compare(b.ActivatesAt) })
	return next, nil
}

// latest is the key of alg that retires last.
func latest(s Set, alg string) (Key, bool) {
	var found Key
	ok := false
	for _, k := range s.Keys {
		if k.Algorithm == alg && (!ok || k.RetiresAt.After(found.RetiresAt)) {
			found, ok = k, true
		}
	}
	return found, ok
}

// wakeAt is the earliest future moment the set changes: a key activates (so a new
// next key is due) or a retired key can be deleted.
func wakeAt(s Set, retention time.Duration, now time.Time) time.Time {
	var wake time.Time
	consider := func(times ...time.Time) {
		for _, t := range times {
			if t.After(now) && (wake.IsZero() || t.Before(wake)) {
				wake = t
			}
		}
	}
	for _, k := range s.Keys {
		consider(k.ActivatesAt, k.RetiresAt.Add(retention))
	}
	for _, k := range s.Sealing {
		consider(k.ActivatesAt, k.RetiresAt.Add(SealingRetention))
	}
	return wake
}

// Generate creates a key of alg with the given schedule. Its kid is the RFC 7638
// thumbprint of its public key.
func Generate(alg string, random io.Reader, createdAt, activatesAt, retiresAt time.Time) (Key, error) {
	var private crypto.Signer
	var err error
	switch alg {
	case RS256:
		private, err = rsa.GenerateKey(random, 2048)
	case ES256:
		private, err = ecdsa.GenerateKey(elliptic.P256(), random)
	case EdDSA:
		_, private, err = ed25519.GenerateKey(random)
	default:
		return Key{}, fmt.Errorf("unsupported signing algorithm %q (want one of %v)", alg, SupportedAlgorithms)
	}
	if err != nil {
		return Key{}, fmt.Errorf("generating %s key: %w", alg, err)
	}
	jwk := jose.JSONWebKey{Key: private, Algorithm: alg, Use: "sig"}
	public := jwk.Public()
	thumbprint, err := public.Thumbprint(crypto.SHA256)
	if err != nil {
		return Key{}, err
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumbprint)
	return Key{
		KID: jwk.KeyID, Algorithm: alg, Private: jwk,
		CreatedAt: createdAt.UTC().Truncate(time.Second), ActivatesAt: activatesAt.UTC().Truncate(time.Second),
		RetiresAt: retiresAt.UTC().Truncate(time.Second),
	}, nil
}

// Fingerprint identifies a set's public content, for logs and metrics.
func (s Set) Fingerprint() string {
	h := sha256.New()
	for _, k := range s.Keys {
		h.Write([]byte(k.KID))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))[:12]
}

// Rand is the production random source.
var Rand io.Reader = rand.Reader
