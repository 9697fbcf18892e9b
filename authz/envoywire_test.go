package authz

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// envoyCheck must read what the generated decoder reads, held to two
// references:
//   - the generated decoder: every message it accepts is read to the same
//     Request (generatedRequest is how Check read the generated message before
//     envoyCheck);
//   - the lean decoder: protobuf-go's own decoder for a proto2 description of
//     the six fields alone (no UTF-8 check, everything else unknown), which must
//     accept and refuse exactly what envoyCheck does, and read the same Request.
//
// Inputs: requests as Envoy sends them, concatenations of them (the wire's
// merge: fields sent twice, maps and header lists grown), wire oddities at each
// level (groups, end groups, wire types 6 and 7, field numbers 0, 19000, the
// largest and past it, overlong tags), and random byte edits of all of those;
// FuzzEnvoyCheckReadsWhatTheGeneratedDecoderReads goes on from there.
func TestEnvoyCheckReadsWhatTheGeneratedDecoderReads(t *testing.T) {
	seeds := envoyCheckSeeds(t)
	for _, seed := range seeds {
		compareWithReferences(t, seed)
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
		compareWithReferences(t, msg)
	}
}

func FuzzEnvoyCheckReadsWhatTheGeneratedDecoderReads(f *testing.F) {
	for _, seed := range envoyCheckSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(compareWithReferences)
}

// What envoyCheck keeps does not grow with the message: 100,000 header entries,
// in the map and in header_map, cost no allocation beyond the check itself.
func TestEnvoyCheckKeepsOnlyTheHeadersADecisionReads(t *testing.T) {
	var http []byte
	for i := range 100000 {
		entry := slices.Concat(field(entryKey, []byte(fmt.Sprint("x-header-", i%7))), field(entryValue, []byte("v")))
		http = append(http, field(httpHeaders, entry)...)
		http = append(http, field(httpHeaderMap, field(headerMapHeaders, entry))...)
	}
	http = append(http, field(httpHeaders, slices.Concat(field(entryKey, []byte("authorization")), field(entryValue, []byte("Bearer k"))))...)
	msg := inHTTP(http)
	check := &envoyCheck{wanted: []string{"authorization", "x-api-key"}}
	allocs := testing.AllocsPerRun(3, func() {
		*check = envoyCheck{wanted: check.wanted}
		if err := check.decode(msg); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("reading 200,000 header entries allocated %v times", allocs)
	}
	if got := check.request().Header("authorization"); got != "" {
		t.Fatalf("header_map present, the map's authorization must not be read: %q", got)
	}
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
					{Key: "X-Api-\u212Aey", Value: "kelvin"}, {Key: "\u212Aey", Value: "kelvin"}, // not x-api-key in HTTP
				}},
			}},
			ContextExtensions: map[string]string{ContextScopes: " "},
		}},
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			HeaderMap: &corev3.HeaderMap{}, Headers: map[string]string{"authorization": "Bearer x"},
		}}, ContextExtensions: map[string]string{ContextScopes: ""}}},
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
	// Groups, end groups and the reserved wire types, at each level and in an
	// entry; numbers at the wire's limits; overlong tags.
	entry := func(k, v string) []byte {
		return slices.Concat(field(entryKey, []byte(k)), field(entryValue, []byte(v)))
	}
	auth := field(httpHeaders, entry("authorization", "Bearer a"))
	group := func(num protowire.Number, inner []byte) []byte {
		return protowire.AppendTag(append(protowire.AppendTag(nil, num, protowire.StartGroupType), inner...), num, protowire.EndGroupType)
	}
	endGroup := protowire.AppendTag(nil, 2, protowire.EndGroupType)
	seeds = append(seeds,
		inHTTP(slices.Concat(auth, group(httpHeaders, entry("authorization", "Bearer b")))),
		inHTTP(field(httpHeaders, slices.Concat(entry("authorization", "Bearer a"), group(entryValue, nil)))),
		inHTTP(field(httpHeaders, slices.Concat(entry("authorization", "x"), group(entryKey, field(1, []byte("zz")))))),
		slices.Concat(group(checkRequestAttributes, inHTTP(auth)), inHTTP(auth)),
		slices.Concat(inHTTP(auth), endGroup),
		inHTTP(field(httpHeaders, slices.Concat(entry("a", "b"), endGroup))),
		slices.Concat(inHTTP(auth), []byte{0x0e}),
		inHTTP(field(httpHeaders, slices.Concat(entry("a", "b"), []byte{0x0f}))),
		slices.Concat(protowire.AppendVarint(protowire.AppendTag(nil, 19000, protowire.VarintType), 1), inHTTP(auth)),
		inHTTP(field(httpHeaders, slices.Concat(entry("a", "b"), field(protowire.MaxValidNumber, []byte("x"))))),
		inHTTP(field(httpHeaders, slices.Concat(entry("a", "b"), []byte{0x02, 0x00}))),
		slices.Concat([]byte{0x8a, 0x80, 0x00}, protowire.AppendVarint(nil, uint64(len(inHTTP(auth))-2)), inHTTP(auth)[2:]),
		slices.Concat([]byte{0x8a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0x00}),
		// Not UTF-8, then what a decision reads: an imitation and the credential.
		inHTTP(slices.Concat(field(httpHeaders, entry("user-agent", "Espa\xf1a")), field(httpHeaders, entry("x_latchkey_subject", "v")), auth)),
		inHTTP(slices.Concat(field(httpHeaderMap, field(headerMapHeaders, entry("authorization", "\xff"))),
			field(httpHeaderMap, field(headerMapHeaders, slices.Concat(entry("Authorization", "b"), field(headerValueRaw, []byte("c"))))),
			field(httpHeaderMap, field(headerMapHeaders, entry("AUTHORIZATION", "d"))))),
		inHTTP(slices.Concat(field(httpHeaderMap, nil), auth)),
		inHTTP(protowire.AppendVarint(protowire.AppendTag(nil, httpHeaderMap, protowire.VarintType), 1)),
	)
	return seeds
}

