package oauth

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/latchkey-dev/latchkey/internal/jsonappend"
)

// The token endpoint's answer is what json.Encoder wrote before AppendJSON.
func TestTokenResponseIsEncoders(t *testing.T) {
	for _, r := range []TokenResponse{
		{AccessToken: "eyJhbGciOiJFUzI1NiJ9.e30.sig", TokenType: "Bearer", ExpiresIn: 3600},
		{AccessToken: "a", TokenType: "Bearer", ExpiresIn: 300, Scope: "leads:read <x>", RefreshToken: "r&\"t"},
		{},
		filledTokenResponse(),
	} {
		want, _ := json.Marshal(r)
		rec := httptest.NewRecorder()
		WriteJSON(rec, 200, r)
		if got := rec.Body.String(); got != string(want)+"\n" {
			t.Errorf("WriteJSON:\n got %q\nwant %q", got, string(want)+"\n")
		}
		if h := rec.Header(); h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" ||
			h.Get("Content-Length") != strconv.Itoa(len(want)+1) {
			t.Errorf("headers: %v", h)
		}
	}
}

// filledTokenResponse has every field set: a member added to TokenResponse but
// not to AppendJSON fails the test.
func filledTokenResponse() TokenResponse {
	var r TokenResponse
	jsonappend.Filled(&r)
	return r
}
