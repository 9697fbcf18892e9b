package thirdparty

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"

	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// PKCE (RFC 7636), S256 only: the challenge an authorization request sends is
// checked by checkChallenge, and bound to the code; the verifier of the token
// request, by checkVerifier.

// checkVerifier applies PKCE (RFC 7636 §4.6, S256 only). A verifier sent for a code
// issued without a challenge is refused too (RFC 9700 §2.1.1: a downgrade).
func checkVerifier(challenge, verifier string) *oauth.Error {
	switch {
	case challenge == "" && verifier == "":
		return nil
	case challenge == "":
		return oauth.NewError(http.StatusBadRequest, "invalid_grant", "code_verifier sent for a code issued without code_challenge")
	case verifier == "":
		return oauth.ErrInvalidRequest("code_verifier is required")
	case !pkceValue(verifier):
		return oauth.ErrInvalidRequest("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) != 1 {
		return oauth.NewError(http.StatusBadRequest, "invalid_grant", "code_verifier does not match code_challenge")
	}
	return nil
}

// pkceValue reports whether v is a valid code_verifier or S256 code_challenge
// (RFC 7636 §4.1: 43-128 unreserved characters).
func pkceValue(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// checkChallenge checks an authorization request's code_challenge and
// code_challenge_method: absent (where the client may skip PKCE), or S256 with
// a base64url SHA-256. It returns the error description, or "".
func checkChallenge(challenge, method string, required bool) string {
	switch {
	case challenge == "" && method != "":
		return "code_challenge_method without code_challenge"
	case challenge == "" && required:
		return "PKCE is required: send code_challenge with code_challenge_method=S256"
	case challenge != "" && method != "S256":
		return "code_challenge_method must be S256"
	case challenge != "" && (!pkceValue(challenge) || len(challenge) != 43):
		return "code_challenge must be a base64url SHA-256 (43 characters)"
	}
	return ""
}
