package tokenserver_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/tokenserver"
)

var _ = Describe("Discovery", func() {
	It("serves RFC 8414 metadata at both well-known paths", func() {
		for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
			resp := get(server.URL + path)
			Expect(resp.StatusCode).To(Equal(http.StatusOK))
			Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
			Expect(resp.JSON()).To(And(
				HaveKeyWithValue("issuer", issuer),
				HaveKeyWithValue("token_endpoint", issuer+"/oauth2/token"),
				HaveKeyWithValue("jwks_uri", issuer+"/oauth2/jwks"),
				HaveKeyWithValue("introspection_endpoint", issuer+"/oauth2/introspect"),
				HaveKeyWithValue("grant_types_supported", ConsistOf("client_credentials")),
				HaveKeyWithValue("token_endpoint_auth_methods_supported", ConsistOf("client_secret_basic", "client_secret_post")),
				HaveKeyWithValue("access_token_signing_alg_values_supported", ConsistOf("RS256")),
			))
		}
	})

	It("publishes the scopes of the APIs open to every namespace as scopes_supported, following the APIs, and no tenant's own", func() {
		ns := newNamespace()
		api := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"}, Spec: latchkeyv1.APISpec{
			Identifier: "https://billing." + ns + ".test",
			Namespaces: []string{"*"},
			Scopes:     []latchkeyv1.APIScope{{Name: "invoices:read", Description: "Read invoices"}, {Name: "invoices:write"}},
		}}
		Expect(k8s.Create(context.Background(), api)).To(Succeed())
		// A tenant's API for its own namespace (the default) or a list of namespaces.
		private := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acquisitions"}, Spec: latchkeyv1.APISpec{
			Identifier: "https://acquisitions." + ns + ".test",
			Scopes:     []latchkeyv1.APIScope{{Name: "acquisitions:read"}},
		}}
		Expect(k8s.Create(context.Background(), private)).To(Succeed())
		listed := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "partners"}, Spec: latchkeyv1.APISpec{
			Identifier: "https://partners." + ns + ".test", Namespaces: []string{ns, "partner-a"},
			Scopes: []latchkeyv1.APIScope{{Name: "partners:sync"}},
		}}
		Expect(k8s.Create(context.Background(), listed)).To(Succeed())
		scopes := func() []any {
			scopes, _ := get(server.URL + "/.well-known/oauth-authorization-server").JSON()["scopes_supported"].([]any)
			return scopes
		}
		Eventually(scopes).Should(ContainElements("invoices:read", "invoices:write"))
		Consistently(scopes, "500ms").ShouldNot(ContainElements("acquisitions:read", "partners:sync"), "a tenant's API scopes are its own business")
		Expect(k8s.Delete(context.Background(), api)).To(Succeed())
		Eventually(scopes).ShouldNot(ContainElement("invoices:read"))
		Expect(k8s.Delete(context.Background(), private)).To(Succeed())
		Expect(k8s.Delete(context.Background(), listed)).To(Succeed())
	})

	It("publishes the signing key and the next one, public parts only", func() {
		resp := get(server.URL + "/oauth2/jwks")
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(resp.Header.Get("Content-Type")).To(Equal("application/jwk-set+json"))
		set, err := jwk.Parse(resp.Body)
		Expect(err).NotTo(HaveOccurred())

		secret := &corev1.Secret{}
		Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: "latchkey-signing-keys"}, secret)).To(Succeed())
		keys, err := signingkeys.Parse(secret.Data[signingkeys.SecretDataKey])
		Expect(err).NotTo(HaveOccurred())
		active, ok := keys.Active(signingkeys.RS256, time.Now())
		Expect(ok).To(BeTrue())
		var rs256 []string
		for _, k := range keys.Keys {
			if k.Algorithm == signingkeys.RS256 {
				rs256 = append(rs256, k.KID)
			}
		}
		Expect(rs256).To(HaveLen(2), "the active key and the next one")
		for _, kid := range rs256 {
			published, found := set.LookupKeyID(kid)
			Expect(found).To(BeTrue(), "kid %s", kid)
			alg, _ := published.Algorithm()
			Expect(alg.String()).To(Equal("RS256"))
			isPrivate, err := jwk.IsPrivateKey(published)
			Expect(err).NotTo(HaveOccurred())
			Expect(isPrivate).To(BeFalse())
		}
		Expect(strings.Contains(string(resp.Body), `"d":`)).To(BeFalse(), "no private exponent")

		c := newClient(newNamespace(), "kid", nil)
		tok, err := clientCredentials(server, c, oauth2.AuthStyleInHeader).Token(context.Background())
		Expect(err).NotTo(HaveOccurred())
		kid, _ := header(tok.AccessToken).KeyID()
		Expect(kid).To(Equal(active.KID), "tokens are signed with the active key, never the next one")
	})
})

