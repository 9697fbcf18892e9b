package authz

import (
	"context"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// Context extensions a route may set in Envoy (ExtAuthzPerRoute check_settings).
const (
	// ContextAPI names the API to apply, "namespace/name".
	ContextAPI = "latchkey.dev/api"
	// ContextScopes lists the scopes the route requires, space-separated,
	// overriding the API's rules.
	ContextScopes = "latchkey.dev/scopes"
)

// grpcServer is envoy.service.auth.v3.Authorization.
type grpcServer struct {
	s *Server
}

// check answers Envoy's ext_authz Check. A refusal is a DeniedHttpResponse with
// the status, challenge and body the client should see; Go errors are kept for
// real faults, which Envoy answers with its status_on_error.
func (g grpcServer) check(_ context.Context, req *envoyCheck) (*authv3.CheckResponse, error) {
	start := time.Now()
	d := g.s.authorizer.Decide(req.request())
	g.s.metrics.observe("grpc", d, time.Since(start))
	if d.Status == 200 {
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: okResponse(d)},
		}, nil
	}
	code, status := codes.PermissionDenied, typev3.StatusCode_Forbidden
	headers := []*corev3.HeaderValueOption{
		overwrite("content-type", "application/json"),
		overwrite("cache-control", "no-store"),
	}
	switch d.Status {
	case 401:
		code, status = codes.Unauthenticated, typev3.StatusCode_Unauthorized
	case 429:
		code, status = codes.ResourceExhausted, typev3.StatusCode_TooManyRequests
		headers = append(headers, overwrite("retry-after", strconv.FormatInt(d.RateLimit.RetryAfter, 10)))
	}
	if d.Status != 429 {
		headers = append(headers, overwrite("www-authenticate", d.challenge(g.s.realm)))
	}
	headers = append(headers, rateLimitHeaders(d)...)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: d.Description},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: status},
			Headers: headers,
			Body:    d.body(),
		}},
	}, nil
}

// rateLimitHeaders are the RateLimit-Policy and RateLimit fields of d, for the
// client's response (none when no budget applied).
func rateLimitHeaders(d Decision) []*corev3.HeaderValueOption {
	if d.RateLimit.Policy == "" {
		return nil
	}
	return []*corev3.HeaderValueOption{overwrite("ratelimit-policy", d.RateLimit.Policy), overwrite("ratelimit", d.RateLimit.State)}
}

// okResponse sets the identity headers on the upstream request and removes every
// identity header it does not set (a client's forged copy included), and the API
// key: the upstream needs who the caller is, not the key. The header options are
// allocated together, not one by one: this runs on every allowed request.
func okResponse(d Decision) *authv3.OkHttpResponse {
	headers := d.headers()
	set := 0
	for _, h := range headers {
		if h[1] != "" {
			set++
		}
	}
	options, values := make([]corev3.HeaderValueOption, set), make([]corev3.HeaderValue, set)
	ok := &authv3.OkHttpResponse{
		Headers:         make([]*corev3.HeaderValueOption, 0, set),
		HeadersToRemove: make([]string, 0, len(headers)-set+len(d.CredentialHeaders)),
	}
	for i, h := range headers {
		if h[1] == "" {
			ok.HeadersToRemove = append(ok.HeadersToRemove, lowerIdentityHeaders[i])
			continue
		}
		n := len(ok.Headers)
		values[n].Key, values[n].Value = lowerIdentityHeaders[i], h[1]
		options[n].Header, options[n].AppendAction = &values[n], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ok.Headers = append(ok.Headers, &options[n])
	}
	ok.HeadersToRemove = append(ok.HeadersToRemove, d.CredentialHeaders...)
	// Added to the client's response, so that it can pace itself; appended to
	// the upstream's own fields, if it has any (each field is a list of policies).
	for _, h := range rateLimitHeaders(d) {
		h.AppendAction = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, h)
	}
	return ok
}

// overwrite replaces any value of the header. Newer Envoy appends when neither
// append nor append_action is set, so the action is always explicit.
func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
