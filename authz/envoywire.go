package authz

import (
	"context"
	"errors"
	"strings"
	"unsafe"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers "proto", which checkCodec wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/latchkey-dev/latchkey/internal/ascii"
)

// Envoy's CheckRequest, read from the wire.
//
// The generated decoder builds the whole AttributeContext on every check: peers,
// a map of every request header, metadata, each string copied and checked for
// UTF-8. A check reads six of those fields. envoyCheck is those six, read from
// the message's bytes by the protobuf wire rules the generated decoder follows for
// them, so that both see the same request:
//   - a field sent twice: the last value, and a message field's occurrences merged;
//   - a map entry: its last key and value (absent: ""), a later entry for the same
//     key replacing an earlier one;
//   - a field of the wrong wire type, or an unknown field: skipped;
//   - a malformed tag, varint or length, or a field number out of range: an error.
//
// Two differences, both on fields no decision reads: the fields skipped are not
// decoded (a malformed peer or metadata message is not an error), and no string
// is checked for UTF-8. A header that is not UTF-8 is then judged like any other,
// where the generated decoder failed the call, and a filter with
// failure_mode_allow let the request through.
// TestEnvoyCheckReadsWhatTheGeneratedDecoderReads holds the two to each other.

// envoyCheck is what Check reads of a CheckRequest. Its strings are slices of
// buf, a copy of the message made for it alone (Materialize, never a pooled
// buffer) and never written after; header values are copied out (header)
// before a decision can keep one. What it keeps is bounded whatever the
// message holds: the few headers a decision reads, not every entry.
type envoyCheck struct {
	buf []byte
	// wanted are the headers kept as the message is read: the credential
	// headers, as Decide names them (checkCodec). header reads any other one
	// from buf again.
	wanted             []string
	method, path, host string
	api, scopes        string // context extensions (ContextAPI, ContextScopes)
	hasScopes          bool
	// mapped[i] is wanted[i] in the headers map: its last entry's value.
	mapped [maxWanted]string
	// raw[i] is wanted[i]'s first two values in header_map, rawCount[i] how
	// many it has (at most 2 counted). header_map, when a filter with
	// encode_raw_headers sends it (hasRawHeaders, even empty), replaces the map.
	raw           [maxWanted][2]string
	rawCount      [maxWanted]int
	hasRawHeaders bool
	// The first header of each list whose name imitates an identity header.
	mapImitation, rawImitation string
	err                        error
}

// maxWanted bounds the headers kept as the message is read (authorization and
// the API-key header).
const maxWanted = 2

// Field numbers of the messages on the way to the fields a check reads.
const (
	checkRequestAttributes = 1  // CheckRequest.attributes
	attributesRequest      = 4  // AttributeContext.request
	attributesExtensions   = 10 // AttributeContext.context_extensions
	requestHTTP            = 2  // AttributeContext.Request.http
	httpMethod             = 2  // AttributeContext.HttpRequest.method
	httpHeaders            = 3  // .headers
	httpPath               = 4  // .path
	httpHost               = 5  // .host
	httpHeaderMap          = 13 // .header_map
	headerMapHeaders       = 1  // config.core.v3.HeaderMap.headers
	entryKey               = 1  // a map entry's key; HeaderValue.key
	entryValue             = 2  // a map entry's value; HeaderValue.value
	headerValueRaw         = 3  // HeaderValue.raw_value
)

// errMalformedCheck: the message breaks the wire format.
var errMalformedCheck = errors.New("malformed CheckRequest")

// decode reads msg, which the check keeps (see envoyCheck).
func (c *envoyCheck) decode(msg []byte) error {
	c.buf = msg
	if len(c.wanted) > maxWanted {
		return errors.New("envoyCheck: too many wanted headers")
	}
	r := fields{b: msg}
	for r.next() {
		if r.num == checkRequestAttributes {
			c.readAttributes(r.value)
		}
	}
	c.keep(r.err)
	return c.err
}

func (c *envoyCheck) readAttributes(msg []byte) {
	r := fields{b: msg}
	for r.next() {
		switch r.num {
		case attributesRequest:
			c.readRequest(r.value)
		case attributesExtensions:
			switch key, value, _ := c.readEntry(r.value); key {
			case ContextAPI:
				c.api = value
			case ContextScopes:
				c.scopes, c.hasScopes = value, true
			}
		}
	}
	c.keep(r.err)
}

func (c *envoyCheck) readRequest(msg []byte) {
	r := fields{b: msg}
	for r.next() {
		if r.num == requestHTTP {
			c.readHTTP(r.value)
		}
	}
	c.keep(r.err)
}

func (c *envoyCheck) readHTTP(msg []byte) {
	r := fields{b: msg}
	for r.next() {
		switch r.num {
		case httpMethod:
			c.method = c.str(r.value)
		case httpHeaders:
			key, value, _ := c.readEntry(r.value)
			for i, name := range c.wanted {
				if key == name {
					c.mapped[i] = value // a map: the last entry for a key wins
				}
			}
			if c.mapImitation == "" && imitatesIdentityHeader(key) {
				c.mapImitation = key
			}
		case httpPath:
			c.path = c.str(r.value)
		case httpHost:
			c.host = c.str(r.value)
		case httpHeaderMap:
			c.hasRawHeaders = true
			c.readHeaderMap(r.value)
		}
	}
	c.keep(r.err)
}

