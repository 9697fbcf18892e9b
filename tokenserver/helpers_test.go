package tokenserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// plaintexts collects every credential the suite read from a Secret, so that the
// AfterSuite can check none of them reached a log or a metric.
var plaintexts []string

// newNamespace creates a namespace of its own for one spec.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ts-"}}
	ExpectWithOffset(1, k8s.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// testClient is an OAuthClient as a workload sees it: the contents of its Secret.
type testClient struct {
	Object       *latchkeyv1.OAuthClient
	ClientID     string
	ClientSecret string
}

// newClient creates an OAuthClient, waits until it is Ready and reads its Secret.
func newClient(ns, name string, mutate func(*latchkeyv1.OAuthClient)) testClient {
	ctx := context.Background()
	obj := &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: latchkeyv1.OAuthClientSpec{
			Scopes:    []string{"leads:read", "leads:write"},
			Audiences: []string{"https://api.acme.test", "https://billing.acme.test"},
		},
	}
	if mutate != nil {
		mutate(obj)
	}
	ExpectWithOffset(1, k8s.Create(ctx, obj)).To(Succeed())
	waitIssued(obj)
	c := readClientSecret(obj)
	waitKnown(server, c)
	return c
}

// waitKnown waits until s's index (fed by its own watch) knows c: a token request
// with a grant type nobody serves is unsupported_grant_type (400) for a client it
// authenticates and invalid_client (401) for one it has not seen yet. A refused
// request is not a use, so this records nothing.
func waitKnown(s *runningServer, c testClient) {
	if s == nil || c.ClientSecret == "" {
		return
	}
	form, auth := url.Values{"grant_type": {"urn:latchkey:probe"}}, &basicAuth{c.ClientID, c.ClientSecret}
	if methods := c.Object.Spec.TokenEndpointAuthMethods; len(methods) > 0 && !slices.Contains(methods, latchkeyv1.AuthClientSecretBasic) {
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.ClientSecret)
		auth = nil
	}
	EventuallyWithOffset(2, func() int { return postForm(s.URL+"/oauth2/token", form, auth).StatusCode }).
		Should(Equal(http.StatusBadRequest), "the token server's watch delivers the new client")
}

// readClientSecret reads an issued OAuthClient's Secret, as its workload would.
func readClientSecret(obj *latchkeyv1.OAuthClient) testClient {
	secret := &corev1.Secret{}
	ExpectWithOffset(2, k8s.Get(context.Background(), client.ObjectKey{Namespace: obj.Namespace, Name: obj.SecretName()}, secret)).To(Succeed())
	c := testClient{
		Object:       obj,
		ClientID:     string(secret.Data[latchkeyv1.ClientIDSecretKey]),
		ClientSecret: string(secret.Data[latchkeyv1.ClientSecretSecretKey]),
	}
	plaintexts = append(plaintexts, c.ClientSecret)
	return c
}

// newResourceServer is newClient for a resource server: it may introspect the
// credentials of its namespace meant for the suite's APIs (audience
// https://api.acme.test, scopes leads:* and billing:read).
func newResourceServer(ns, name string, mutate func(*latchkeyv1.OAuthClient)) testClient {
	return newClient(ns, name, func(o *latchkeyv1.OAuthClient) {
		o.Spec.Introspection = &latchkeyv1.IntrospectionPolicy{
			Audiences: []string{"https://api.acme.test"},
			Scopes:    []string{"leads:*", "billing:read"},
		}
		if mutate != nil {
			mutate(o)
		}
	})
}

// newAPIKey creates an APIKey, waits until it is Ready and returns the key in its Secret.
func newAPIKey(ns, name string, mutate func(*latchkeyv1.APIKey)) (*latchkeyv1.APIKey, string) {
	ctx := context.Background()
	obj := &latchkeyv1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: latchkeyv1.APIKeySpec{
			Scopes: []string{"leads:read"},
		},
	}
	if mutate != nil {
		mutate(obj)
	}
	ExpectWithOffset(1, k8s.Create(ctx, obj)).To(Succeed())
	waitIssued(obj)
	return obj, apiKeyIn(ns, obj.SecretName())
}

func apiKeyIn(ns, secretName string) string {
	secret := &corev1.Secret{}
	ExpectWithOffset(1, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: secretName}, secret)).To(Succeed())
	key := string(secret.Data[latchkeyv1.APIKeySecretKey])
	plaintexts = append(plaintexts, key)
	return key
}

// credentialObject is what waitIssued needs of an APIKey or an OAuthClient.
type credentialObject interface {
	client.Object
	SecretName() string
	CredentialStatus() *latchkeyv1.CredentialStatus
}

