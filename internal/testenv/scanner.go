package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
)

// SecretScanner plays a secret scanner (GitHub's partner program): no reporter
// can be reached from these machines, so the tests sign reports with a P-256 key
// pair of their own and give the token server its public key in GitHub's
// key-list format.
type SecretScanner struct {
	// KeyID names the key: SHA-256 (hex) of its DER form, as GitHub's do.
	KeyID string
	// KeyList is {"public_keys": [{key_identifier, key (PEM), is_current}]}.
	KeyList []byte
	key     *ecdsa.PrivateKey
}

// NewSecretScanner generates the scanner's key pair.
func NewSecretScanner() (*SecretScanner, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	s := &SecretScanner{KeyID: hex.EncodeToString(sum[:]), key: key}
	s.KeyList, err = json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": s.KeyID, "is_current": true,
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}}})
	return s, err
}

// Sign is the signature header's value for body: base64 of the ASN.1 ECDSA
// signature over SHA-256 of the raw bytes.
func (s *SecretScanner) Sign(body []byte) (string, error) {
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, digest[:])
	return base64.StdEncoding.EncodeToString(sig), err
}
