package tokenserver_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// clientCredentials is the configuration a workload builds from its Secret.
func clientCredentials(s *runningServer, c testClient, style oauth2.AuthStyle) *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: s.URL + "/oauth2/token", AuthStyle: style}
}

// verify checks a token against the server's JWKS with an independent JOSE library
// (lestrrat-go/jwx, where the server signs with go-jose) and returns its claims.
func verify(s *runningServer, raw, audience string) jwt.Token {
	set, err := jwk.Fetch(context.Background(), s.URL+"/oauth2/jwks")
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithIssuer(issuer), jwt.WithAudience(audience), jwt.WithValidate(true))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return tok
}

// header returns the protected JOSE header of a compact JWS.
func header(raw string) jws.Headers {
	msg, err := jws.Parse([]byte(raw))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	ExpectWithOffset(1, msg.Signatures()).To(HaveLen(1))
	return msg.Signatures()[0].ProtectedHeaders()
}

func claim[T any](tok jwt.Token, name string) T {
	var v T
	ExpectWithOffset(1, tok.Get(name, &v)).To(Succeed(), "claim %s", name)
	return v
}

var _ = Describe("The token endpoint", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("issues an RFC 9068 access token that verifies against the JWKS", func() {
		c := newClient(ns, "reporting", nil)
		tok, err := clientCredentials(server, c, oauth2.AuthStyleInHeader).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(tok.TokenType).To(Equal("Bearer"))
		Expect(tok.Extra("scope")).To(Equal("leads:read leads:write"))
		Expect(time.Until(tok.Expiry)).To(BeNumerically("~", time.Hour, time.Minute))

		h := header(tok.AccessToken)
		typ, _ := h.Type()
		Expect(typ).To(Equal("at+jwt"))
		alg, _ := h.Algorithm()
		Expect(alg.String()).To(Equal("RS256"))
		kid, _ := h.KeyID()
		Expect(kid).NotTo(BeEmpty())

		claims := verify(server, tok.AccessToken, "https://api.acme.test")
		sub, _ := claims.Subject()
		Expect(sub).To(Equal(c.ClientID))
		aud, _ := claims.Audience()
		Expect(aud).To(Equal([]string{"https://api.acme.test"}))
		iat, _ := claims.IssuedAt()
		nbf, _ := claims.NotBefore()
		exp, _ := claims.Expiration()
		Expect(exp.Sub(iat)).To(Equal(time.Hour))
		Expect(nbf).To(Equal(iat))
		jti, _ := claims.JwtID()
		Expect(jti).To(MatchRegexp(`^[0-9a-f]{32}$`))
		Expect(claim[string](claims, "client_id")).To(Equal(c.ClientID))
		Expect(claim[string](claims, "scope")).To(Equal("leads:read leads:write"))
		Expect(claim[string](claims, "latchkey.dev/namespace")).To(Equal(ns))
		Expect(claim[string](claims, "latchkey.dev/client_uid")).To(Equal(string(c.Object.UID)))

		again, err := clientCredentials(server, c, oauth2.AuthStyleInHeader).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(claim[string](verify(server, again.AccessToken, "https://api.acme.test"), "jti")).NotTo(Equal(jti), "every token has its own jti")
	})

	It("accepts client_secret_post and the client's own token lifetime", func() {
		c := newClient(ns, "short-lived", func(o *latchkeyv1.OAuthClient) {
			o.Spec.AccessTokenTTL = &metav1.Duration{Duration: 5 * time.Minute}
		})
		tok, err := clientCredentials(server, c, oauth2.AuthStyleInParams).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		claims := verify(server, tok.AccessToken, "https://api.acme.test")
		iat, _ := claims.IssuedAt()
		exp, _ := claims.Expiration()
		Expect(exp.Sub(iat)).To(Equal(5 * time.Minute))
		Expect(time.Until(tok.Expiry)).To(BeNumerically("~", 5*time.Minute, 30*time.Second))
	})

	It("grants a subset of the client's scopes and one of its audiences on request", func() {
		c := newClient(ns, "narrow", nil)
		cfg := clientCredentials(server, c, oauth2.AuthStyleInHeader)
		cfg.Scopes = []string{"leads:read"}
		cfg.EndpointParams = url.Values{"audience": {"https://billing.acme.test"}}
		tok, err := cfg.Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(tok.Extra("scope")).To(Equal("leads:read"))
		claims := verify(server, tok.AccessToken, "https://billing.acme.test")
		Expect(claim[string](claims, "scope")).To(Equal("leads:read"))

		// RFC 8707's resource parameter means the same, and may be repeated.
		resp := server.token(c, url.Values{"resource": {"https://api.acme.test", "https://billing.acme.test"}})
		Expect(resp.StatusCode).To(Equal(http.StatusOK), "body: %s", resp.Body)
		aud, _ := verify(server, resp.JSON()["access_token"].(string), "https://api.acme.test").Audience()
		Expect(aud).To(ConsistOf("https://api.acme.test", "https://billing.acme.test"))
	})

	It("answers with no-store caching headers", func() {
		c := newClient(ns, "cache", nil)
		resp := server.token(c, nil)
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(resp.Header.Get("Cache-Control")).To(Equal("no-store"))
		Expect(resp.Header.Get("Pragma")).To(Equal("no-cache"))
		Expect(resp.JSON()["expires_in"]).To(BeNumerically("==", 3600))
	})

	DescribeTable("signs with the algorithm chosen by flag",
		func(alg string) {
			s := startServer(alg)
			defer s.Stop()
			c := newResourceServer(ns, strings.ToLower(alg), nil)
			waitKnown(s, c) // newResourceServer waits for the suite's server only
			tok, err := clientCredentials(s, c, oauth2.AuthStyleInHeader).Token(ctx)
			Expect(err).NotTo(HaveOccurred())
			got, _ := header(tok.AccessToken).Algorithm()
			Expect(got.String()).To(Equal(alg))
			verify(s, tok.AccessToken, "https://api.acme.test")
			Expect(get(s.URL + "/.well-known/oauth-authorization-server").JSON()).
				To(HaveKeyWithValue("access_token_signing_alg_values_supported", ConsistOf(alg)))
			// A token of another replica's algorithm, signed from the same key Secret, introspects too.
			Expect(server.active(c, tok.AccessToken)).To(BeTrue())
		},
		Entry("ES256", signingkeys.ES256),
		Entry("EdDSA", signingkeys.EdDSA),
	)

	Describe("refuses a client that does not authenticate, all in the same words", func() {
		var c testClient
		BeforeEach(func() { c = newClient(ns, "refused", nil) })

		identical := func(responses ...response) {
			for _, r := range responses {
				expectOAuthError(r, http.StatusUnauthorized, "invalid_client")
				Expect(r.Body).To(Equal(responses[0].Body), "an attacker cannot tell the cases apart")
			}
		}
		form := url.Values{"grant_type": {"client_credentials"}}
		tokenURL := func() string { return server.URL + "/oauth2/token" }

		It("unknown client_id, wrong secret, no credentials", func() {
			identical(
				postForm(tokenURL(), form, &basicAuth{"0123456789abcdef01234567", c.ClientSecret}),
				postForm(tokenURL(), form, &basicAuth{c.ClientID, strings.Repeat("0", 64)}),
				postForm(tokenURL(), form, nil),
				postForm(tokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}}, nil),
				postForm(tokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}, "client_secret": {"x"}}, nil),
			)
		})

		It("revoked, and answers within a second of the change", func() {
			Expect(server.token(c, nil).StatusCode).To(Equal(http.StatusOK))
			mergePatch(c.Object, func(o *latchkeyv1.OAuthClient) { o.Spec.Revoked = true })
			within(time.Second, "token endpoint refuses a revoked client", func() bool {
				return server.token(c, nil).StatusCode == http.StatusUnauthorized
			})
			identical(server.token(c, nil), postForm(tokenURL(), form, &basicAuth{"0123456789abcdef01234567", "x"}))
		})

		It("expired", func() {
			expiring := newClient(ns, "expiring", func(o *latchkeyv1.OAuthClient) {
				o.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(6 * time.Second)} // room for a loaded machine to issue it
			})
			Expect(server.token(expiring, nil).StatusCode).To(Equal(http.StatusOK))
			Eventually(func() int { return server.token(expiring, nil).StatusCode }).Should(Equal(http.StatusUnauthorized))
			identical(server.token(expiring, nil), postForm(tokenURL(), form, &basicAuth{"0123456789abcdef01234567", "x"}))
		})

		It("using an authentication method the client does not allow", func() {
			postOnly := newClient(ns, "post-only", func(o *latchkeyv1.OAuthClient) {
				o.Spec.TokenEndpointAuthMethods = []latchkeyv1.TokenEndpointAuthMethod{latchkeyv1.AuthClientSecretPost}
			})
			identical(server.token(postOnly, nil), postForm(tokenURL(), form, nil))
			_, err := clientCredentials(server, postOnly, oauth2.AuthStyleInParams).Token(ctx)
			Expect(err).NotTo(HaveOccurred())
		})
	})

	DescribeTable("answers a malformed request with invalid_request",
		func(build func(c testClient) *http.Request) {
			c := newClient(ns, "malformed", nil)
			expectOAuthError(do(build(c)), http.StatusBadRequest, "invalid_request")
		},
		Entry("no grant_type", func(c testClient) *http.Request {
			return formRequest(c, url.Values{}, true)
		}),
		Entry("a repeated parameter", func(c testClient) *http.Request {
			return formRequest(c, url.Values{"grant_type": {"client_credentials"}, "scope": {"leads:read", "leads:write"}}, true)
		}),
		Entry("two authentication methods at once", func(c testClient) *http.Request {
			return formRequest(c, url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}, "client_secret": {c.ClientSecret}}, true)
		}),
		Entry("a body that is not form-encoded", func(c testClient) *http.Request {
			req := formRequest(c, url.Values{"grant_type": {"client_credentials"}}, true)
			req.Header.Set("Content-Type", "application/json")
			return req
		}),
		Entry("a body over the size limit", func(c testClient) *http.Request {
			return formRequest(c, url.Values{"grant_type": {"client_credentials"}, "padding": {strings.Repeat("x", 64<<10)}}, true)
		}),
	)

	It("refuses scopes the client does not have with invalid_scope", func() {
		c := newClient(ns, "scoped", nil)
		resp := server.token(c, url.Values{"scope": {"leads:read leads:delete"}})
		expectOAuthError(resp, http.StatusBadRequest, "invalid_scope")
		Expect(resp.JSON()["error_description"]).To(ContainSubstring("leads:delete"))

		cfg := clientCredentials(server, c, oauth2.AuthStyleInHeader)
		cfg.Scopes = []string{"admin:write"}
		_, err := cfg.Token(ctx)
		var retrieve *oauth2.RetrieveError
		Expect(errors.As(err, &retrieve)).To(BeTrue(), "got %v", err)
		Expect(retrieve.ErrorCode).To(Equal("invalid_scope"))
	})

	It("refuses an audience the client may not address with invalid_target", func() {
		c := newClient(ns, "targeted", nil)
		expectOAuthError(server.token(c, url.Values{"audience": {"https://evil.test"}}), http.StatusBadRequest, "invalid_target")
		expectOAuthError(server.token(c, url.Values{"resource": {"https://api.acme.test", "https://evil.test"}}), http.StatusBadRequest, "invalid_target")
	})

	It("refuses grants the client may not use with unauthorized_client", func() {
		c := newClient(ns, "code-only", func(o *latchkeyv1.OAuthClient) {
			o.Spec.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}
			o.Spec.RedirectURIs = []string{"https://app.acme.test/callback"}
		})
		expectOAuthError(server.token(c, nil), http.StatusBadRequest, "unauthorized_client")
		expectOAuthError(server.token(c, url.Values{"grant_type": {"authorization_code"}}), http.StatusBadRequest, "unauthorized_client")

		both := newClient(ns, "machine", nil)
		expectOAuthError(server.token(both, url.Values{"grant_type": {"refresh_token"}}), http.StatusBadRequest, "unauthorized_client")
	})

	It("refuses grants it does not know with unsupported_grant_type", func() {
		c := newClient(ns, "password", nil)
		expectOAuthError(server.token(c, url.Values{"grant_type": {"password"}}), http.StatusBadRequest, "unsupported_grant_type")
		expectOAuthError(server.token(c, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}}), http.StatusBadRequest, "unsupported_grant_type")
	})

	It("does not serve other methods", func() {
		Expect(get(server.URL + "/oauth2/token").StatusCode).To(Equal(http.StatusMethodNotAllowed))
	})
})

// formRequest builds a token request, with client_secret_basic when basic is set.
func formRequest(c testClient, form url.Values, basic bool) *http.Request {
	req, err := http.NewRequest(http.MethodPost, server.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(c.ClientID, c.ClientSecret)
	}
	return req
}
