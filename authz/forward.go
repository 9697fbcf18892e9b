package authz

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// EnvoyHTTPPrefix is where Envoy's HTTP ext_authz mode sends requests: its
// path_prefix, followed by the original path and query.
const EnvoyHTTPPrefix = "/envoy"

// The forward-auth endpoints. Which API and which scopes apply is written in the
// auth URL's path, never read from its query: proxies copy the client's own query
// onto the auth request (Caddy's forward_auth keeps it when `uri` has none), so a
// query parameter may be the client's. A path is the proxy configuration's alone:
//
//	/authz[/api/<namespace>/<name>][/scopes/<scope>,<scope>...]        Caddy, Traefik
//	/authz/nginx[/api/<namespace>/<name>][/scopes/<scope>,<scope>...]  nginx
//
// Without /api/ the API is the one that holds the request's Host; /scopes/
// replaces the API's rules and default action (an empty list: any valid
// credential).
const (
	ForwardAuthPath = "/authz"
	NginxPath       = "/authz/nginx"
)

// authTarget is what an auth URL's path says: the API to apply ("namespace/name",
// empty for the Host's) and the scopes to require instead of its rules (nil: the rules).
type authTarget struct {
	api    string
	scopes []string
}

// refusedTarget is the answer to an auth URL the authorizer cannot read, or one
// written in the query form that a client could have chosen.
func refusedTarget(description string) Decision {
	return Decision{Status: 403, Outcome: NoAPI, Error: "access_denied", Description: description}
}

const authPathHelp = "name the API and scopes in the auth URL's path: /authz[/nginx][/api/<namespace>/<name>][/scopes/<scope>,...]"

// parseAuthPath reads the part of an auth URL's path after its endpoint (rest is
// "" or begins with "/"), and refuses a query that could carry the old ?api= or
// ?scope= parameters when the path names neither: that query was written either
// by a configuration that predates the path form, which must not silently lose
// its API or scopes, or by the client, which must not choose them.
func parseAuthPath(rest, rawQuery string) (authTarget, *Decision) {
	var t authTarget
	var longest [5]string // /api/<namespace>/<name>/scopes/<list>: no slice to allocate
	segments, ok := authPathSegments(rest, longest[:0])
	if !ok {
		d := refusedTarget("the auth URL's path is not one the authorizer serves (" + authPathHelp + ")")
		return t, &d
	}
	if len(segments) >= 3 && segments[0] == "api" {
		namespace, name := segments[1], segments[2]
		if !dns1123Label(namespace) || !dns1123Subdomain(name) {
			d := refusedTarget("the auth URL names no valid API (" + authPathHelp + ")")
			return t, &d
		}
		// "<namespace>/<name>" as it stands in the path, split at each "/" as
		// authPathSegments splits it: a substring, not a string built per request.
		apiAt := len("api/")
		t.api, segments = strings.TrimPrefix(rest, "/")[apiAt:apiAt+len(namespace)+len("/")+len(name)], segments[3:]
	}
	if len(segments) == 2 && segments[0] == "scopes" {
		t.scopes = []string{}
		if segments[1] != "" {
			for scope := range strings.SplitSeq(segments[1], ",") {
				if !scopeToken(scope) {
					d := refusedTarget("the auth URL's scopes are not scope tokens separated by commas (" + authPathHelp + ")")
					return t, &d
				}
				t.scopes = append(t.scopes, scope)
			}
		}
		segments = nil
	}
	if len(segments) > 0 {
		d := refusedTarget("the auth URL's path is not one the authorizer serves (" + authPathHelp + ")")
		return t, &d
	}
	if t.api == "" && t.scopes == nil && rawQuery != "" {
		if q, _ := url.ParseQuery(rawQuery); q.Has("api") || q.Has("scope") {
			d := refusedTarget("the authorizer reads no API or scope from the auth URL's query, which a proxy may copy from the client; " + authPathHelp)
			return t, &d
		}
	}
	return t, nil
}

// dns1123Label is validation.IsDNS1123Label without its regular expression, which
// was a tenth of a forward-auth check's own work (make bench): a namespace's
// grammar in at most 63 bytes.
func dns1123Label(s string) bool {
	return len(s) <= validation.DNS1123LabelMaxLength && dnsLabel(s)
}

// dns1123Subdomain is validation.IsDNS1123Subdomain likewise (an API's name):
// labels joined by '.', at most 253 bytes in all.
func dns1123Subdomain(s string) bool {
	if len(s) > validation.DNS1123SubdomainMaxLength {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !dnsLabel(label) {
			return false
		}
	}
	return true
}

// dnsLabel is [a-z0-9]([-a-z0-9]*[a-z0-9])?, of any length.
func dnsLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// authPathSegments appends the '/'-separated segments of rest (none when rest is
// empty, else after its leading '/') to into, up to into's capacity; false when
// there are more.
func authPathSegments(rest string, into []string) ([]string, bool) {
	if rest == "" {
		return into, true
	}
	for seg := range strings.SplitSeq(strings.TrimPrefix(rest, "/"), "/") {
		if len(into) == cap(into) {
			return into, false
		}
		into = append(into, seg)
	}
	return into, true
}

// scopeToken is an RFC 6749 §3.3 scope token without ',' (the path's separator).
func scopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' || c == ',' {
			return false
		}
	}
	return true
}