// field is a length-delimited field.
func field(num protowire.Number, value []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), value)
}

// inHTTP is a CheckRequest whose attributes.request.http is http.
func inHTTP(http []byte) []byte {
	return field(checkRequestAttributes, field(attributesRequest, field(requestHTTP, http)))
}

// compareWithReferences fails t when envoyCheck reads msg otherwise than the
// lean decoder, or than the generated decoder where that one accepts it.
func compareWithReferences(t *testing.T, msg []byte) {
	c := envoyCheck{wanted: []string{"authorization", "x-api-key"}}
	err := c.decode(slices.Clone(msg))
	lean, leanKeys, leanErr := leanRequest(msg)
	switch {
	case errors.Is(leanErr, errLeanPanicked):
		// protobuf-go's reflective decoder panics on a map entry that repeats
		// its key with another wire type; the generated one below still holds.
	case (leanErr == nil) != (err == nil):
		t.Fatalf("%x: the lean decoder's error %v, envoyCheck's %v", msg, leanErr, err)
	case err == nil:
		sameRequest(t, msg, c.request(), lean, leanKeys)
	}
	var generated authv3.CheckRequest
	if proto.Unmarshal(msg, &generated) != nil {
		return // refused: envoyCheck may accept it (UTF-8, a message it skips)
	}
	if err != nil {
		t.Fatalf("%x: the generated decoder reads it, envoyCheck fails: %v", msg, err)
	}
	var keys []string
	for k := range generated.GetAttributes().GetRequest().GetHttp().GetHeaders() {
		keys = append(keys, k)
	}
	for _, h := range generated.GetAttributes().GetRequest().GetHttp().GetHeaderMap().GetHeaders() {
		keys = append(keys, h.GetKey())
	}
	sameRequest(t, msg, c.request(), generatedRequest(&generated), keys)
}

// sameRequest fails t when got and want differ in anything a decision reads:
// keys are the message's header names, read by each spelling.
func sameRequest(t *testing.T, msg []byte, got, want Request, keys []string) {
	t.Helper()
	if got.Method != want.Method || got.Path != want.Path || got.Host != want.Host || got.API != want.API ||
		!reflect.DeepEqual(got.Scopes, want.Scopes) {
		t.Fatalf("%x: envoyCheck reads %q %q %q %q %q, the reference %q %q %q %q %q", msg,
			got.Method, got.Path, got.Host, got.API, got.Scopes, want.Method, want.Path, want.Host, want.API, want.Scopes)
	}
	if (got.Imitation == "") != (want.Imitation == "") || got.Imitation != "" && !imitatesIdentityHeader(got.Imitation) {
		t.Fatalf("%x: envoyCheck finds imitation %q, the reference %q", msg, got.Imitation, want.Imitation)
	}
	names := []string{"authorization", "Authorization", "x-api-key", "X-API-KEY", ""}
	for _, k := range keys {
		names = append(names, k, strings.ToLower(k), strings.ToUpper(k))
	}
	for _, name := range names {
		if g, w := got.Header(name), want.Header(name); g != w {
			t.Fatalf("%x: header %q: envoyCheck reads %q, the reference %q", msg, name, g, w)
		}
	}
}

