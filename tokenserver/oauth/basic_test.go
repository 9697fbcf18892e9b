package oauth

import (
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
)

// BasicCredentials answers as r.BasicAuth for every spelling of the header:
// the scheme in any case, Unicode look-alikes, bad base64, no colon, several,
// empty parts, and a header too long for its buffer.
func TestBasicCredentialsIsBasicAuth(t *testing.T) {
	pair := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef01234567:" + strings.Repeat("5e", 32)))
	headers := []string{
		"", "Basic", "Basic ", "Basic " + pair, "basic " + pair, "BASIC " + pair, "bAsIc " + pair,
		"Basic  " + pair, "Bearer " + pair, "Baſic " + pair, "Basic\t" + pair, "Basic " + pair[:len(pair)-1],
		"Basic " + base64.StdEncoding.EncodeToString([]byte("no-colon")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("a:b:c")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(":")),
		"Basic " + base64.URLEncoding.EncodeToString([]byte("id>?:secret~~")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("id%3A:s%2B+é")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("id:"+strings.Repeat("s", 180))),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("id:"+strings.Repeat("s", 400))),
	}
	for _, h := range headers {
		r := httptest.NewRequest("POST", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		wantID, wantSecret, wantOK := r.BasicAuth()
		id, secret, ok := BasicCredentials(r)
		if id != wantID || secret != wantSecret || ok != wantOK {
			t.Errorf("%.40q: (%q, %.20q, %v), want (%q, %.20q, %v)", h, id, secret, ok, wantID, wantSecret, wantOK)
		}
	}
}

func FuzzBasicCredentialsIsBasicAuth(f *testing.F) {
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("id:secret")))
	f.Add("bAsIc Og==")
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header["Authorization"] = []string{h}
		wantID, wantSecret, wantOK := r.BasicAuth()
		if id, secret, ok := BasicCredentials(r); id != wantID || secret != wantSecret || ok != wantOK {
			t.Fatalf("%q: (%q, %q, %v), want (%q, %q, %v)", h, id, secret, ok, wantID, wantSecret, wantOK)
		}
	})
}
