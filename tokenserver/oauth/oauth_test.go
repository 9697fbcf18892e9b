package oauth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/latchkey-dev/latchkey/internal/jsonappend"
)

// The token endpoint's answer is what json.Encoder wrote before AppendJSON, and
// it arrives with a Content-Length (net/http's own for an answer that fits its
// buffer, ours for a longer one), never chunked.
func TestTokenResponseIsEncoders(t *testing.T) {
	var answer TokenResponse
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, 200, answer) }))
	defer server.Close()
	for _, r := range []TokenResponse{
		{AccessToken: "eyJhbGciOiJFUzI1NiJ9.e30.sig", TokenType: "Bearer", ExpiresIn: 3600},
		{AccessToken: "a", TokenType: "Bearer", ExpiresIn: 300, Scope: "leads:read <x>", RefreshToken: "r&\"t"},
		{},
		filledTokenResponse(),
		bodyOf(chunkingSize), bodyOf(chunkingSize + 1), // as long as net/http's buffer, and one byte longer
		{AccessToken: strings.Repeat("eyJ", chunkingSize), TokenType: "Bearer", ExpiresIn: 3600},
	} {
		want, _ := json.Marshal(r)
		answer = r
		resp, err := http.Get(server.URL)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want)+"\n" {
			t.Errorf("WriteJSON:\n got %q\nwant %q", got, string(want)+"\n")
		}
		if h := resp.Header; h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" ||
			resp.ContentLength != int64(len(want)+1) || len(resp.TransferEncoding) > 0 {
			t.Errorf("headers: %v, Content-Length %d, Transfer-Encoding %v", h, resp.ContentLength, resp.TransferEncoding)
		}
	}
}

// bodyOf is a token response whose answer (its JSON and a newline) is n bytes long.
func bodyOf(n int) TokenResponse {
	r := TokenResponse{TokenType: "Bearer", ExpiresIn: 3600}
	empty, _ := json.Marshal(r)
	r.AccessToken = strings.Repeat("a", n-len(empty)-1)
	return r
}

// filledTokenResponse has every field set: a member added to TokenResponse but
// not to AppendJSON fails the test.
func filledTokenResponse() TokenResponse {
	var r TokenResponse
	jsonappend.Filled(&r)
	return r
}
