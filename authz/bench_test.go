package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/ratelimit"
)

// BenchmarkForwardAuth is one forward-auth decision through the HTTP handler, as
// make bench drives it over the network (make bench holds the figures that count).
func BenchmarkForwardAuth(b *testing.B) {
	b.Run("unlimited", func(b *testing.B) { benchmarkForwardAuth(b, nil) })
	// A rate limit no request reaches: each check spends from its key's budget
	// and answers with the RateLimit fields (make bench's limited row).
	b.Run("limited", func(b *testing.B) {
		benchmarkForwardAuth(b, &latchkeyv1.APIRateLimit{RateLimit: latchkeyv1.RateLimit{Requests: 1_000_000_000, Per: metav1.Duration{Duration: time.Second}}})
	})
}

func benchmarkForwardAuth(b *testing.B, limit *latchkeyv1.APIRateLimit) {
	a, key := fuzzAuthorizer(b)
	if limit != nil {
		api := fuzzAPI()
		api.Spec.RateLimit = limit
		a.Index.UpsertAPI(api)
		a.Limits = ratelimit.New(1<<16, 1<<16)
	}
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
		if w.Code != 200 || (limit != nil) != (w.Header().Get("RateLimit-Policy") != "") {
			b.Fatal(w.Code, w.Header())
		}
	}
}

// BenchmarkGRPCCheck is one ext_authz Check with an API key, as Envoy sends it:
// the request's bytes read, the decision, the response's bytes written (what the
// server does beyond gRPC's transport).
func BenchmarkGRPCCheck(b *testing.B) {
	a, key := fuzzAuthorizer(b)
	g := grpcServer{NewServer(a, "latchkey", prometheus.NewRegistry())}
	msg, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/v1/leads/42", Host: "leads.test", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{":authority": "leads.test", ":method": "GET", ":path": "/v1/leads/42",
				"authorization": "Bearer " + key, "user-agent": "bench", "accept": "application/json"},
		}},
		ContextExtensions: map[string]string{ContextAPI: "ns/leads"},
	}})
	if err != nil {
		b.Fatal(err)
	}
	codec := newCheckCodec(a.APIKeyHeader)
	b.ReportAllocs()
	for b.Loop() {
		req := new(envoyCheck)
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, req); err != nil {
			b.Fatal(err)
		}
		resp, err := g.check(context.Background(), req)
		if err != nil || resp.GetStatus().GetCode() != 0 {
			b.Fatal(err, resp.GetStatus())
		}
		out, err := codec.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
}
