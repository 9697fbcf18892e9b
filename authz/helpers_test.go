package authz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

type response struct {
	Status int
	Header http.Header
	Body   string
}

func do(req *http.Request) response {
	resp, err := http.DefaultClient.Do(req)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

func get(u string) response {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return do(req)
}

// forwardAuth asks the authorizer as Caddy's forward_auth does: a GET to /authz
// (naming the API in the path, /authz/api/<namespace>/<name>, unless api is empty)
// with the original method, URI and host in X-Forwarded-* headers.
func forwardAuth(api, method, uri, host string, headers map[string]string) response {
	path := "/authz"
	if api != "" {
		path += "/api/" + api
	}
	return forwardAuthURL(path, method, uri, host, headers)
}

// forwardAuthURL is forwardAuth with the auth URL's whole path and query.
func forwardAuthURL(pathAndQuery, method, uri, host string, headers map[string]string) response {
	req, err := http.NewRequest(http.MethodGet, authorizer.HTTP+pathAndQuery, nil)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", uri)
	req.Header.Set("X-Forwarded-Host", host)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(req)
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

var grpcClient authv3.AuthorizationClient

// check calls the Envoy Check API as Envoy does, with the official protos' client.
func check(extensions map[string]string, method, path, host string, headers map[string]string) *authv3.CheckResponse {
	lower := map[string]string{}
	for k, v := range headers {
		lower[strings.ToLower(k)] = v
	}
	resp, err := authzClient().Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: host, Headers: lower,
		}},
		ContextExtensions: extensions,
	}})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return resp
}

// authzClient is the authorizer's gRPC client, made once.
func authzClient() authv3.AuthorizationClient {
	if grpcClient == nil {
		conn, err := grpc.NewClient(authorizer.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		ExpectWithOffset(2, err).NotTo(HaveOccurred())
		grpcClient = authv3.NewAuthorizationClient(conn)
	}
	return grpcClient
}

// checkHeaderMap asks as Envoy does with encode_raw_headers: the request's
// headers in header_map, each by its name as the client spelt it.
func checkHeaderMap(extensions map[string]string, method, path, host string, headers ...*corev3.HeaderValue) *authv3.CheckResponse {
	resp, err := authzClient().Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: host, HeaderMap: &corev3.HeaderMap{Headers: headers},
		}},
		ContextExtensions: extensions,
	}})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return resp
}

// checkStatus is the HTTP status Envoy would answer with.
func checkStatus(resp *authv3.CheckResponse) int {
	if ok := resp.GetOkResponse(); ok != nil && resp.GetStatus().GetCode() == 0 {
		return 200
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "authz-"}}
	ExpectWithOffset(1, k8s.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// newAPI creates an API for leads: GET /v1/leads needs leads:read, POST leads:write.
func newAPI(ns, name string, mutate func(*latchkeyv1.API)) *latchkeyv1.API {
	api := &latchkeyv1.API{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: latchkeyv1.APISpec{
			Identifier: "https://" + name + "." + ns + ".test",
			Scopes: []latchkeyv1.APIScope{{Name: "leads:read", Description: "List and get leads"},
				{Name: "leads:write", Description: "Create and change leads"}},
			Rules: []latchkeyv1.APIRule{
				{Methods: []string{"GET"}, PathPrefix: "/v1/leads", Scopes: []string{"leads:read"}},
				{Methods: []string{"POST"}, PathPrefix: "/v1/leads", Scopes: []string{"leads:write"}},
			},
		},
	}
	if mutate != nil {
		mutate(api)
	}
	ExpectWithOffset(1, k8s.Create(context.Background(), api)).To(Succeed())
	return api
}

// newAPIKey creates an APIKey, waits until it is Ready and returns the key in its Secret.
func newAPIKey(ns, name string, mutate func(*latchkeyv1.APIKey)) (*latchkeyv1.APIKey, string) {
	obj := &latchkeyv1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}},
	}
	if mutate != nil {
		mutate(obj)
	}
	ExpectWithOffset(1, k8s.Create(context.Background(), obj)).To(Succeed())
	waitReady(obj)
	secret := &corev1.Secret{}
	ExpectWithOffset(1, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: obj.SecretName()}, secret)).To(Succeed())
	key := string(secret.Data[latchkeyv1.APIKeySecretKey])
	plaintexts = append(plaintexts, key)
	return obj, key
}

type credentialObject interface {
	client.Object
	CredentialStatus() *latchkeyv1.CredentialStatus
}

func waitReady(obj credentialObject) {
	EventuallyWithOffset(2, func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(obj.CredentialStatus().Conditions, latchkeyv1.ConditionReady)).To(BeTrue())
		g.Expect(obj.CredentialStatus().ObservedGeneration).To(Equal(obj.GetGeneration()))
	}).Should(Succeed())
}

// newClient creates an OAuthClient and returns its client_id and secret.
func newClient(ns, name string, mutate func(*latchkeyv1.OAuthClient)) (*latchkeyv1.OAuthClient, string, string) {
	obj := &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       latchkeyv1.OAuthClientSpec{Scopes: []string{"leads:read"}, Audiences: []string{"https://unused.test"}},
	}
	if mutate != nil {
		mutate(obj)
	}
	ExpectWithOffset(1, k8s.Create(context.Background(), obj)).To(Succeed())
	waitReady(obj)
	secret := &corev1.Secret{}
	ExpectWithOffset(1, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: obj.SecretName()}, secret)).To(Succeed())
	plaintexts = append(plaintexts, string(secret.Data[latchkeyv1.ClientSecretSecretKey]))
	return obj, string(secret.Data[latchkeyv1.ClientIDSecretKey]), string(secret.Data[latchkeyv1.ClientSecretSecretKey])
}

// accessToken gets a client_credentials token for resource from the token server,
// once its watch has brought it the client (Ready says only that the manager is
// done; until the token server knows the client, it answers invalid_client).
func accessToken(id, secret, resource string) string {
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}}
	var resp response
	EventuallyWithOffset(1, func() int {
		req, err := http.NewRequest(http.MethodPost, tokenServerURL+"/oauth2/token", strings.NewReader(form.Encode()))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp = do(req)
		return resp.Status
	}).Should(Equal(200), func() string { return resp.Body })
	var body struct {
		AccessToken string `json:"access_token"`
	}
	ExpectWithOffset(1, json.Unmarshal([]byte(resp.Body), &body)).To(Succeed())
	plaintexts = append(plaintexts, body.AccessToken)
	return body.AccessToken
}

// errorBody decodes a refusal's JSON body.
func errorBody(r response) (code, description string) {
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	ExpectWithOffset(1, json.Unmarshal([]byte(r.Body), &body)).To(Succeed(), r.Body)
	return body.Error, body.Description
}

func mergePatch(obj client.Object, patch string) {
	ExpectWithOffset(1, k8s.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", []byte(patch)))).To(Succeed())
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
