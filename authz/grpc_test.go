package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// upstreamHeaders is what Envoy would set on the upstream request, and what it would remove.
func upstreamHeaders(resp *authv3.CheckResponse) (set map[string]string, removed []string) {
	set = map[string]string{}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		ExpectWithOffset(1, h.GetAppendAction()).To(Equal(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			"every header is overwritten, never appended beside a client's copy")
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return set, resp.GetOkResponse().GetHeadersToRemove()
}

var _ = Describe("Envoy ext_authz (gRPC)", func() {
	var ns, identifier string
	var ext map[string]string
	var key string
	BeforeEach(func() {
		ns = newNamespace()
		identifier = newAPI(ns, "leads", nil).Spec.Identifier
		ext = map[string]string{"latchkey.dev/api": ns + "/leads"}
		_, key = newAPIKey(ns, "reader", nil)
		Eventually(func() int { return checkStatus(check(ext, "GET", "/v1/leads", "", bearer(key))) }).Should(Equal(200))
	})

	It("allows with identity headers, removes the key and every identity header it does not set", func() {
		resp := check(ext, "GET", "/v1/leads?x=1", "leads.example", map[string]string{
			"X-API-Key": key, "X-Latchkey-Client-Id": "forged", "X-Latchkey-Subject": "admin"})
		Expect(checkStatus(resp)).To(Equal(200))
		set, removed := upstreamHeaders(resp)
		Expect(set).To(HaveKeyWithValue("x-latchkey-subject", "apikey:"+ns+"/reader"))
		Expect(set).To(HaveKeyWithValue("x-latchkey-credential-kind", "api_key"))
		Expect(set).To(HaveKeyWithValue("x-latchkey-scopes", "leads:read"))
		Expect(removed).To(ContainElements("x-latchkey-client-id", "x-api-key"))

		_, removed = upstreamHeaders(check(ext, "GET", "/v1/leads", "", map[string]string{"Authorization": "Bearer " + key, "X-API-Key": key}))
		Expect(removed).To(ContainElements("authorization", "x-api-key"), "the same key sent twice is removed twice")
	})

	It("denies with the status, challenge and JSON body the client should see", func() {
		resp := check(ext, "POST", "/v1/leads", "", bearer(key))
		Expect(checkStatus(resp)).To(Equal(403))
		denied := resp.GetDeniedResponse()
		Expect(denied.GetBody()).To(ContainSubstring(`"error":"insufficient_scope"`))
		var challenge string
		for _, h := range denied.GetHeaders() {
			if h.GetHeader().GetKey() == "www-authenticate" {
				challenge = h.GetHeader().GetValue()
			}
		}
		Expect(challenge).To(ContainSubstring(`scope="leads:write"`))
		Expect(checkStatus(check(ext, "GET", "/v1/leads", "", nil))).To(Equal(401))
	})

	It("takes required scopes from the route's context extensions", func() {
		withScopes := map[string]string{"latchkey.dev/api": ns + "/leads", "latchkey.dev/scopes": "leads:write"}
		Expect(checkStatus(check(withScopes, "GET", "/v1/leads", "", bearer(key)))).To(Equal(403))
		withScopes["latchkey.dev/scopes"] = "leads:read"
		Expect(checkStatus(check(withScopes, "GET", "/not/in/rules", "", bearer(key)))).To(Equal(200))
	})

	It("accepts a client's access token for the API until the client is revoked", func() {
		client, id, secret := newClient(ns, "app", func(o *latchkeyv1.OAuthClient) {
			o.Spec.Audiences = []string{identifier, "https://other.test"}
		})
		token := accessToken(id, secret, identifier)
		var resp *authv3.CheckResponse
		Eventually(func() int {
			resp = check(ext, "GET", "/v1/leads", "", bearer(token))
			return checkStatus(resp)
		}).Should(Equal(200), "the authorizer has loaded the JWKS ConfigMap")
		set, removed := upstreamHeaders(resp)
		Expect(set).To(HaveKeyWithValue("x-latchkey-credential-kind", "access_token"))
		Expect(set).To(HaveKeyWithValue("x-latchkey-client-id", id))
		Expect(set).To(HaveKeyWithValue("x-latchkey-subject", id))
		Expect(removed).To(ContainElement("x-latchkey-key-id"))
		Expect(removed).NotTo(ContainElement("authorization"), "an access token passes through for upstreams that verify it themselves")

		other := accessToken(id, secret, "https://other.test")
		Expect(checkStatus(check(ext, "GET", "/v1/leads", "", bearer(other)))).To(Equal(401), "a token for another audience")

		mergePatch(client, `{"spec":{"revoked":true}}`)
		start := time.Now()
		Eventually(func() int { return checkStatus(check(ext, "GET", "/v1/leads", "", bearer(token))) }).
			WithPolling(5 * time.Millisecond).Should(Equal(401))
		Expect(time.Since(start)).To(BeNumerically("<", time.Second), "revoking the client rejects its tokens at the edge at once")
	})

	It("never answers 5xx or panics on hostile input", func() {
		jwks := &corev1.ConfigMap{}
		Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: jwksConfigMap}, jwks)).To(Succeed())
		var set jose.JSONWebKeySet
		Expect(jwksJSON(jwks, &set)).To(Succeed())
		kid := set.Keys[0].KeyID
		none := unsignedToken(`{"alg":"none","typ":"at+jwt","kid":"` + kid + `"}`)
		hs256 := hmacToken(kid, []byte("the public key is not a secret, 32+ bytes long"))
		unknownKid := unsignedToken(`{"alg":"ES256","typ":"at+jwt","kid":"nope"}`) + "AAAA"
		for name, headers := range map[string]map[string]string{
			"alg none":          bearer(none),
			"HS256":             bearer(hs256),
			"unknown kid":       bearer(unknownKid),
			"huge header":       bearer(strings.Repeat("a", 60<<10)),
			"bearer, no token":  {"Authorization": "Bearer "},
			"bearer twice":      {"Authorization": "Bearer a, Bearer b"},
			"control character": bearer("abc\x00def"),
		} {
			status := checkStatus(check(ext, "GET", "/v1/leads", "", headers))
			Expect(status).To(Equal(401), name)
		}
		Expect(checkStatus(check(nil, "GET", "/v1/leads", "", bearer(key)))).To(Equal(403), "no Host and no API named: no API applies")
		// Envoy replaces non-UTF-8 bytes in its headers map with '!'; over HTTP they arrive as sent.
		for _, value := range []string{"Bearer lk_live_\xff\xfe", "Bearer \xc3\x28", strings.Repeat("Bearer ", 4000)} {
			Expect(forwardAuth(ns+"/leads", "GET", "/v1/leads", "", map[string]string{"Authorization": value}).Status).To(Equal(401))
		}
		Expect(forwardAuth(ns+"/leads", "GET", "/v1/leads/\xff", "", bearer(key)).Status).To(Equal(403), "a non-UTF-8 path")
		Expect(checkStatus(check(map[string]string{"latchkey.dev/api": "no-slash"}, "GET", "/v1/leads", "", bearer(key)))).To(Equal(403))
	})

	It("decides a check whose headers are not UTF-8 instead of failing it (failure_mode_allow would let it through)", func() {
		// As Envoy before 1.30 sent a Latin-1 header (envoyproxy/envoy#22996), and
		// other ext_authz clients still do: the generated decoder refused the whole
		// message, and a filter that fails open allowed the request unchecked.
		latin1 := func(headers map[string]string) []byte {
			msg, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/v1/leads", Headers: headers}},
				ContextExtensions: ext,
			}})
			Expect(err).NotTo(HaveOccurred())
			return bytes.ReplaceAll(msg, []byte("Espa~a"), []byte("Espa\xf1a"))
		}
		resp, err := checkRaw(latin1(map[string]string{"user-agent": "Espa~a"}))
		Expect(err).NotTo(HaveOccurred(), "an anonymous request with a Latin-1 header is decided, not an error")
		Expect(checkStatus(resp)).To(Equal(401))
		resp, err = checkRaw(latin1(map[string]string{"user-agent": "Espa~a", "authorization": "Bearer " + key}))
		Expect(err).NotTo(HaveOccurred())
		Expect(checkStatus(resp)).To(Equal(200), "the key is read beside a Latin-1 header")
	})
})

