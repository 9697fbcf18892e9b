package serve

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// FloorPath is where a server started with Config.Floor answers as a no-op.
//
// The floor is what `make bench` measures each request shape against: the
// cheapest answer this very server (its listener, its connection handling, its
// draining wrapper) can give to a request of that shape. A request to
// FloorPath+"answer" has its body read and, when it is a form, parsed, and gets
// the status, headers and body last given to FloorPath+"configure" (a JSON
// FloorAnswer), and nothing else happens: no authentication, no lookup, no
// metrics. The benchmark configures it with a real answer of the endpoint it
// measures and sends the same requests to it, path aside.
//
// It is off unless a process is started with --benchmark-floor, and nothing in
// the chart or config/ turns it on: an anonymous caller could set its answer.
const FloorPath = "/debug/floor/"

// FloorAnswer is the answer the floor gives until configured again.
type FloorAnswer struct {
	Status int                 `json:"status"`
	Header map[string][]string `json:"header"`
	Body   []byte              `json:"body"`
}

// maxFloorBytes bounds a configured answer and a body the floor reads.
const maxFloorBytes = 1 << 20

// withFloor routes FloorPath to a floor and everything else to next.
func withFloor(next http.Handler) http.Handler {
	var answer atomic.Pointer[FloorAnswer]
	answer.Store(&FloorAnswer{Status: http.StatusOK})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, FloorPath) {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxFloorBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case FloorPath + "configure":
			var a FloorAnswer
			if err := json.Unmarshal(body, &a); err != nil || a.Status < 100 || a.Status > 599 {
				http.Error(w, "a FloorAnswer as JSON, with a status", http.StatusBadRequest)
				return
			}
			answer.Store(&a)
			w.WriteHeader(http.StatusNoContent)
		case FloorPath + "answer":
			if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
				if _, err := url.ParseQuery(string(body)); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
			}
			a := answer.Load()
			h := w.Header()
			for name, values := range a.Header {
				h[name] = values
			}
			w.WriteHeader(a.Status)
			_, _ = w.Write(a.Body)
		default:
			http.NotFound(w, r)
		}
	})
}
