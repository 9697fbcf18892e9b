package tokenserver

import (
	"net/http"
	"strings"
)

// authorizationServerMetadata is the RFC 8414 document, also served as the OpenID
// discovery document so that OIDC libraries find the JWKS.
func (s *Server) authorizationServerMetadata() map[string]any {
	base := strings.TrimSuffix(s.cfg.IssuerURL, "/")
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	return map[string]any{
		"issuer":                                s.cfg.IssuerURL,
		"token_endpoint":                        base + "/oauth2/token",
		"jwks_uri":                              base + "/oauth2/jwks",
		"introspection_endpoint":                base + "/oauth2/introspect",
		"grant_types_supported":                 []string{"client_credentials"},
		"response_types_supported":              []string{},
		"token_endpoint_auth_methods_supported": authMethods,
		"introspection_endpoint_auth_methods_supported": authMethods,
		"id_token_signing_alg_values_supported":         []string{s.cfg.SigningAlgorithm},
		"access_token_signing_alg_values_supported":     []string{s.cfg.SigningAlgorithm},
		"subject_types_supported":                       []string{"public"},
	}
}

func (s *Server) handleMetadata(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(s.metadata)
}

// handleJWKS serves every key that may have signed a still-valid token and the
// next key before it is used. Resource servers may cache it for five minutes: a
// next key is published a whole rotation interval ahead.
func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	ring := s.keys.current()
	if ring == nil {
		writeError(w, &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", "signing keys are not loaded yet"})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(ring.jwks)
}
