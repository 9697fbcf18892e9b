package oauth

import (
	"io"
	"net/http/httptest"
	"net/url"
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
		params, release, err := ReadParams(w, r, limit)
		if ok := err == nil; ok != c.ok {
			t.Errorf("%s: error %v", c.name, err)
			continue
		}
		if c.ok && params.Get("token") != exactly[len("token="):] {
			t.Errorf("%s: token %q", c.name, params.Get("token"))
		}
		release.Release()
	}
}

// Forms are parsed into reused maps: a form read after another was released
// holds its own parameters only, and a repeatable parameter keeps every value
// however many parameters come before it.
func TestReadParamsAfterAReleasedForm(t *testing.T) {
	read := func(body string, repeatable ...string) (url.Values, Release, *Error) {
		r := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		params, release, err := ReadParams(httptest.NewRecorder(), r, 1<<10, repeatable...)
		return params, release, err
	}
	many := "a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&resource=r1&resource=r2"
	for range 3 {
		first, release, err := read(many, "resource")
		if err != nil || len(first) != 10 || first["h"][0] != "8" || first["i"][0] != "9" ||
			strings.Join(first["resource"], ",") != "r1,r2" {
			t.Fatalf("first form: %v, %v", first, err)
		}
		release.Release()
		second, release, err := read("grant_type=client_credentials&scope=leads%3Aread")
		if err != nil || len(second) != 2 || second["grant_type"][0] != "client_credentials" || second["scope"][0] != "leads:read" {
			t.Fatalf("second form, after the first was released: %v, %v", second, err)
		}
		release.Release()
		if _, _, err := read("resource=r1&resource=r2"); err == nil || !strings.Contains(err.Description, "resource is repeated") {
			t.Fatalf("a repeated parameter not listed as repeatable: %v", err)
		}
		if _, _, err := read("a=1;b=2"); err == nil {
			t.Fatal("a semicolon, as url.ParseQuery refuses")
		}
	}
	// Released twice, the parameters are pooled once: the next two forms get
	// maps of their own.
	_, release, _ := read("a=1")
	release.Release()
	release.Release()
	one, _, _ := read("one=1")
	two, _, _ := read("two=2")
	if len(one) != 1 || one.Get("one") != "1" || len(two) != 1 || two.Get("two") != "2" {
		t.Fatalf("after a double release, two forms read %v and %v", one, two)
	}
}

// A form of more pieces than url.ParseQuery reads is refused, as it was.
func TestReadParamsRefusesAsManyPiecesAsURLParseQuery(t *testing.T) {
	for _, pieces := range []int{maxFormParams, maxFormParams + 1} {
		body := "token=x" + strings.Repeat("&", pieces-1)
		_, urlErr := url.ParseQuery(body)
		r := httptest.NewRequest("POST", "/oauth2/introspect", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		params, release, err := ReadParams(httptest.NewRecorder(), r, 1<<20)
		if (err == nil) != (urlErr == nil) || (err == nil && params.Get("token") != "x") {
			t.Errorf("%d pieces: %v, where url.ParseQuery: %v", pieces, err, urlErr)
		}
		release.Release()
	}
}
