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
// from a 200: Traefik ForwardAuth and Caddy forward_auth (X-Forwarded-Method,
// -Uri, -Host) and nginx auth_request (X-Original-Method, X-Original-URL). The
// auth URL may name the API (?api=namespace/name) and the required scopes
// (?scope=a+b, overriding the API's rules).
func (s *Server) handleForwardAuth(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := Request{
		Method: firstOf(r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Original-Method"), r.Method),
		Header: func(name string) string { return singleHeader(r.Header, name) },
		API:    r.URL.Query().Get("api"),
	}
	if uri := r.Header.Get("X-Forwarded-Uri"); uri != "" {
		req.Path, req.Host = uri, firstOf(r.Header.Get("X-Forwarded-Host"), r.Host)
	} else if original := r.Header.Get("X-Original-URL"); original != "" {
		host, target := splitURL(original)
		req.Path, req.Host = target, firstOf(r.Header.Get("X-Forwarded-Host"), host, r.Host)
	} else {
		req.Path, req.Host = "", r.Host // not a forward-auth call: refused (BadPath) once authenticated
	}
	if scopes, ok := r.URL.Query()["scope"]; ok {
		req.Scopes = strings.Fields(strings.Join(scopes, " "))
		if req.Scopes == nil {
			req.Scopes = []string{}
		}
	}
	d := s.authorizer.Decide(req)
	s.metrics.observe("http", d, time.Since(start))
	s.writeDecision(w, d, false)
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
	var remove []string
	for _, kv := range d.headers() {
		if kv[1] != "" {
			h.Set(kv[0], kv[1])
		} else {
			remove = append(remove, strings.ToLower(kv[0]))
		}
	}
	if envoy {
		if d.CredentialHeader != "" {
			remove = append(remove, d.CredentialHeader)
		}
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
// and request target, without decoding anything.
func splitURL(u string) (host, target string) {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "", u
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
