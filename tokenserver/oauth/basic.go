package oauth

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/latchkey-dev/latchkey/internal/ascii"
)

// BasicCredentials is r.BasicAuth: the same header, its scheme matched as
// case-insensitively (ASCII), decoded the same way, with one allocation where
// r.BasicAuth makes two (make bench: introspection's client authentication).
// A client id and secret decode into a buffer on the stack, and only the pair
// is copied out; a longer header is left to r.BasicAuth. Its id and secret are
// still form-encoded (RFC 6749 §2.3.1).
func BasicCredentials(r *http.Request) (id, secret string, ok bool) {
	const scheme = "basic "
	auth := r.Header.Get("Authorization")
	if !ascii.HasPrefixFold(auth, scheme) {
		return "", "", false
	}
	encoded := auth[len(scheme):]
	var decoded [256]byte // a 24-hex client id, a colon and a 64-hex secret take 89
	if base64.StdEncoding.DecodedLen(len(encoded)) > len(decoded) {
		return r.BasicAuth()
	}
	n, err := base64.StdEncoding.Decode(decoded[:], []byte(encoded))
	if err != nil {
		return "", "", false
	}
	if id, secret, ok = strings.Cut(string(decoded[:n]), ":"); !ok {
		return "", "", false
	}
	return id, secret, true
}