// handleAuthPaths routes /authz and /authz/... to forward-auth or nginx.
func (s *Server) handleAuthPaths(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	path := r.URL.Path
	nginx := path == NginxPath || strings.HasPrefix(path, NginxPath+"/")
	root := ForwardAuthPath
	if nginx {
		root = NginxPath
	}
	var d Decision
	if target, refused := parseAuthPath(strings.TrimPrefix(path, root), r.URL.RawQuery); refused != nil {
		d = *refused
	} else if nginx {
		d = s.authorizer.Decide(s.nginxRequest(r, target))
	} else {
		d = s.authorizer.Decide(s.forwardAuthRequest(r, target))
	}
	s.metrics.observe("http", d, time.Since(start))
	if nginx && d.Status == http.StatusTooManyRequests {
		// nginx's auth_request passes 401 and 403 on and turns any other refusal
		// into a 500: a spent budget reaches it as a 403 with Retry-After, which
		// its configuration maps back to 429 (README, Rate limits).
		d.Status = http.StatusForbidden
	}
	s.writeDecision(w, d, false)
}

// forwardAuthRequest reads what proxies that ask with a subrequest, copy headers
// from a 200 and set X-Forwarded-Method, -Uri and -Host themselves (over any copy
// the client sent) send: Traefik ForwardAuth and Caddy forward_auth.
func (s *Server) forwardAuthRequest(r *http.Request, t authTarget) Request {
	req := forwardRequest(r, t)
	req.Method = firstOf(r.Header.Get("X-Forwarded-Method"), r.Method)
	req.Path = r.Header.Get("X-Forwarded-Uri") // none: not a forward-auth call, refused (BadPath) once authenticated
	req.Host = firstOf(r.Header.Get("X-Forwarded-Host"), r.Host)
	return req
}

// nginxRequest reads nginx's auth_request, which sets X-Original-Method and
// X-Original-URL (proxy_set_header, over any copy the client sent). It reads
// nothing else: nginx passes the client's own X-Forwarded-* headers through, so
// trusting them here would let a client choose the method and path it is judged on.
func (s *Server) nginxRequest(r *http.Request, t authTarget) Request {
	req := forwardRequest(r, t)
	req.Method = r.Header.Get("X-Original-Method")
	host, target := splitURL(r.Header.Get("X-Original-URL"))
	req.Path, req.Host = target, host
	return req
}

// forwardRequest is what every forward-auth style shares: the client's headers
// and what the auth URL's path names.
func forwardRequest(r *http.Request, t authTarget) Request {
	return Request{
		HTTPHeader: r.Header,
		Imitation:  imitationIn(r.Header),
		API:        t.api,
		Scopes:     t.scopes,
	}
}

// handleEnvoyHTTP serves Envoy's HTTP ext_authz mode: the original method, Host
// and headers, and the original path after EnvoyHTTPPrefix. The API is the one
// that holds the Host: what follows the prefix is the client's path, so nothing
// in it may name an API (use the gRPC mode's context extensions for that).
func (s *Server) handleEnvoyHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	target := strings.TrimPrefix(r.RequestURI, EnvoyHTTPPrefix)
	d := s.authorizer.Decide(Request{
		Method: r.Method, Path: target, Host: r.Host,
		HTTPHeader: r.Header,
		Imitation:  imitationIn(r.Header),
	})
	s.metrics.observe("http", d, time.Since(start))
	s.writeDecision(w, d, true)
}

// imitationIn returns the first header name that imitates an identity header
// (imitatesIdentityHeader), or "".
func imitationIn(h http.Header) string {
	for name := range h {
		if imitatesIdentityHeader(name) {
			return name
		}
	}
	return ""
}

// writeDecision answers 200 with the identity headers, or the refusal. For Envoy's
// HTTP mode it also names the headers Envoy must strip from the upstream request
// (x-envoy-auth-headers-to-remove): the identity headers it did not set and the
// API key.
func (s *Server) writeDecision(w http.ResponseWriter, d Decision, envoy bool) {
	h := w.Header()
	h["Cache-Control"] = noStore
	if rl := d.RateLimit; rl.Policy != "" {
		fields := [2]string{rl.Policy, rl.State} // one allocation for both
		h["Ratelimit-Policy"], h["Ratelimit"] = fields[0:1:1], fields[1:2:2]
		if rl.RetryAfter > 0 {
			h.Set("Retry-After", strconv.FormatInt(rl.RetryAfter, 10))
		}
	}
	if d.Status != http.StatusOK {
		if d.Outcome != RateLimited { // the credential is fine: no challenge
			h.Set("WWW-Authenticate", d.challenge(s.realm))
		}
		h.Set("Content-Type", "application/json")
		w.WriteHeader(d.Status)
		_, _ = w.Write([]byte(d.body()))
		return
	}
	headers := d.headers()
	values := make([]string, len(headers)) // one allocation for every header's value slice
	var remove []string
	for i, kv := range headers {
		if kv[1] != "" {
			values[i] = kv[1]
			h[kv[0]] = values[i : i+1 : i+1] // the names are canonical already
		} else if envoy {
			remove = append(remove, strings.ToLower(kv[0]))
		}
	}
	if envoy {
		remove = append(remove, d.CredentialHeaders...)
		h.Set("X-Envoy-Auth-Headers-To-Remove", strings.Join(remove, ", "))
	}
	w.WriteHeader(http.StatusOK)
}

// noStore is every decision's Cache-Control, shared (net/http copies header
// values as it writes them and never appends to them: cap = len).
var noStore = []string{"no-store"}[:1:1]

// singleHeader returns a header's value; a header sent more than once is joined
// with "," so that two credentials never pass as one.
func singleHeader(h http.Header, name string) string {
	values := h.Values(name)
	switch len(values) {
	case 0:
		return ""
	case 1:
		return values[0]
	}
	return strings.Join(values, ",")
}

// splitURL splits nginx's X-Original-URL ("http://host/path?query") into host
// and request target, without decoding anything; a URL without a scheme and host
// gives no target (refused).
func splitURL(u string) (host, target string) {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "", ""
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i], rest[i:]
	}
	return rest, "/"
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
