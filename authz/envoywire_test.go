package authz

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// envoyCheck must read what the generated decoder reads: every message the
// generated decoder accepts is read to the same Request (the reference below is
// how Check read the generated message before envoyCheck), and every message
// envoyCheck refuses the generated decoder refuses too. Inputs: requests as
// Envoy sends them, concatenations of them (the wire's merge: fields sent
// twice, maps and header lists grown), fields of the wrong wire type, and
// random byte edits of all of those; FuzzEnvoyCheckReadsWhatTheGeneratedDecoderReads
// goes on from there.
func TestEnvoyCheckReadsWhatTheGeneratedDecoderReads(t *testing.T) {
	seeds := envoyCheckSeeds(t)
	for _, seed := range seeds {
		compareWithGenerated(t, seed)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		msg := slices.Clone(seeds[rng.IntN(len(seeds))])
		if rng.IntN(3) == 0 {
			msg = append(msg, seeds[rng.IntN(len(seeds))]...)
		}
		for range 1 + rng.IntN(3) {
			if len(msg) == 0 {
				break
			}
			switch i := rng.IntN(len(msg)); rng.IntN(3) {
			case 0:
				msg[i] = byte(rng.Uint32())
			case 1:
				msg = slices.Delete(msg, i, i+1)
			default:
				msg = slices.Insert(msg, i, byte(rng.Uint32()))
			}
		}
		compareWithGenerated(t, msg)
	}
}

func FuzzEnvoyCheckReadsWhatTheGeneratedDecoderReads(f *testing.F) {
	for _, seed := range envoyCheckSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(compareWithGenerated)
}

// envoyCheckSeeds are requests as Envoy sends them (the headers map, or
// header_map with raw values), with their context extensions, and the wire
// oddities the generated decoder tolerates.
func envoyCheckSeeds(t testing.TB) [][]byte {
	requests := []*authv3.CheckRequest{
		{},
		{Attributes: &authv3.AttributeContext{}},
		{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Principal: "spiffe://x", Labels: map[string]string{"a": "b"}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: "1", Method: "GET", Path: "/v1/leads?limit=50", Host: "leads.test", Scheme: "https", Size: 12, Body: "x",
				Headers: map[string]string{":authority": "leads.test", "authorization": "Bearer lk_live_abc",
					"x-api-key": "lk_live_abc", "x-latchkey-subject": "forged", "user-agent": "curl"},
			}},
			ContextExtensions: map[string]string{ContextAPI: "ns/leads", ContextScopes: "leads:read leads:write"},
		}},
		{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: "/", Host: "h",
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "Authorization", RawValue: []byte("Bearer a")}, {Key: "authorization", Value: "Bearer b"},
					{Key: "X-Latchkey_Subject", RawValue: []byte("\xff")}, {Key: "x-api-key", Value: "k", RawValue: []byte("r")},
				}},
			}},
			ContextExtensions: map[string]string{ContextScopes: " "},
		}},
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			HeaderMap: &corev3.HeaderMap{}, Headers: map[string]string{"authorization": "Bearer x"},
		}}}},
	}
	var seeds [][]byte
	for _, r := range requests {
		msg, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, msg)
	}
	// The same fields sent twice: the second occurrence merges into the first.
	seeds = append(seeds, slices.Concat(seeds[2], seeds[3]), slices.Concat(seeds[3], seeds[2], seeds[4]))
	// A field the check reads, sent with the wrong wire type (skipped), and
	// field numbers at and past the wire's limits.
	var odd []byte
	odd = protowire.AppendTag(odd, checkRequestAttributes, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 7)
	odd = protowire.AppendTag(odd, protowire.MaxValidNumber, protowire.Fixed32Type)
	odd = protowire.AppendFixed32(odd, 1)
	seeds = append(seeds, slices.Concat(odd, seeds[2]),
		protowire.AppendVarint(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType), 1))
	return seeds
}

// compareWithGenerated fails t when envoyCheck and the generated decoder read
// msg differently.
func compareWithGenerated(t *testing.T, msg []byte) {
	var generated authv3.CheckRequest
	generatedErr := proto.Unmarshal(msg, &generated)
	var c envoyCheck
	err := c.decode(slices.Clone(msg))
	switch {
	case generatedErr == nil && err != nil:
		t.Fatalf("%x: the generated decoder reads it, envoyCheck fails: %v", msg, err)
	case err != nil || generatedErr != nil:
		// envoyCheck refused it too; or it accepted what the generated decoder
		// refused for a field no check reads (a nested message it skips, UTF-8).
		return
	}
	want, got := generatedRequest(&generated), c.request()
	if got.Method != want.Method || got.Path != want.Path || got.Host != want.Host || got.API != want.API ||
		!reflect.DeepEqual(got.Scopes, want.Scopes) {
		t.Fatalf("%x: envoyCheck reads %q %q %q %q %q, the generated decoder %q %q %q %q %q", msg,
			got.Method, got.Path, got.Host, got.API, got.Scopes, want.Method, want.Path, want.Host, want.API, want.Scopes)
	}
	if (got.Imitation == "") != (want.Imitation == "") || got.Imitation != "" && !imitatesIdentityHeader(got.Imitation) {
		t.Fatalf("%x: envoyCheck finds imitation %q, the generated decoder %q", msg, got.Imitation, want.Imitation)
	}
	names := []string{"authorization", "Authorization", "x-api-key", "X-API-KEY", ""}
	for k := range generated.GetAttributes().GetRequest().GetHttp().GetHeaders() {
		names = append(names, k, strings.ToUpper(k))
	}
	for _, h := range generated.GetAttributes().GetRequest().GetHttp().GetHeaderMap().GetHeaders() {
		names = append(names, h.GetKey(), strings.ToLower(h.GetKey()))
	}
	for _, name := range names {
		if g, w := got.Header(name), want.Header(name); g != w {
			t.Fatalf("%x: header %q: envoyCheck reads %q, the generated decoder %q", msg, name, g, w)
		}
	}
}

// generatedRequest is the Request Check made of the generated message before
// envoyCheck: the reference.
func generatedRequest(req *authv3.CheckRequest) Request {
	attrs := req.GetAttributes()
	http := attrs.GetRequest().GetHttp()
	r := Request{Method: http.GetMethod(), Path: http.GetPath(), Host: http.GetHost(),
		API: attrs.GetContextExtensions()[ContextAPI]}
	if scopes, ok := attrs.GetContextExtensions()[ContextScopes]; ok {
		r.Scopes = strings.Fields(scopes)
		if r.Scopes == nil {
			r.Scopes = []string{}
		}
	}
	if raw := http.GetHeaderMap(); raw != nil {
		r.Header = func(name string) string {
			value, seen := "", false
			for _, h := range raw.GetHeaders() {
				if strings.EqualFold(h.GetKey(), name) {
					v := string(h.GetRawValue())
					if v == "" {
						v = h.GetValue()
					}
					if seen {
						return value + "," + v
					}
					value, seen = v, true
				}
			}
			return value
		}
		for _, h := range raw.GetHeaders() {
			if imitatesIdentityHeader(h.GetKey()) {
				r.Imitation = h.GetKey()
				break
			}
		}
		return r
	}
	headers := http.GetHeaders()
	r.Header = func(name string) string { return headers[name] }
	for name := range headers {
		if imitatesIdentityHeader(name) {
			r.Imitation = name
			break
		}
	}
	return r
}
