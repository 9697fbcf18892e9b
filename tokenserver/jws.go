package tokenserver

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unsafe"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// jwtSigner signs access tokens with one key as compact JWS (RFC 7515 §7.1).
//
// The protected header is the same for every token of a key, so it is encoded
// once, here; a token then costs the claims' JSON, two base64 encodings into one
// buffer, and the signature from the standard library. go-jose's Signer (still
// used for keys, the JWKS and verification) re-marshals the header and builds a
// JSONWebSignature per token: about 15 µs of an 85 µs EdDSA token on one core in
// make bench's profile, the largest cost after the signature and the socket.
// The tests verify every algorithm's tokens with an independent JOSE library.
type jwtSigner struct {
	alg           string
	key           crypto.Signer
	prefix        []byte // base64url(protected header) + "."
	signatureSize int    // bytes: the token's buffer is sized once, exactly
}

// jwsHeader is the protected header of an RFC 9068 access token.
type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

func newJWTSigner(key signingkeys.Key) (*jwtSigner, error) {
	signer, ok := key.Private.Key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s is not a private key", key.KID)
	}
	signatureSize := 64 // ES256 (R and S, 32 bytes each) and EdDSA
	switch k := signer.(type) {
	case *rsa.PrivateKey:
		if key.Algorithm != signingkeys.RS256 {
			return nil, fmt.Errorf("signing key %s: an RSA key cannot sign %s", key.KID, key.Algorithm)
		}
		// go-jose fills the CRT values from the JWK but does not precompute the
		// key; without this every signature redoes that work (~15% of RS256).
		k.Precompute()
		signatureSize = k.Size()
	case *ecdsa.PrivateKey:
		if key.Algorithm != signingkeys.ES256 || k.Curve.Params().BitSize != 256 {
			return nil, fmt.Errorf("signing key %s: not a P-256 key for ES256", key.KID)
		}
	case ed25519.PrivateKey:
		if key.Algorithm != signingkeys.EdDSA {
			return nil, fmt.Errorf("signing key %s: an Ed25519 key cannot sign %s", key.KID, key.Algorithm)
		}
	default:
		return nil, fmt.Errorf("signing key %s: unsupported key type %T", key.KID, signer)
	}
	header, err := json.Marshal(jwsHeader{Alg: key.Algorithm, Kid: key.KID, Typ: "at+jwt"})
	if err != nil {
		return nil, err
	}
	prefix := base64.RawURLEncoding.AppendEncode(nil, header)
	return &jwtSigner{alg: key.Algorithm, key: signer, prefix: append(prefix, '.'), signatureSize: signatureSize}, nil
}

// sign returns header.payload.signature for the JSON payload.
func (s *jwtSigner) sign(payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(s.prefix)+enc.EncodedLen(len(payload))+1+enc.EncodedLen(s.signatureSize))
	buf = append(buf, s.prefix...)
	buf = enc.AppendEncode(buf, payload)
	signature, err := s.signature(buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, signature)
	// The token is buf itself, not a copy (make bench: a token's second ~1 KB):
	// nothing writes to buf after this.
	return unsafe.String(unsafe.SliceData(buf), len(buf)), nil
}

// signature signs the JWS signing input as RFC 7518 §3 (RS256, ES256) and RFC 8037 (EdDSA) say.
func (s *jwtSigner) signature(input []byte) ([]byte, error) {
	switch s.alg {
	case signingkeys.EdDSA:
		return s.key.Sign(rand.Reader, input, crypto.Hash(0))
	case signingkeys.RS256:
		digest := sha256.Sum256(input)
		return s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
	case signingkeys.ES256:
		digest := sha256.Sum256(input)
		der, err := s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return nil, err
		}
		return ecdsaDERToJWS(der)
	}
	return nil, fmt.Errorf("unsupported algorithm %s", s.alg)
}

// ecdsaDERToJWS turns a P-256 signature from ASN.1 DER (what crypto.Signer
// returns) into what JWS wants (RFC 7518 §3.4): R and S as 32-byte big-endian
// integers, concatenated. (ecdsa.Sign's big.Int results cost ~8 µs more in allocations.)
func ecdsaDERToJWS(der []byte) ([]byte, error) {
	var seq, r, sig cryptobyte.String
	input := cryptobyte.String(der)
	if !input.ReadASN1(&seq, asn1.SEQUENCE) || !input.Empty() ||
		!seq.ReadASN1(&r, asn1.INTEGER) || !seq.ReadASN1(&sig, asn1.INTEGER) || !seq.Empty() {
		return nil, fmt.Errorf("malformed ECDSA signature")
	}
	out := make([]byte, 64)
	for i, n := range []cryptobyte.String{r, sig} {
		n = bytes.TrimLeft(n, "\x00") // DER adds a zero byte to keep a high bit positive
		if len(n) > 32 {
			return nil, fmt.Errorf("malformed ECDSA signature")
		}
		copy(out[32*(i+1)-len(n):32*(i+1)], n)
	}
	return out, nil
}
