package authz

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkForwardAuth is one forward-auth decision through the HTTP handler, as
// make bench drives it over the network (make bench holds the figures that count).
func BenchmarkForwardAuth(b *testing.B) {
	a, key := fuzzAuthorizer(b)
	h := NewServer(a, "latchkey", prometheus.NewRegistry()).Handler()
	req := httptest.NewRequest(http.MethodGet, "/authz/api/ns/leads", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", "/v1/leads/42")
	req.Header.Set("X-Forwarded-Host", "leads.test")
	req.Header.Set("Authorization", "Bearer "+key)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
