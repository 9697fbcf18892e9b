package serve

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The floor answers what it was configured with, and leaves every other path to the server.
func TestFloorAnswersAsConfigured(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := withFloor(next)
	do := func(method, path, contentType, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do(http.MethodGet, "/oauth2/token", "", ""); w.Code != http.StatusTeapot {
		t.Fatalf("another path: %d, want the server's own answer", w.Code)
	}
	if w := do(http.MethodPost, FloorPath+"configure", "", `{"status":200,"header":{"Content-Type":["application/json"]},"body":"eyJhY3RpdmUiOnRydWV9"}`); w.Code != http.StatusNoContent {
		t.Fatalf("configure: %d %s", w.Code, w.Body)
	}
	w := do(http.MethodPost, FloorPath+"answer", "application/x-www-form-urlencoded", "token=abc")
	if w.Code != http.StatusOK || w.Body.String() != `{"active":true}` || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("answer: %d %q %v", w.Code, w.Body, w.Header())
	}
	if w := do(http.MethodPost, FloorPath+"answer", "application/x-www-form-urlencoded", "token=%zz"); w.Code != http.StatusBadRequest {
		t.Fatalf("a malformed form: %d, want 400 (the floor parses what it reads)", w.Code)
	}
	if w := do(http.MethodPost, FloorPath+"configure", "", `{"status":0}`); w.Code != http.StatusBadRequest {
		t.Fatalf("an answer without a status: %d, want 400", w.Code)
	}
}

// A floor with work does it before each answer: the work's key is made once, at
// configure, and a work the floor cannot do is refused there.
func TestFloorDoesItsWork(t *testing.T) {
	h := withFloor(http.NotFoundHandler())
	configure := func(body string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, FloorPath+"configure", strings.NewReader(body)))
		return w.Code
	}
	answer := func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, FloorPath+"answer", strings.NewReader("grant_type=client_credentials")))
		if w.Code != http.StatusOK || w.Body.String() != "{}" {
			t.Fatalf("answer: %d %q", w.Code, w.Body)
		}
	}
	if code := configure(`{"status":200,"body":"e30="}`); code != http.StatusNoContent {
		t.Fatalf("configure: %d", code)
	}
	plain := testing.AllocsPerRun(50, answer)
	if code := configure(`{"status":200,"body":"e30=","work":{"sign":"ES256","signBytes":450,"hash":[64,48]}}`); code != http.StatusNoContent {
		t.Fatalf("configure with work: %d", code)
	}
	// An ECDSA signature allocates; the plain answer's allocations are the floor's own.
	if working := testing.AllocsPerRun(50, answer); working <= plain {
		t.Fatalf("the working floor allocates %v per answer, the plain one %v: its signature was not made", working, plain)
	}
	for _, bad := range []string{`{"status":200,"work":{"sign":"HS256"}}`, `{"status":200,"work":{"hash":[-1]}}`} {
		if code := configure(bad); code != http.StatusBadRequest {
			t.Errorf("configure %s: %d, want 400", bad, code)
		}
	}
}
