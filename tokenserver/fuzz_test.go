package tokenserver

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

// Native fuzz targets of the HTTP endpoints, in process: `go test ./tokenserver/
// -run '^Fuzz'` runs their seeds, `make fuzz` fuzzes each one for FUZZTIME. They
// only go through Server.Handler(), so they hold across internal refactors.
//
// Everything the fuzz server holds is derived from fixed bytes and a fixed clock:
// the signing key, the API key, the client credentials. go test -fuzz runs the
// target in several processes (the coordinator adds the seeds, workers execute
// them), and a token signed in one process must verify the same way in another,
// and a crashing input saved under testdata/fuzz must reproduce later. Only the
// jti of an issued token differs from one process to the next.

// fuzzNow is the fuzz server's clock; tokens it issues expire an hour later.
var fuzzNow = time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)

// fuzzMaxBody is the fuzz server's MaxBodyBytes, small so that inputs reach it.
const fuzzMaxBody = 4 << 10

const (
	fuzzIssuer   = "https://auth.fuzz.test"
	fuzzAudience = "https://api.fuzz.test"
	formType     = "application/x-www-form-urlencoded"
)

// fuzzFixture is a Server over a fixed Index and key ring, with the plaintexts
// the seeds need.
type fuzzFixture struct {
	srv     *Server
	h       http.Handler
	kid     string             // of the EdDSA key that signs
	private ed25519.PrivateKey // that key, to sign crafted tokens for the seeds
	esKID   string             // an ES256 key that only verifies (a second algorithm in the ring)

	apiKey        string // active
	expiredAPIKey string // indexed, past its expiresAt
	revokedAPIKey string // its APIKey is revoked, so it is not indexed
	unknownAPIKey string // well-formed, never indexed
	otherNSAPIKey string // active, in a namespace the introspecting client does not serve
	otherScopeKey string // active, with a scope the introspecting client does not serve

	clientID, clientSecret       string // basic and post, client_credentials, a resource server (spec.introspection)
	postID, postSecret           string // client_secret_post only
	revokedID, revokedSecret     string // revoked
	noGrantID, noGrantSecret     string // may not use client_credentials
	duplicateID, duplicateSecret string // client_id held by two OAuthClients
	otherNSID, otherNSSecret     string // in another namespace; not a resource server

	token       string         // an access token from the token endpoint, for clientID
	tokenClaims map[string]any // its introspection, without jti
	// Real tokens that must not be active to clientID as a resource server.
	billingToken string // clientID's, for an audience its introspection policy does not serve
	otherNSToken string // of a client in a namespace the policy does not cover
}

// fixedBytes is a deterministic "random" source.
func fixedBytes(b byte) io.Reader { return bytes.NewReader(bytes.Repeat([]byte{b}, 64)) }