var _ = Describe("Operations", func() {
	It("is ready only once a signing key is loaded", func() {
		// As cluster admin, so that the Secret is missing rather than forbidden.
		s := startServerWith(env.Config, signingkeys.RS256, func(o *tokenserver.Options) { o.SigningKeySecret = "no-such-secret" }, false)
		defer s.Stop()
		Consistently(func() int { return get(s.URL + "/readyz").StatusCode }, "1s").Should(Equal(http.StatusServiceUnavailable))
		Expect(string(get(s.URL + "/readyz").Body)).To(ContainSubstring("no signing key"))
		Expect(get(s.URL+"/healthz").StatusCode).To(Equal(http.StatusOK), "alive all the same")
		expectOAuthError(get(s.URL+"/oauth2/jwks"), http.StatusServiceUnavailable, "temporarily_unavailable")
	})

	It("cannot read the Secrets that hold plaintext credentials", func() {
		ns := newNamespace()
		c := newClient(ns, "private", nil)
		restricted, err := client.New(tokenServerConfig, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		err = restricted.Get(context.Background(), secretKey(c), &corev1.Secret{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		err = restricted.List(context.Background(), &corev1.SecretList{}, client.InNamespace(operatorNamespace))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "not even a list in its own namespace: got %v", err)
	})

	It("closes a metrics connection whose request body never arrives", func() {
		conn, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(server.Metrics, "http://"), "/metrics"))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		// A complete header announcing a body that never comes: the server answers, then
		// waits for the rest of the body before it could reuse the connection.
		_, err = conn.Write([]byte("POST /metrics HTTP/1.1\r\nHost: latchkey\r\nContent-Length: 1000\r\n\r\nslow"))
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.SetReadDeadline(time.Now().Add(20 * time.Second))).To(Succeed())
		_, err = io.Copy(io.Discard, conn) // the answer, then the end of the connection
		var netErr net.Error
		Expect(errors.As(err, &netErr) && netErr.Timeout()).To(BeFalse(),
			"the server closed the connection (its 10s read timeout), before our 20s deadline: %v", err)
	})

	It("records lastUsedAt as the start of the minute of last use, for the key and the caller", func() {
		ns := newNamespace()
		resourceServer := newResourceServer(ns, "busy-api", nil)
		key, plaintext := newAPIKey(ns, "busy-key", nil)
		Expect(key.Status.LastUsedAt).To(BeNil())

		before := time.Now()
		Eventually(func() bool { return server.active(resourceServer, plaintext) }).Should(BeTrue(), "once the server's watch brings the key")
		for range 19 {
			Expect(server.active(resourceServer, plaintext)).To(BeTrue())
		}
		// The suite's server truncates to a minute (its granularity).
		Eventually(func(g Gomega) {
			latest := &latchkeyv1.APIKey{}
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(key), latest)).To(Succeed())
			g.Expect(latest.Status.LastUsedAt).NotTo(BeNil())
			usedAt := latest.Status.LastUsedAt.Time
			g.Expect(usedAt.Equal(usedAt.Truncate(time.Minute))).To(BeTrue(), "a whole minute: %s", usedAt)
			g.Expect(usedAt).To(BeTemporally(">=", before.Truncate(time.Minute)))
			g.Expect(usedAt).To(BeTemporally("<=", time.Now()))
		}).Should(Succeed())
		Eventually(func() *latchkeyv1.OAuthClient {
			c := &latchkeyv1.OAuthClient{}
			Expect(k8s.Get(context.Background(), clientKey(resourceServer), c)).To(Succeed())
			return c
		}).Should(HaveField("Status.LastUsedAt", Not(BeNil())), "the caller's client is recorded too")
	})

	It("exports request, cache and signing-key metrics, and no credential", func() {
		ns := newNamespace()
		c := newClient(ns, "metered", nil)
		Expect(server.token(c, nil).StatusCode).To(Equal(http.StatusOK))
		expectOAuthError(postForm(server.URL+"/oauth2/token", nil, &basicAuth{c.ClientID, "wrong"}), http.StatusBadRequest, "invalid_request")

		body := string(get(server.Metrics).Body)
		Expect(body).To(ContainSubstring(`latchkey_tokenserver_requests_total{code="200",endpoint="token"}`))
		Expect(body).To(ContainSubstring(`latchkey_tokenserver_requests_total{code="400",endpoint="token"}`))
		Expect(body).To(ContainSubstring(`latchkey_tokenserver_request_duration_seconds_bucket{endpoint="token"`))
		Expect(body).To(MatchRegexp(`latchkey_tokenserver_cached_oauthclients [1-9]`))
		Expect(body).To(MatchRegexp(`latchkey_tokenserver_cached_apikey_hashes \d`))
		Expect(body).To(MatchRegexp(`latchkey_tokenserver_signing_key_age_seconds [0-9.e+]+`))
		for _, p := range plaintexts {
			Expect(strings.Contains(body, p)).To(BeFalse(), "a plaintext credential in /metrics")
		}
	})

	It("finishes a request in flight when it shuts down", func() {
		s := startServer(signingkeys.RS256)
		c := newClient(newNamespace(), "draining", nil)
		waitKnown(s, c)
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		// Send the headers now and the body after shutdown has begun.
		body := "grant_type=client_credentials"
		req := "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
			"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(c.ClientID+":"+c.ClientSecret)) + "\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n"
		_, err = conn.Write([]byte(req))
		Expect(err).NotTo(HaveOccurred())
		time.Sleep(100 * time.Millisecond)
		s.stop()
		time.Sleep(100 * time.Millisecond)
		_, err = conn.Write([]byte(body))
		Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Eventually(s.done).Should(Receive(BeNil()), "and then exits cleanly")
		_, err = net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
		Expect(err).To(HaveOccurred(), "no longer listening")
	})
})