// checkRaw sends msg, a CheckRequest's bytes as they are (the generated code
// would not encode one that is not UTF-8), to the authorizer's Check.
func checkRaw(msg []byte) (*authv3.CheckResponse, error) {
	conn, err := grpc.NewClient(authorizer.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer func() { _ = conn.Close() }()
	resp := &authv3.CheckResponse{}
	err = conn.Invoke(context.Background(), authv3.Authorization_Check_FullMethodName, msg, resp,
		grpc.ForceCodecV2(rawRequestCodec{encoding.GetCodecV2("proto")}))
	return resp, err
}

// rawRequestCodec sends a []byte as it is and reads the answer with the proto codec.
type rawRequestCodec struct{ encoding.CodecV2 }

func (c rawRequestCodec) Marshal(v any) (mem.BufferSlice, error) {
	if msg, ok := v.([]byte); ok {
		return mem.BufferSlice{mem.SliceBuffer(msg)}, nil
	}
	return c.CodecV2.Marshal(v)
}

func jwksJSON(cm *corev1.ConfigMap, into *jose.JSONWebKeySet) error {
	return json.Unmarshal([]byte(cm.Data["jwks.json"]), into)
}

// unsignedToken is header.payload. with valid-looking claims and no signature.
func unsignedToken(header string) string {
	claims := `{"iss":"` + issuer + `","exp":` + itoa(time.Now().Add(time.Hour).Unix()) + `,"client_id":"x","scope":"leads:read"}`
	return b64(header) + "." + b64(claims) + "."
}

// hmacToken is an HS256 token keyed with a guessable secret: the algorithm
// confusion attack (a verifier that took alg from the header would accept it).
func hmacToken(kid string, secret []byte) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
	Expect(err).NotTo(HaveOccurred())
	token, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: issuer, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
	Expect(err).NotTo(HaveOccurred())
	return token
}
