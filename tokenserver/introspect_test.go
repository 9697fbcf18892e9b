package tokenserver_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

var _ = Describe("Introspection", func() {
	ctx := context.Background()
	var ns string
	// resourceServer is the OAuthClient a resource server authenticates as.
	var resourceServer testClient
	BeforeEach(func() {
		ns = newNamespace()
		resourceServer = newResourceServer(ns, "leads-api", nil)
	})

	It("describes an access token, and revoking its client makes it inactive within a second", func() {
		c := newClient(ns, "worker", nil)
		tok, err := clientCredentials(server, c, oauth2.AuthStyleInHeader).Token(ctx)
		Expect(err).NotTo(HaveOccurred())

		info := server.introspect(resourceServer, tok.AccessToken)
		Expect(info).To(HaveKeyWithValue("active", true))
		Expect(info).To(HaveKeyWithValue("token_type", "Bearer"))
		Expect(info).To(HaveKeyWithValue("client_id", c.ClientID))
		Expect(info).To(HaveKeyWithValue("sub", c.ClientID))
		Expect(info).To(HaveKeyWithValue("scope", "leads:read leads:write"))
		Expect(info).To(HaveKeyWithValue("iss", issuer))
		// RFC 7519 §4.1.3: a single audience may be a string.
		Expect(info).To(HaveKeyWithValue("aud", "https://api.acme.test"))
		Expect(info).To(HaveKeyWithValue("exp", BeNumerically("~", time.Now().Add(time.Hour).Unix(), 60)))
		Expect(info).To(HaveKey("jti"))

		mergePatch(c.Object, func(o *latchkeyv1.OAuthClient) { o.Spec.Revoked = true })
		within(time.Second, "an outstanding token of a revoked client is inactive", func() bool {
			return !server.active(resourceServer, tok.AccessToken)
		})
		Expect(server.introspect(resourceServer, tok.AccessToken)).To(Equal(map[string]any{"active": false}))
		expectOAuthError(server.token(c, nil), http.StatusUnauthorized, "invalid_client")
	})

	It("makes the tokens of a deleted client inactive, even once a client of that name is back", func() {
		c := newClient(ns, "ephemeral", nil)
		tok, err := clientCredentials(server, c, oauth2.AuthStyleInHeader).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(server.active(resourceServer, tok.AccessToken)).To(BeTrue())

		Expect(k8s.Delete(ctx, c.Object)).To(Succeed())
		within(time.Second, "an outstanding token of a deleted client is inactive", func() bool {
			return !server.active(resourceServer, tok.AccessToken)
		})
		Eventually(func() error { return k8s.Get(ctx, clientKey(c), &latchkeyv1.OAuthClient{}) }).Should(HaveOccurred())
		Eventually(func() error { return k8s.Get(ctx, secretKey(c), &corev1.Secret{}) }).Should(HaveOccurred(), "the Secret is collected")
		again := newClient(ns, "ephemeral", nil)
		Expect(again.Object.UID).NotTo(Equal(c.Object.UID))
		Expect(server.active(resourceServer, tok.AccessToken)).To(BeFalse())
	})

	It("refuses tokens it did not sign, or that were tampered with, or that are for another issuer", func() {
		c := newClient(ns, "signed", nil)
		tok, err := clientCredentials(server, c, oauth2.AuthStyleInHeader).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		parts := strings.Split(tok.AccessToken, ".")

		forgedClaims := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]
		noSignature := parts[0] + "." + parts[1] + "."
		alg := `{"alg":"none","typ":"at+jwt"}`
		unsigned := b64(alg) + "." + parts[1] + "."
		for _, token := range []string{forgedClaims, noSignature, unsigned, "not-a-token", "a.b.c", strings.Repeat("x", 4096)} {
			Expect(server.introspect(resourceServer, token)).To(Equal(map[string]any{"active": false}), "token %.40s", token)
		}
	})

	It("describes an API key while its hash is accepted, and not once it is revoked", func() {
		expires := metav1.NewTime(time.Now().Add(48 * time.Hour).Truncate(time.Second))
		key, plaintext := newAPIKey(ns, "crm-sync", func(k *latchkeyv1.APIKey) {
			k.Spec.Environment = latchkeyv1.EnvironmentTest
			k.Spec.Scopes = []string{"leads:read", "leads:write"}
			k.Spec.ExpiresAt = &expires
		})
		var info map[string]any
		Eventually(func() map[string]any { // the server's watch brings the key
			info = server.introspect(resourceServer, plaintext)
			return info
		}).Should(HaveKeyWithValue("active", true))
		Expect(info).To(HaveKeyWithValue("token_type", "api_key"))
		Expect(info).To(HaveKeyWithValue("environment", "test"))
		Expect(info).To(HaveKeyWithValue("scope", "leads:read leads:write"))
		Expect(info).To(HaveKeyWithValue("namespace", ns))
		Expect(info).To(HaveKeyWithValue("name", "crm-sync"))
		Expect(info).To(HaveKeyWithValue("sub", "apikey:"+ns+"/crm-sync"))
		Expect(info).To(HaveKeyWithValue("key_id", key.Status.KeyID))
		Expect(info).To(HaveKeyWithValue("exp", BeNumerically("==", expires.Unix())))

		mergePatch(key, func(k *latchkeyv1.APIKey) { k.Spec.Revoked = true })
		within(time.Second, "a revoked API key is inactive", func() bool {
			return !server.active(resourceServer, plaintext)
		})
		Expect(server.introspect(resourceServer, plaintext)).To(Equal(map[string]any{"active": false}))
	})

	It("keeps the previous API key active through its grace period after a rotation", func() {
		key, previous := newAPIKey(ns, "rotating", nil)
		mergePatch(key, func(k *latchkeyv1.APIKey) {
			k.Annotations = map[string]string{latchkeyv1.RotateAnnotation: "2026-11-22"}
		})
		var current string
		Eventually(func() string { current = apiKeyIn(ns, key.SecretName()); return credential.Hash(current) }).ShouldNot(Equal(credential.Hash(previous)))
		Eventually(func() bool { return server.active(resourceServer, current) }).Should(BeTrue())

		info := server.introspect(resourceServer, previous)
		Expect(info).To(HaveKeyWithValue("active", true))
		Expect(info).To(HaveKeyWithValue("exp", BeNumerically("~", time.Now().Add(time.Hour).Unix(), 60)), "the grace period ends it")
		Expect(server.introspect(resourceServer, current)).NotTo(HaveKey("exp"), "the current key does not expire")
	})

	It("answers inactive for an API key that is mistyped, unknown or expired", func() {
		_, plaintext := newAPIKey(ns, "short", func(k *latchkeyv1.APIKey) {
			k.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(6 * time.Second)} // room for a loaded machine to issue it
		})
		Eventually(func() bool { return server.active(resourceServer, plaintext) }).Should(BeTrue(), "once the server's watch brings it")
		mistyped := plaintext[:len(plaintext)-1] + flip(plaintext[len(plaintext)-1])
		unknown, err := credential.NewAPIKey(strings.NewReader(strings.Repeat("entropy!", 64)), "lk", "live")
		Expect(err).NotTo(HaveOccurred())
		for _, token := range []string{mistyped, unknown} {
			Expect(server.introspect(resourceServer, token)).To(Equal(map[string]any{"active": false}))
		}
		Eventually(func() bool { return server.active(resourceServer, plaintext) }).Should(BeFalse(), "expired")
	})

	It("requires the caller to authenticate as an active client, and a token", func() {
		_, plaintext := newAPIKey(ns, "probe", nil)
		introspectURL := server.URL + "/oauth2/introspect"
		expectOAuthError(postForm(introspectURL, url.Values{"token": {plaintext}}, nil), http.StatusUnauthorized, "invalid_client")
		expectOAuthError(postForm(introspectURL, url.Values{"token": {plaintext}}, &basicAuth{resourceServer.ClientID, "wrong"}), http.StatusUnauthorized, "invalid_client")
		expectOAuthError(postForm(introspectURL, url.Values{}, &basicAuth{resourceServer.ClientID, resourceServer.ClientSecret}), http.StatusBadRequest, "invalid_request")

		mergePatch(resourceServer.Object, func(o *latchkeyv1.OAuthClient) { o.Spec.Revoked = true })
		Eventually(func() int {
			return postForm(introspectURL, url.Values{"token": {plaintext}}, &basicAuth{resourceServer.ClientID, resourceServer.ClientSecret}).StatusCode
		}).Should(Equal(http.StatusUnauthorized))
	})
})