func newFuzzFixture(tb testing.TB) *fuzzFixture {
	tb.Helper()
	fx := &fuzzFixture{}
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}

	// The signing key ring: EdDSA (deterministic from its seed) signs; an ES256 key
	// from a fixed scalar is there to verify only, as during an algorithm change.
	signer, err := signingkeys.Generate(signingkeys.EdDSA, fixedBytes(7), fuzzNow.Add(-time.Hour), fuzzNow.Add(-time.Hour), fuzzNow.Add(24*time.Hour))
	must(err)
	fx.kid, fx.private = signer.KID, signer.Private.Key.(ed25519.PrivateKey)
	scalar := bytes.Repeat([]byte{0x42}, 32)
	esKey, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
	must(err)
	fx.esKID = "fuzz-es256"
	verifyOnly := signingkeys.Key{
		KID: fx.esKID, Algorithm: signingkeys.ES256,
		CreatedAt: signer.CreatedAt, ActivatesAt: signer.ActivatesAt, RetiresAt: signer.RetiresAt,
		Private: jose.JSONWebKey{Key: esKey, KeyID: fx.esKID, Algorithm: signingkeys.ES256, Use: "sig"},
	}
	data, err := signingkeys.Set{Keys: []signingkeys.Key{signer, verifyOnly}}.Marshal()
	must(err)
	keys := &Keys{alg: signingkeys.EdDSA}
	must(keys.load(&corev1.Secret{Data: map[string][]byte{signingkeys.SecretDataKey: data}}))

	idx := index.NewIndex(logr.Discard())
	apiKey := func(fill byte, name string, mutate func(*latchkeyv1.APIKey)) string {
		plaintext, err := credential.NewAPIKey(fixedBytes(fill), "lk", "live")
		must(err)
		obj := &latchkeyv1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: "fuzz", Name: name, UID: types.UID(name + "-uid")},
			Spec:       latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}},
			Status: latchkeyv1.APIKeyStatus{CredentialStatus: latchkeyv1.CredentialStatus{
				Credentials: []latchkeyv1.CredentialHash{{Hash: credential.Hash(plaintext)}},
			}},
		}
		if mutate != nil {
			mutate(obj)
		}
		idx.UpsertAPIKey(obj)
		return plaintext
	}
	fx.apiKey = apiKey(1, "key", nil)
	fx.expiredAPIKey = apiKey(2, "expired", func(k *latchkeyv1.APIKey) {
		k.Spec.ExpiresAt = &metav1.Time{Time: fuzzNow.Add(-time.Minute)}
	})
	fx.revokedAPIKey = apiKey(3, "revoked", func(k *latchkeyv1.APIKey) { k.Spec.Revoked = true })
	fx.unknownAPIKey, err = credential.NewAPIKey(fixedBytes(4), "lk", "live")
	must(err)
	fx.otherNSAPIKey = apiKey(5, "other-namespace", func(k *latchkeyv1.APIKey) { k.Namespace = "other" })
	fx.otherScopeKey = apiKey(6, "other-scope", func(k *latchkeyv1.APIKey) { k.Spec.Scopes = []string{"billing:read"} })

	client := func(fill byte, uid string, mutate func(*latchkeyv1.OAuthClient)) (string, string) {
		id := hex.EncodeToString(bytes.Repeat([]byte{fill}, 12))
		secret, err := credential.NewClientSecret(fixedBytes(fill + 100))
		must(err)
		obj := oauthClientWithID(uid, id, credential.Hash(secret))
		obj.Spec.Scopes = []string{"leads:read", "leads:write"}
		obj.Spec.Audiences = []string{fuzzAudience, "https://billing.fuzz.test"}
		if mutate != nil {
			mutate(obj)
		}
		idx.UpsertClient(obj)
		return id, secret
	}
	// The client the seeds authenticate as is also the resource server that introspects:
	// it serves the API keys of namespace fuzz (scopes leads:*) and the access tokens
	// of its own namespace (ns) for fuzzAudience.
	fx.clientID, fx.clientSecret = client(10, "client", func(o *latchkeyv1.OAuthClient) {
		o.Spec.Introspection = &latchkeyv1.IntrospectionPolicy{
			Audiences: []string{fuzzAudience}, Scopes: []string{"leads:*"}, Namespaces: []string{"fuzz", o.Namespace},
		}
	})
	fx.postID, fx.postSecret = client(11, "post-only", func(o *latchkeyv1.OAuthClient) {
		o.Spec.TokenEndpointAuthMethods = []latchkeyv1.TokenEndpointAuthMethod{latchkeyv1.AuthClientSecretPost}
	})
	fx.revokedID, fx.revokedSecret = client(12, "revoked", func(o *latchkeyv1.OAuthClient) { o.Spec.Revoked = true })
	fx.noGrantID, fx.noGrantSecret = client(13, "no-grant", func(o *latchkeyv1.OAuthClient) {
		o.Spec.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}
	})
	fx.duplicateID, fx.duplicateSecret = client(14, "duplicate-a", nil)
	client(14, "duplicate-b", nil)
	fx.otherNSID, fx.otherNSSecret = client(15, "other-namespace", func(o *latchkeyv1.OAuthClient) { o.Namespace = "other" })

	fx.srv, err = NewServer(Config{IssuerURL: fuzzIssuer, SigningAlgorithm: signingkeys.EdDSA, MaxBodyBytes: fuzzMaxBody},
		idx, keys, clocktesting.NewFakePassiveClock(fuzzNow), logr.Discard(), prometheus.NewRegistry(), discardUsage{})
	must(err)
	fx.srv.SetSynced()
	fx.h = fx.srv.Handler()

	issue := func(body, id, secret string) string {
		rec := post(fx.h, "/oauth2/token", body, id, secret)
		var issued oauth.TokenResponse
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &issued) != nil || issued.AccessToken == "" {
			tb.Fatalf("the fuzz server issued no token: %d %s", rec.Code, rec.Body)
		}
		return issued.AccessToken
	}
	fx.token = issue("grant_type=client_credentials", fx.clientID, fx.clientSecret)
	rec := post(fx.h, "/oauth2/introspect", url.Values{"token": {fx.token}}.Encode(), fx.clientID, fx.clientSecret)
	if err := json.Unmarshal(rec.Body.Bytes(), &fx.tokenClaims); err != nil || fx.tokenClaims["active"] != true {
		tb.Fatalf("the fuzz server's own token is not active: %d %s", rec.Code, rec.Body)
	}
	delete(fx.tokenClaims, "jti")
	fx.billingToken = issue("grant_type=client_credentials&resource=https%3A%2F%2Fbilling.fuzz.test", fx.clientID, fx.clientSecret)
	fx.otherNSToken = issue("grant_type=client_credentials", fx.otherNSID, fx.otherNSSecret)
	return fx
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func basicHeader(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

// segments returns the three decoded parts of a compact JWS (nil if it is not one).
func segments(token string) [][]byte {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	out := make([][]byte, 3)
	for i, p := range parts {
		var err error
		if out[i], err = base64.RawURLEncoding.DecodeString(p); err != nil {
			return nil
		}
	}
	return out
}

// spelledCanonically (the test's own oracle, independent of canonicalJWS) reports whether token is exactly header.payload.signature, each the
// unpadded base64url of its bytes (RFC 7515 §2: no line breaks, whitespace or
// other characters), so that one signed token has exactly one spelling.
func spelledCanonically(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil || b64url(b) != p {
			return false
		}
	}
	return true
}