func (c *envoyCheck) readHeaderMap(msg []byte) {
	r := fields{b: msg}
	for r.next() {
		if r.num != headerMapHeaders {
			continue
		}
		key, value, raw := c.readEntry(r.value)
		if raw != "" {
			value = raw
		}
		for i, name := range c.wanted {
			if ascii.EqualFold(key, name) && c.rawCount[i] < 2 {
				c.raw[i][c.rawCount[i]] = value
				c.rawCount[i]++
			}
		}
		if c.rawImitation == "" && imitatesIdentityHeader(key) {
			c.rawImitation = key
		}
	}
	c.keep(r.err)
}

// readEntry reads a map entry (key, value) or a HeaderValue (key, value, raw):
// their fields 1 and 2 are the same.
func (c *envoyCheck) readEntry(msg []byte) (key, value, raw string) {
	r := fields{b: msg}
	for r.next() {
		switch r.num {
		case entryKey:
			key = c.str(r.value)
		case entryValue:
			value = c.str(r.value)
		case headerValueRaw:
			raw = c.str(r.value)
		}
	}
	c.keep(r.err)
	return key, value, raw
}

// keep makes decode fail with err, a message's: any malformed field fails the
// whole request, as it does the generated decoder's.
func (c *envoyCheck) keep(err error) {
	if c.err == nil {
		c.err = err
	}
}

// str is v, a slice of c.buf, as a string without a copy (c.buf is never
// written: see envoyCheck).
func (c *envoyCheck) str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	return unsafe.String(&v[0], len(v))
}

// fields reads a message's length-delimited fields (num, value), the only wire
// type of the fields a check reads; every other field is skipped. err is set,
// and reading stops, at the first malformed field.
type fields struct {
	b     []byte
	num   protowire.Number
	value []byte
	err   error
}

func (r *fields) next() bool {
	for len(r.b) > 0 {
		num, typ, n := protowire.ConsumeTag(r.b)
		if n < 0 || num > protowire.MaxValidNumber {
			r.err = errMalformedCheck
			return false
		}
		r.b = r.b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, r.b); n < 0 {
				r.err = errMalformedCheck
				return false
			}
			r.b = r.b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(r.b)
		if n < 0 {
			r.err = errMalformedCheck
			return false
		}
		r.b, r.num, r.value = r.b[n:], num, v
		return true
	}
	return false
}

// request is the Request to decide: Envoy's attributes, and the context
// extensions the route set (API, Scopes: the proxy's configuration only).
func (c *envoyCheck) request() Request {
	r := Request{Method: c.method, Path: c.path, Host: c.host, API: c.api, Header: c.header}
	if c.hasScopes {
		r.Scopes = strings.Fields(c.scopes)
		if r.Scopes == nil {
			r.Scopes = []string{}
		}
	}
	r.Imitation = c.mapImitation
	if c.hasRawHeaders {
		r.Imitation = c.rawImitation
	}
	r.Imitation = strings.Clone(r.Imitation)
	return r
}

// header is Request.Header, a copy (a decision may keep it: the message it came
// in may not stay). The headers map is matched by exact name, its last entry
// winning; header_map as HTTP matches names, and a header it holds more than
// once is its first two values joined with ",", as the headers map joins them
// all: a repeated credential header is then not one valid credential.
func (c *envoyCheck) header(name string) string {
	for i, wanted := range c.wanted {
		if wanted == name {
			return c.value(i)
		}
	}
	// Not kept as the message was read: read it again for this header.
	again := envoyCheck{wanted: []string{name}}
	if again.decode(c.buf) != nil {
		return "" // c decoded it: unreachable
	}
	return again.value(0)
}

// value is wanted[i]'s value in the headers the filter sent.
func (c *envoyCheck) value(i int) string {
	if !c.hasRawHeaders {
		return strings.Clone(c.mapped[i])
	}
	switch c.rawCount[i] {
	case 0:
		return ""
	case 1:
		return strings.Clone(c.raw[i][0])
	}
	return c.raw[i][0] + "," + c.raw[i][1]
}

// checkCodec is gRPC's proto codec, except that Check's request is read by
// envoyCheck.decode, keeping the headers a decision reads: authorization and
// the API-key header.
type checkCodec struct {
	encoding.CodecV2
	wanted []string
}

func newCheckCodec(apiKeyHeader string) checkCodec {
	wanted := []string{"authorization"}
	if apiKeyHeader != "" {
		wanted = append(wanted, apiKeyHeader)
	}
	return checkCodec{encoding.GetCodecV2("proto"), wanted}
}

func (c checkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if check, ok := v.(*envoyCheck); ok {
		check.wanted = c.wanted
		return check.decode(data.Materialize()) // a copy of its own (envoyCheck)
	}
	return c.CodecV2.Unmarshal(data, v)
}

// checker is the Authorization service as the server registers it: Check with
// the request as envoyCheck reads it.
type checker interface {
	check(context.Context, *envoyCheck) (*authv3.CheckResponse, error)
}

// authorizationService is envoy.service.auth.v3.Authorization, as the generated
// Authorization_ServiceDesc describes it, with Check's request read by
// envoyCheck (the server's codec must be checkCodec).
var authorizationService = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: (*checker)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Check",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(envoyCheck)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(checker).check(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(checker).check(ctx, req.(*envoyCheck))
			})
		},
	}},
	Metadata: authv3.Authorization_ServiceDesc.Metadata,
}
