package tokenserver

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// authorizationServerMetadata is the RFC 8414 document, also served as the OpenID
// discovery document so that OIDC libraries find the JWKS.
// scopes_supported lists the scopes of the served APIs open to every namespace
// (RFC 8414 §2): the document is public, and other APIs' scopes are their
// tenants' business.
func (s *Server) authorizationServerMetadata(scopes []string) map[string]any {
	base := strings.TrimSuffix(s.cfg.IssuerURL, "/")
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	m := map[string]any{
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
		"scopes_supported":                              scopes,
		"revocation_endpoint":                           base + "/oauth2/revoke",
		"revocation_endpoint_auth_methods_supported":    authMethods,
	}
	if s.thirdParty != nil {
		m["authorization_endpoint"] = base + "/oauth2/authorize"
		m["grant_types_supported"] = []string{"client_credentials", "authorization_code", "refresh_token"}
		m["response_types_supported"] = []string{"code"}
		m["response_modes_supported"] = []string{"query"}
		m["code_challenge_methods_supported"] = []string{"S256"}
		m["authorization_response_iss_parameter_supported"] = true
		m["token_endpoint_auth_methods_supported"] = append(slices.Clone(authMethods), "none")
		m["revocation_endpoint_auth_methods_supported"] = append(slices.Clone(authMethods), "none")
	}
	return m
}

// renderedMetadata is the metadata document for one version of the APIs.
type renderedMetadata struct {
	apiVersion uint64
	body       []byte
}

// renderMetadata renders the document now (after a configuration change).
func (s *Server) renderMetadata() error {
	s.metadata.Store(nil)
	_, err := s.currentMetadata()
	return err
}

// currentMetadata renders the document again if the APIs changed since it last was.
func (s *Server) currentMetadata() ([]byte, error) {
	version := s.index.APIVersion()
	if m := s.metadata.Load(); m != nil && m.apiVersion == version {
		return m.body, nil
	}
	catalogue, version := s.index.PublicScopeCatalogue()
	scopes := slices.Sorted(maps.Keys(catalogue))
	if scopes == nil {
		scopes = []string{}
	}
	body, err := json.Marshal(s.authorizationServerMetadata(scopes))
	if err != nil {
		return nil, err
	}
	s.metadata.Store(&renderedMetadata{apiVersion: version, body: body})
	return body, nil
}

func (s *Server) handleMetadata(w http.ResponseWriter, _ *http.Request) {
	body, err := s.currentMetadata()
	if err != nil {
		oauth.WriteError(w, oauth.NewError(http.StatusInternalServerError, "server_error", "the metadata could not be rendered"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Short: scopes_supported follows the APIs.
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(body)
}

// handleJWKS serves every key that may have signed a still-valid token and the
// next key before it is used. Resource servers may cache it for five minutes: a
// next key is published a whole rotation interval ahead.
func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	ring := s.keys.current()
	if ring == nil {
		oauth.WriteError(w, oauth.NewError(http.StatusServiceUnavailable, "temporarily_unavailable", "signing keys are not loaded yet"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(ring.jwks)
}