// signEdDSA signs header and payload with key as a compact JWS.
func signEdDSA(key ed25519.PrivateKey, header string, payload []byte) string {
	input := b64url([]byte(header)) + "." + b64url(payload)
	return input + "." + b64url(ed25519.Sign(key, []byte(input)))
}

// withClaims returns the fuzz token's payload with some claims replaced.
func (fx *fuzzFixture) withClaims(tb testing.TB, set map[string]any) []byte {
	tb.Helper()
	var claims map[string]any
	if err := json.Unmarshal(segments(fx.token)[1], &claims); err != nil {
		tb.Fatal(err)
	}
	maps.Copy(claims, set)
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return payload
}

// checkOAuthResponse checks what every answer of the token and introspection
// endpoints has in common and returns the decoded JSON body.
func checkOAuthResponse(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) map[string]any {
	t.Helper()
	if !slices.Contains(allowed, rec.Code) {
		t.Fatalf("status %d, want one of %v; body %s", rec.Code, allowed, rec.Body)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("status %d: Cache-Control %q, want no-store", rec.Code, cc)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d: Content-Type %q, want application/json", rec.Code, ct)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("status %d: the body is not a JSON object (%v): %q", rec.Code, err, rec.Body)
	}
	if rec.Code != http.StatusOK {
		if code, _ := body["error"].(string); code == "" {
			t.Fatalf("status %d without an error code: %s", rec.Code, rec.Body)
		}
	}
	if rec.Code == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("a 401 without a Basic WWW-Authenticate challenge: %q", rec.Header().Get("WWW-Authenticate"))
	}
	return body
}

