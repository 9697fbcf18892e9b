package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
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