// waitIssued waits until obj is Ready=True for its current generation, and updates obj.
func waitIssued(obj credentialObject) {
	EventuallyWithOffset(2, func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		status := obj.CredentialStatus()
		g.Expect(meta.IsStatusConditionTrue(status.Conditions, latchkeyv1.ConditionReady)).To(BeTrue())
		g.Expect(status.ObservedGeneration).To(Equal(obj.GetGeneration()))
	}).Should(Succeed())
}

// mergePatch applies mutate to obj as a JSON merge patch (no resourceVersion, so
// no conflict with the reconciler's status writes).
func mergePatch[T client.Object](obj T, mutate func(T)) {
	base := obj.DeepCopyObject().(T)
	mutate(obj)
	ExpectWithOffset(1, k8s.Patch(context.Background(), obj, client.MergeFrom(base))).To(Succeed())
}

// response is an HTTP response with its body read.
type response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// JSON decodes the body into a map.
func (r response) JSON() map[string]any {
	var m map[string]any
	ExpectWithOffset(1, json.Unmarshal(r.Body, &m)).To(Succeed(), "body: %s", r.Body)
	return m
}

func do(req *http.Request) response {
	resp, err := http.DefaultClient.Do(req)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	return response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}
}

func get(u string) response {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return do(req)
}

// basicAuth is client_secret_basic credentials; nil means none.
type basicAuth struct{ ID, Secret string }

// postForm posts a form-encoded body, with HTTP Basic credentials when auth is set
// (form-urlencoded first, as RFC 6749 §2.3.1 requires).
func postForm(u string, form url.Values, auth *basicAuth) response {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != nil {
		req.SetBasicAuth(url.QueryEscape(auth.ID), url.QueryEscape(auth.Secret))
	}
	return do(req)
}

// token asks s for a client_credentials token with client_secret_basic.
func (s *runningServer) token(c testClient, extra url.Values) response {
	form := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		form[k] = v
	}
	return postForm(s.URL+"/oauth2/token", form, &basicAuth{c.ClientID, c.ClientSecret})
}

// introspect asks s about token, authenticated as caller.
func (s *runningServer) introspect(caller testClient, token string) map[string]any {
	resp := postForm(s.URL+"/oauth2/introspect", url.Values{"token": {token}}, &basicAuth{caller.ClientID, caller.ClientSecret})
	ExpectWithOffset(1, resp.StatusCode).To(Equal(http.StatusOK), "body: %s", resp.Body)
	return resp.JSON()
}

// active reports whether introspection answers active for token.
func (s *runningServer) active(caller testClient, token string) bool {
	return s.introspect(caller, token)["active"] == true
}

// expectOAuthError checks an RFC 6749 §5.2 error response.
// tokenFields are the credentials a token response carries.
var tokenFields = regexp.MustCompile(`"(access_token|refresh_token|id_token)":"[^"]*"`)

// redactTokens keeps the tokens of a response out of a failure message: a failed
// spec's output is printed, and no credential may reach it.
func redactTokens(body []byte) string {
	return tokenFields.ReplaceAllString(string(body), `"$1":"[redacted]"`)
}

func expectOAuthError(resp response, status int, code string) {
	ExpectWithOffset(1, resp.StatusCode).To(Equal(status), "body: %s", redactTokens(resp.Body))
	ExpectWithOffset(1, resp.Header.Get("Content-Type")).To(Equal("application/json"))
	ExpectWithOffset(1, resp.Header.Get("Cache-Control")).To(Equal("no-store"))
	body := resp.JSON()
	ExpectWithOffset(1, body).To(HaveKeyWithValue("error", code))
	ExpectWithOffset(1, body).To(HaveKeyWithValue("error_description", Not(BeEmpty())))
	if status == http.StatusUnauthorized {
		ExpectWithOffset(1, resp.Header.Get("WWW-Authenticate")).To(HavePrefix("Basic "))
	}
}

// within measures how long cond takes to hold, failing if it takes longer than limit.
func within(limit time.Duration, what string, cond func() bool) time.Duration {
	start := time.Now()
	EventuallyWithOffset(1, cond).WithTimeout(limit).WithPolling(10*time.Millisecond).Should(BeTrue(), what)
	took := time.Since(start)
	AddReportEntry(what, took.String())
	return took
}

func clientKey(c testClient) client.ObjectKey { return client.ObjectKeyFromObject(c.Object) }

func secretKey(c testClient) client.ObjectKey {
	return client.ObjectKey{Namespace: c.Object.Namespace, Name: c.Object.SecretName()}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// flip returns a base62 character other than c.
func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}