// fuzzContentTypes are the Content-Type headers FuzzTokenEndpoint chooses from.
var fuzzContentTypes = []string{
	formType,
	formType + "; charset=UTF-8",
	"", // no header
	"application/json",
	"multipart/form-data; boundary=fuzz",
	"text/plain",
	formType + "; =broken",
	"Application/X-WWW-Form-Urlencoded",
	formType + "x",
}

// FuzzTokenEndpoint posts an arbitrary body with one of several Content-Types and an
// arbitrary Authorization header to the token endpoint. The answer is always a
// well-formed OAuth response, and a token is only issued to a caller that presented
// an active client's own secret by a method that client may use.
func FuzzTokenEndpoint(f *testing.F) {
	fx := newFuzzFixture(f)
	const cc = "grant_type=client_credentials"
	inBody := func(id, secret string) string { // client_secret_post
		return cc + "&" + url.Values{"client_id": {id}, "client_secret": {secret}}.Encode()
	}
	basic := basicHeader(fx.clientID, fx.clientSecret)
	seeds := []struct {
		body string
		ct   uint8
		auth string
	}{
		{cc, 0, basic},
		{cc + "&scope=leads%3Aread&resource=" + url.QueryEscape(fuzzAudience) + "&audience=https%3A%2F%2Fbilling.fuzz.test", 1, basic},
		{cc + "&resource=" + url.QueryEscape(fuzzAudience) + "&resource=" + url.QueryEscape(fuzzAudience), 0, basic},
		{inBody(fx.clientID, fx.clientSecret), 0, ""},
		{inBody(fx.postID, fx.postSecret), 0, ""},
		{cc, 0, basicHeader(fx.postID, fx.postSecret)},       // basic is not allowed for it
		{cc, 0, basicHeader(fx.revokedID, fx.revokedSecret)}, // revoked
		{inBody(fx.revokedID, fx.revokedSecret), 0, ""},      // revoked
		{cc, 0, basicHeader(fx.noGrantID, fx.noGrantSecret)}, // unauthorized_client
		{cc, 0, basicHeader(fx.otherNSID, fx.otherNSSecret)},
		{cc, 0, basicHeader(fx.duplicateID, fx.duplicateSecret)},                                     // duplicate client_id
		{cc, 0, basicHeader(fx.clientID, fx.clientSecret[1:])},                                       // wrong secret
		{cc, 0, basicHeader(fx.clientID, fx.postSecret)},                                             // another client's secret
		{cc, 0, "Basic !!!not-base64!!!"},                                                            // malformed base64
		{cc, 0, "Basic " + b64url([]byte(fx.clientID+":"+fx.clientSecret))},                          // base64url, not base64
		{cc, 0, "Basic " + base64.StdEncoding.EncodeToString([]byte(fx.clientID+fx.clientSecret))},   // no colon
		{cc, 0, basicHeader(url.QueryEscape(fx.clientID), url.QueryEscape(fx.clientSecret))},         // form-urlencoded
		{cc, 0, basicHeader(fmt.Sprintf("%%%02X", fx.clientID[0])+fx.clientID[1:], fx.clientSecret)}, // a percent-encoded character
		{cc, 0, basicHeader("%zz", fx.clientSecret)},                                                 // a malformed escape
		{cc, 0, basicHeader(fx.clientID, fx.clientSecret+"%")},                                       // a truncated escape
		{cc, 0, basicHeader(fx.clientID, "+"+fx.clientSecret)},                                       // + is a space
		{cc, 0, "basic " + basic[len("Basic "):]},                                                    // the scheme is case-insensitive
		{cc, 0, "Basic"},
		{cc, 0, "Basic "},
		{cc, 0, "Basic " + base64.StdEncoding.EncodeToString([]byte(":"))},
		{cc, 0, "Bearer " + fx.token},
		{cc, 0, basic + "==="},
		{cc, 0, basic + ", " + basic},
		{inBody(fx.clientID, fx.clientSecret), 0, basic}, // two methods
		{cc + "&client_id=" + fx.postID, 0, basic},       // client_id does not match
		{cc + "&client_id=" + fx.clientID, 0, basic},     // client_id matches
		{"", 0, basic},                                        // no grant_type
		{"grant_type=password", 0, basic},                     // unsupported grant
		{"grant_type=authorization_code", 0, basic},           // not served
		{"grant_type=refresh_token", 0, basic},                // not served
		{cc + "&scope=admin", 0, basic},                       // invalid_scope
		{cc + "&scope=leads%3Aread+leads%3Awrite+", 0, basic}, // allowed, with a trailing space
		{cc + "&resource=https%3A%2F%2Fevil.test", 0, basic},  // invalid_target
		{cc + "&" + cc, 0, basic},                             // a repeated parameter
		{cc + "&scope=a&scope=b", 0, basic},                   // a repeated parameter
		{`{"grant_type":"client_credentials"}`, 3, basic},     // JSON
		{cc, 2, basic}, // no Content-Type
		{"--fuzz\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--fuzz--\r\n", 4, basic},
		{cc, 5, basic},
		{cc, 6, basic},
		{cc, 7, basic},
		{cc, 8, basic},
		{"grant_type=%zz", 0, basic},
		{cc + ";scope=leads%3Aread", 0, basic},
		{cc + "&" + strings.Repeat("x", fuzzMaxBody), 0, basic}, // over the size limit
		{"", 0, ""},
	}
	for _, s := range seeds {
		f.Add(s.body, s.ct, s.auth)
	}

	allowedSecrets := map[[2]string]bool{ // {id, secret} of each client that may get a token
		{fx.clientID, fx.clientSecret}:   true,
		{fx.postID, fx.postSecret}:       true,
		{fx.otherNSID, fx.otherNSSecret}: true,
	}
	f.Fuzz(func(t *testing.T, body string, ct uint8, authorization string) {
		req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(body))
		if contentType := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]; contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		resp := checkOAuthResponse(t, rec, http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusServiceUnavailable)
		if rec.Code != http.StatusOK {
			return
		}

		// Who did the caller claim to be? Decoded here with the standard library alone.
		id, secret, basic := req.BasicAuth()
		if basic {
			id, _ = url.QueryUnescape(id)
			secret, _ = url.QueryUnescape(secret)
		} else {
			form, _ := url.ParseQuery(body)
			id, secret = form.Get("client_id"), form.Get("client_secret")
		}
		if !allowedSecrets[[2]string{id, secret}] || (basic && id == fx.postID) {
			t.Fatalf("a token for a caller that presented client_id %q, secret %q, basic=%v", id, secret, basic)
		}
		token, _ := resp["access_token"].(string)
		if resp["token_type"] != "Bearer" || token == "" {
			t.Fatalf("200 without a Bearer token: %s", rec.Body)
		}
		if exp, _ := resp["expires_in"].(float64); exp <= 0 {
			t.Fatalf("200 with expires_in %v", resp["expires_in"])
		}
		parts := segments(token)
		var claims struct {
			ClientID string `json:"client_id"`
			Subject  string `json:"sub"`
		}
		if parts == nil || !spelledCanonically(token) || json.Unmarshal(parts[1], &claims) != nil {
			t.Fatalf("the access token is not a compact JWS: %q", token)
		}
		if claims.ClientID != id || claims.Subject != id {
			t.Fatalf("a token for client %q (sub %q) issued to %q", claims.ClientID, claims.Subject, id)
		}
	})
}

var jtiPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// FuzzIntrospect posts a token (and, when the token is empty, an arbitrary body, or
// else extra raw parameters after it) to introspection as an authenticated resource
// server. Nothing comes back active but the one API key and the tokens meant for it,
// spelled exactly as issued: not the other indexed keys and tokens (other namespaces,
// scopes, audiences), not a crafted token, not another spelling of a real one.
func FuzzIntrospect(f *testing.F) {
	fx := newFuzzFixture(f)
	parts := strings.Split(fx.token, ".")
	header, payload, signature := parts[0], parts[1], parts[2]
	mutate := func(s string, i int) string { // replace the i-th character (from the end when negative)
		if i < 0 {
			i += len(s)
		}
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	hdr := func(fields string) string { return b64url([]byte("{" + fields + "}")) }
	kid := `"kid":"` + fx.kid + `"`
	realPayload := segments(fx.token)[1]
	hmacSig := func(input string) string {
		m := hmac.New(sha256.New, fx.private.Public().(ed25519.PublicKey))
		m.Write([]byte(input))
		return b64url(m.Sum(nil))
	}
	hsInput := hdr(`"alg":"HS256","typ":"at+jwt",`+kid) + "." + payload
	seeds := []struct{ token, extra string }{
		{fx.apiKey, ""},
		{fx.expiredAPIKey, ""},
		{fx.revokedAPIKey, ""},
		{fx.unknownAPIKey, ""},
		{fx.otherNSAPIKey, ""}, // not for this resource server
		{fx.otherScopeKey, ""}, // not for this resource server
		{mutate(fx.apiKey, 10), ""},
		{fx.apiKey + " ", ""},
		{strings.ToUpper(fx.apiKey), ""},
		{"", "token=" + fx.apiKey},
		{"", "token=" + url.QueryEscape(fx.token)},
		{fx.token, ""},
		{fx.billingToken, ""},                              // not for this resource server
		{fx.otherNSToken, ""},                              // not for this resource server
		{mutate(fx.token, len(header)+len(payload)/2), ""}, // payload mutated
		{mutate(fx.token, -len(signature)/2), ""},          // signature mutated
		{mutate(fx.token, 5), ""},                          // header mutated
		{fx.token[:len(fx.token)-1], ""},
		{fx.token + ".", ""},
		{header + "." + payload, ""},
		{header + "." + payload + ".", ""},
		{header + ".." + signature, ""},
		{"." + payload + "." + signature, ""},
		{"a.b.c", ""}, {"..", ""}, {".", ""}, {"a.b", ""}, {"a.b.c.d", ""},
		{strings.Repeat("A", 3000), ""},
		{strings.Repeat("A", 1000) + "." + strings.Repeat("B", 1000) + "." + strings.Repeat("C", 1000), ""},
		{strings.Repeat("a.", 500), ""},
		{strings.Repeat("lk_live_", 100), ""},
		// alg none, with and without the signature
		{hdr(`"alg":"none","typ":"at+jwt",`+kid) + "." + payload + ".", ""},
		{hdr(`"alg":"none","typ":"at+jwt",`+kid) + "." + payload + "." + signature, ""},
		{hdr(`"alg":"none","typ":"at+jwt"`) + "." + payload + ".", ""},
		// HS256 keyed with the public key (algorithm confusion)
		{hsInput + "." + hmacSig(hsInput), ""},
		// another algorithm's header over the real signature, and the verify-only ES256 key's kid
		{hdr(`"alg":"ES256","typ":"at+jwt",`+kid) + "." + payload + "." + signature, ""},
		{hdr(`"alg":"EdDSA","typ":"at+jwt","kid":"`+fx.esKID+`"`) + "." + payload + "." + signature, ""},
		{hdr(`"alg":"EdDSA","typ":"at+jwt","kid":"unknown"`) + "." + payload + "." + signature, ""},
		// validly signed, with typ variations: only at+jwt is an access token
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, realPayload), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"JWT"}`, realPayload), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"AT+JWT"}`, realPayload), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"application/at+jwt"}`, realPayload), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`}`, realPayload), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":["at+jwt"]}`, realPayload), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt","crit":["exp"]}`, realPayload), ""},
		// validly signed, with claims the server would not have issued
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, fx.withClaims(f, map[string]any{"exp": fuzzNow.Add(-time.Minute).Unix()})), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, fx.withClaims(f, map[string]any{"exp": nil})), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, fx.withClaims(f, map[string]any{"nbf": fuzzNow.Add(time.Hour).Unix()})), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, fx.withClaims(f, map[string]any{"iss": "https://evil.test"})), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, fx.withClaims(f, map[string]any{"latchkey.dev/client_uid": "other"})), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, fx.withClaims(f, map[string]any{"client_id": fx.postID})), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, fx.withClaims(f, map[string]any{"latchkey.dev/namespace": "other"})), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, fx.withClaims(f, map[string]any{"latchkey.dev/client_uid": "revoked"})), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, []byte("null")), ""},
		{signEdDSA(fx.private, `{"alg":"EdDSA",`+kid+`,"typ":"at+jwt"}`, []byte("[]")), ""},
		// extra parameters and raw bodies
		{fx.apiKey, "token=" + fx.apiKey},               // repeated
		{fx.apiKey, "client_secret=" + fx.clientSecret}, // two authentication methods
		{fx.apiKey, "client_id=" + fx.postID},           // client_id does not match
		{fx.apiKey, "client_id=" + fx.clientID},
		{fx.apiKey, "token_type_hint=access_token"},
		{"", ""},
		{"", "token="},
		{"", "token=a;b"},
		{"", "token=%zz"},
		{"", "token=" + strings.Repeat("a", fuzzMaxBody)},
	}
	for _, s := range seeds {
		f.Add(s.token, s.extra)
	}

	f.Fuzz(func(t *testing.T, token, extra string) {
		body := extra
		if token != "" {
			body = url.Values{"token": {token}}.Encode()
			if extra != "" {
				body += "&" + extra
			}
		}
		rec := post(fx.h, "/oauth2/introspect", body, fx.clientID, fx.clientSecret)
		resp := checkOAuthResponse(t, rec, http.StatusOK, http.StatusBadRequest)
		if rec.Code != http.StatusOK {
			return
		}
		active, isBool := resp["active"].(bool)
		if !isBool {
			t.Fatalf("no boolean active: %s", rec.Body)
		}
		form, err := url.ParseQuery(body)
		if err != nil {
			t.Fatalf("200 for a body that is not a form (%v): %q", err, body)
		}
		presented := form.Get("token")
		if (presented == fx.apiKey || presented == fx.token) && !active {
			t.Fatalf("the real credential %q is not active: %s", presented, rec.Body)
		}
		if !active {
			if len(resp) != 1 {
				t.Fatalf("an inactive token with more than active=false: %s", rec.Body)
			}
			return
		}
		if resp["token_type"] == "api_key" {
			if presented != fx.apiKey || resp["name"] != "key" {
				t.Fatalf("%q introspected as an active API key: %s", presented, rec.Body)
			}
			return
		}
		// An active JWT: in this process that is the token issued above; in another
		// process of the same fuzz run, the same claims with another jti.
		if !spelledCanonically(presented) {
			t.Fatalf("a token that is not spelled as issued is active: %q (the issued token is %q): %s", presented, fx.token, rec.Body)
		}
		claims := maps.Clone(resp)
		jti, _ := claims["jti"].(string)
		delete(claims, "jti")
		if !jtiPattern.MatchString(jti) || !reflect.DeepEqual(claims, fx.tokenClaims) {
			t.Fatalf("%q is active with claims the server did not issue: %s (issued: %v)", presented, rec.Body, fx.tokenClaims)
		}
	})
}

