package tokenserver

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

// A request the shortcut takes is one the mux routes to the same endpoint, by
// every spelling a client can send: method case, escapes, dot segments, slashes,
// the absolute form, a query.
func TestTheShortcutRoutesAsTheMuxDoes(t *testing.T) {
	mux := http.NewServeMux()
	for _, pattern := range []string{"POST " + tokenPath, "POST " + introspectPath, "POST /oauth/token", "/"} {
		mux.Handle(pattern, http.NotFoundHandler())
	}
	var taken []string
	for _, method := range []string{"POST", "post", "GET", "HEAD", "PUT", "CONNECT"} {
		for _, target := range []string{introspectPath, tokenPath, "/oauth2/%69ntrospect", "/oauth2%2Fintrospect",
			"/oauth2/introspect/", "//oauth2/introspect", "/oauth2/../oauth2/introspect", "/oauth2/./token", "/OAUTH2/token",
			"/oauth2/introspect?x=1", "/oauth2/token#f", "http://other.example/oauth2/introspect", "/oauth2/introspect%00",
			"/oauth2/token%2F", "/oauth/token", "*"} {
			raw := method + " " + target + " HTTP/1.1\r\nHost: issuer.example\r\nContent-Length: 0\r\n\r\n"
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
			if err != nil {
				continue // the server refuses it before any handler
			}
			path := shortcut(r)
			if path == "" {
				continue
			}
			taken = append(taken, method+" "+target)
			if _, pattern := mux.Handler(r); pattern != "POST "+path {
				t.Errorf("%s %s: the shortcut takes it to %s, the mux to %q", method, target, path, pattern)
			}
		}
	}
	want := []string{"POST " + introspectPath, "POST " + tokenPath, "POST /oauth2/introspect?x=1", "POST http://other.example/oauth2/introspect"}
	if strings.Join(taken, "\n") != strings.Join(want, "\n") {
		t.Errorf("the shortcut took %q, want %q", taken, want)
	}
}
