package authz

import (
	"net/http"
	"strings"
	"time"
)

// EnvoyHTTPPrefix is where Envoy's HTTP ext_authz mode sends requests: its
// path_prefix, followed by the original path and query.
const EnvoyHTTPPrefix = "/envoy"

// handleForwardAuth serves proxies that ask with a subrequest and copy headers
// from a 200 and set X-Forwarded-Method, -Uri and -Host themselves, over any copy
// the client sent: Traefik ForwardAuth and Caddy forward_auth. The auth URL may
// name the API (?api=namespace/name) and the required scopes (?scope=a+b,
// overriding the API's rules).
func (s *Server) handleForwardAuth(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := s.forwardRequest(r)
	req.Method = firstOf(r.Header.Get("X-Forwarded-Method"), r.Method)
	req.Path = r.Header.Get("X-Forwarded-Uri") // none: not a forward-auth call, refused (BadPath) once authenticated
	req.Host = firstOf(r.Header.Get("X-Forwarded-Host"), r.Host)
	d := s.authorizer.Decide(req)
	s.metrics.observe("http", d, time.Since(start))
	s.writeDecision(w, d, false)
}

// handleNginx serves nginx's auth_request, which sets X-Original-Method and
// X-Original-URL (proxy_set_header, over any copy the client sent). It reads
// nothing else: nginx passes the client's own X-Forwarded-* headers through, so
// trusting them here would let a client choose the method and path it is judged on.
func (s *Server) handleNginx(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := s.forwardRequest(r)
	req.Method = r.Header.Get("X-Original-Method")
	host, target := splitURL(r.Header.Get("X-Original-URL"))
	req.Path, req.Host = target, host
	d := s.authorizer.Decide(req)
	s.metrics.observe("http", d, time.Since(start))
	s.writeDecision(w, d, false)
}

// forwardRequest is what every forward-auth style shares: the credential headers
// and the auth URL's api and scope parameters.
func (s *Server) forwardRequest(r *http.Request) Request {
	query := r.URL.Query()
	req := Request{
		Header: func(name string) string { return singleHeader(r.Header, name) },
		API:    query.Get("api"),
	}
	if scopes, ok := query["scope"]; ok {
		req.Scopes = strings.Fields(strings.Join(scopes, " "))
		if req.Scopes == nil {
			req.Scopes = []string{}
		}
	}
	return req
}

// handleEnvoyHTTP serves Envoy's HTTP ext_authz mode: the original method, Host
// and headers, and the original path after EnvoyHTTPPrefix.
func (s *Server) handleEnvoyHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	target := strings.TrimPrefix(r.RequestURI, EnvoyHTTPPrefix)
	d := s.authorizer.Decide(Request{
		Method: r.Method, Path: target, Host: r.Host,
		Header: func(name string) string { return singleHeader(r.Header, name) },
	})
	s.metrics.observe("http", d, time.Since(start))
	s.writeDecision(w, d, true)
}

// writeDecision answers 200 with the identity headers, or the refusal. For Envoy's
// HTTP mode it also names the headers Envoy must strip from the upstream request
// (x-envoy-auth-headers-to-remove): the identity headers it did not set and the
// API key.
func (s *Server) writeDecision(w http.ResponseWriter, d Decision, envoy bool) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if d.Status != http.StatusOK {
		h.Set("WWW-Authenticate", d.challenge(s.realm))
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