// FuzzReadForm posts arbitrary form bodies to the token and introspection endpoints
// as an authenticated client. A body that is not a form, is too large or repeats a
// parameter the endpoint does not allow to repeat is invalid_request; any other
// body gets past the form reader.
func FuzzReadForm(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, s := range []struct {
		body       string
		introspect bool
	}{
		{"grant_type=client_credentials", false},
		{"grant_type=client_credentials&grant_type=client_credentials", false},
		{"grant_type=client_credentials&scope=leads%3Aread&scope=leads%3Aread", false},
		{"grant_type=client_credentials&resource=https%3A%2F%2Fapi.fuzz.test&resource=https%3A%2F%2Fbilling.fuzz.test", false},
		{"grant_type=client_credentials&audience=https%3A%2F%2Fapi.fuzz.test&audience=https%3A%2F%2Fapi.fuzz.test", false},
		{"grant_type=client_credentials&client_id=" + fx.clientID + "&client_id=" + fx.clientID, false},
		{"grant_type=client_credentials&grant_type=", false},
		{"grant_type=client_credentials&&&", false},
		{"grant_type&grant_type", false},
		{"token=" + fx.apiKey, true},
		{"token=" + fx.apiKey + "&token=" + fx.apiKey, true},
		{"token=x&audience=a&audience=b", true},
		{"token=x&resource=a&resource=b", true},
		{"token=x&Token=y", true},
		{"token=x&token%3D=y", true},
		{"token=x&tok%65n=y", true},
		{"token=x&client_secret=", true},
		{"%zz=1", true},
		{"token=%zz", true},
		{"token=x;y", true},
		{"token=x&a=1;b=2", false},
		{"=", true},
		{"&", true},
		{"", true},
		{"", false},
		{"token=" + strings.Repeat("x", fuzzMaxBody-len("token=")), true},   // exactly the limit
		{"token=" + strings.Repeat("x", fuzzMaxBody-len("token=")+1), true}, // one byte over
		{"token=\x00\xff", true},
	} {
		f.Add(s.body, s.introspect)
	}

	f.Fuzz(func(t *testing.T, body string, introspect bool) {
		path, repeatable := "/oauth2/token", []string{"resource", "audience"}
		if introspect {
			path, repeatable = "/oauth2/introspect", nil
		}
		rec := post(fx.h, path, body, fx.clientID, fx.clientSecret)
		resp := checkOAuthResponse(t, rec, http.StatusOK, http.StatusBadRequest)
		code, _ := resp["error"].(string)

		form, err := url.ParseQuery(body)
		var repeated []string
		for name, values := range form {
			if len(values) > 1 && !slices.Contains(repeatable, name) {
				repeated = append(repeated, name)
			}
		}
		if len(body) > fuzzMaxBody || err != nil || len(repeated) > 0 {
			if code != "invalid_request" {
				t.Fatalf("%s: a body that is too large (%d bytes), not a form (%v) or repeats %q got %d %s",
					path, len(body), err, repeated, rec.Code, rec.Body)
			}
			return
		}

		// A valid form: what follows is the endpoint's, not the form reader's.
		otherID := form.Get("client_id") != "" && form.Get("client_id") != fx.clientID
		if introspect {
			wantOK := form.Get("token") != "" && !form.Has("client_secret") && !otherID
			if wantOK != (rec.Code == http.StatusOK) {
				t.Fatalf("%s: %d %s for a valid form %q", path, rec.Code, rec.Body, body)
			}
			return
		}
		formError := form.Get("grant_type") == "" || form.Has("client_secret") || otherID
		if formError != (code == "invalid_request") {
			t.Fatalf("%s: %d %s for the form %q", path, rec.Code, rec.Body, body)
		}
		plain := !form.Has("scope") && !form.Has("resource") && !form.Has("audience")
		if form.Get("grant_type") == "client_credentials" && !formError && plain && rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s for the form %q", path, rec.Code, rec.Body, body)
		}
	})
}

// oauthClientWithID is an OAuthClient as the manager leaves it: a client_id and one accepted secret hash.
func oauthClientWithID(uid, clientID, secretHash string) *latchkeyv1.OAuthClient {
	return &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: uid, UID: types.UID(uid)},
		Status: latchkeyv1.OAuthClientStatus{
			ClientID:         clientID,
			CredentialStatus: latchkeyv1.CredentialStatus{Credentials: []latchkeyv1.CredentialHash{{Hash: secretHash}}},
		},
	}
}
