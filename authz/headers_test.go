package authz

import (
	"strings"
	"testing"
)

// okResponse names Decision.headers by position (lowerIdentityHeaders): the two
// lists must stay in one order.
func TestHeadersFollowIdentityHeaders(t *testing.T) {
	for i, h := range (Decision{Identity: &Identity{}}).headers() {
		if h[0] != identityHeaders[i] || lowerIdentityHeaders[i] != strings.ToLower(h[0]) {
			t.Errorf("header %d: %q, identityHeaders %q, lower %q", i, h[0], identityHeaders[i], lowerIdentityHeaders[i])
		}
	}
}
