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
