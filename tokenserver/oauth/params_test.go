package oauth

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// A form body is read up to the limit whichever way its length is told, or
// mistold: declared (Content-Length), not declared (chunked), or declared
// shorter than the body a request not from net/http's server carries. One byte
// more is invalid_request.
func TestReadParamsBoundsTheBodyHoweverItsLengthIsTold(t *testing.T) {
	const limit = 64
	exactly := "token=" + strings.Repeat("k", limit-len("token="))
	for _, c := range []struct {
		name     string
		body     string
		declared bool
		ok       bool
	}{
		{"declared, at the limit", exactly, true, true},
		{"declared, a byte over", exactly + "k", true, false},
		{"undeclared, at the limit", exactly, false, true},
		{"undeclared, a byte over", exactly + "k", false, false},
		{"undeclared, far over", exactly + strings.Repeat("k", 1<<20), false, false},
		{"declared short, far over", exactly + strings.Repeat("k", 1<<20), true, false},
	} {
		r := httptest.NewRequest("POST", "/oauth2/introspect", strings.NewReader(c.body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		switch {
		case !c.declared:
			r.ContentLength = -1
			r.Body = io.NopCloser(strings.NewReader(c.body)) // of unknown length, as a chunked body
		case len(c.body) > limit:
			r.ContentLength = limit // a length within the limit, and more behind it
		}
		w := httptest.NewRecorder()
		params, err := ReadParams(w, r, limit)
		if ok := err == nil; ok != c.ok {
			t.Errorf("%s: error %v", c.name, err)
			continue
		}
		if c.ok && params.Get("token") != exactly[len("token="):] {
			t.Errorf("%s: token %q", c.name, params.Get("token"))
		}
	}
}