// leanCheckRequest describes, in proto2 (no UTF-8 check), the fields of a
// CheckRequest a decision reads, by their numbers, and nothing else.
var leanCheckRequest = func() protoreflect.MessageDescriptor {
	optional := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	repeated := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	fieldOf := func(name string, num protowire.Number, label *descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(int32(num)), Label: label,
			Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()}
		switch typeName {
		case "":
		case "bytes":
			f.Type = descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum()
		default:
			f.Type, f.TypeName = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), proto.String(typeName)
		}
		return f
	}
	mapEntry := func(name string) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name),
			Field:   []*descriptorpb.FieldDescriptorProto{fieldOf("key", entryKey, optional, ""), fieldOf("value", entryValue, optional, "")},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}}
	}
	message := func(name string, fields ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name), Field: fields}
	}
	attributes := message("Attributes", fieldOf("request", attributesRequest, optional, ".lean.Request"),
		fieldOf("context_extensions", attributesExtensions, repeated, ".lean.Attributes.ContextExtensionsEntry"))
	attributes.NestedType = []*descriptorpb.DescriptorProto{mapEntry("ContextExtensionsEntry")}
	http := message("HTTP", fieldOf("method", httpMethod, optional, ""),
		fieldOf("headers", httpHeaders, repeated, ".lean.HTTP.HeadersEntry"), fieldOf("path", httpPath, optional, ""),
		fieldOf("host", httpHost, optional, ""), fieldOf("header_map", httpHeaderMap, optional, ".lean.HeaderMap"))
	http.NestedType = []*descriptorpb.DescriptorProto{mapEntry("HeadersEntry")}
	file, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("lean.proto"), Package: proto.String("lean"), Syntax: proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{
			message("CheckRequest", fieldOf("attributes", checkRequestAttributes, optional, ".lean.Attributes")),
			attributes,
			message("Request", fieldOf("http", requestHTTP, optional, ".lean.HTTP")),
			http,
			message("HeaderMap", fieldOf("headers", headerMapHeaders, repeated, ".lean.HeaderValue")),
			message("HeaderValue", fieldOf("key", entryKey, optional, ""), fieldOf("value", entryValue, optional, ""),
				fieldOf("raw_value", headerValueRaw, optional, "bytes")),
		}}, nil)
	if err != nil {
		panic(err)
	}
	return file.Messages().ByName("CheckRequest")
}()

var errLeanPanicked = errors.New("the lean decoder panicked")

// leanRequest is the Request the lean decoder reads in msg (as generatedRequest
// reads the generated message), and the message's header names.
func leanRequest(msg []byte) (r Request, keys []string, err error) {
	defer func() {
		if recover() != nil {
			err = errLeanPanicked
		}
	}()
	m := dynamicpb.NewMessage(leanCheckRequest)
	if err := proto.Unmarshal(msg, m); err != nil {
		return Request{}, nil, err
	}
	get := func(m protoreflect.Message, name string) protoreflect.Value {
		return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name)))
	}
	attributes := get(m, "attributes").Message()
	http := get(get(attributes, "request").Message(), "http").Message()
	r = Request{Method: get(http, "method").String(), Path: get(http, "path").String(), Host: get(http, "host").String()}
	extensions := get(attributes, "context_extensions").Map()
	if api := extensions.Get(protoreflect.ValueOfString(ContextAPI).MapKey()); api.IsValid() {
		r.API = api.String()
	}
	if scopes := extensions.Get(protoreflect.ValueOfString(ContextScopes).MapKey()); scopes.IsValid() {
		r.Scopes = strings.Fields(scopes.String())
		if r.Scopes == nil {
			r.Scopes = []string{}
		}
	}
	headers := get(http, "headers").Map()
	headers.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k.String())
		return true
	})
	if !http.Has(http.Descriptor().Fields().ByName("header_map")) {
		r.Header = func(name string) string {
			if v := headers.Get(protoreflect.ValueOfString(name).MapKey()); v.IsValid() {
				return v.String()
			}
			return ""
		}
		for _, k := range keys {
			if imitatesIdentityHeader(k) {
				r.Imitation = k
			}
		}
		return r, keys, nil
	}
	var raw []*corev3.HeaderValue
	list := get(get(http, "header_map").Message(), "headers").List()
	for i := range list.Len() {
		h := list.Get(i).Message()
		raw = append(raw, &corev3.HeaderValue{Key: get(h, "key").String(), Value: get(h, "value").String(), RawValue: get(h, "raw_value").Bytes()})
		keys = append(keys, get(h, "key").String())
	}
	fromRaw := generatedRequest(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: raw}}}}})
	r.Header, r.Imitation = fromRaw.Header, fromRaw.Imitation
	return r, keys, nil
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
				if lowerASCII(h.GetKey()) == lowerASCII(name) { // HTTP: ASCII case only
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

// A decision reads no header but the ones envoyCheck keeps as it reads the
// message (checkCodec's wanted): any other is read from the whole message
// again, on every check. A new header read belongs in newCheckCodec.
func TestDecideReadsOnlyTheHeadersTheCodecKeeps(t *testing.T) {
	a, key := fuzzAuthorizer(t)
	wanted := newCheckCodec(a.APIKeyHeader).wanted
	for _, headers := range []map[string]string{
		{}, {"authorization": "Bearer " + key}, {"x-api-key": key}, {"authorization": "Bearer " + key, "x-api-key": key},
		{"authorization": "Bearer a.b.c"}, {"authorization": "Basic x"}, {"x-api-key": "lk_live_nope"},
	} {
		for _, path := range []string{"/v1/leads", "/nope", "/v1/../x"} {
			var asked []string
			a.Decide(Request{Method: "GET", Path: path, Host: "leads.test", Header: func(name string) string {
				asked = append(asked, name)
				return headers[name]
			}})
			for _, name := range asked {
				if !slices.Contains(wanted, name) {
					t.Fatalf("Decide read header %q, which checkCodec does not keep (%q)", name, wanted)
				}
			}
		}
	}
}

// lowerASCII lowers a name's ASCII letters and nothing else, byte by byte (the
// references' own spelling of HTTP's case-insensitive names).
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
