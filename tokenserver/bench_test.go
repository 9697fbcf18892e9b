package tokenserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
)

// Microbenchmarks of the hot paths, in process and without the network: what one
// request costs the server. `make bench` measures the whole system.

type discardUsage struct{}

func (discardUsage) Used(string, index.Ref, *atomic.Uint64, time.Time) {}

// benchServer is a server over an index of n API keys and one client, signing with alg.
func benchServer(b testing.TB, alg string, n int) (*Server, []string, string, string) {
	b.Helper()
	return benchServerWith(b, alg, n, Config{}, clock.RealClock{})
}

// benchServerWith is benchServer with cfg's admission settings and clk.
func benchServerWith(b testing.TB, alg string, n int, cfg Config, clk clock.PassiveClock) (*Server, []string, string, string) {
	b.Helper()
	set, _, err := signingkeys.Reconcile(signingkeys.Set{}, signingkeys.Policy{
		Algorithms: []string{alg}, RotationInterval: 24 * time.Hour, MaxTokenLifetime: time.Hour,
	}, time.Now(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	data, err := set.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	keys := &Keys{alg: alg}
	if err := keys.load(&corev1.Secret{Data: map[string][]byte{signingkeys.SecretDataKey: data}}); err != nil {
		b.Fatal(err)
	}
	idx := index.NewIndex(logr.Discard())
	plaintexts := make([]string, n)
	for i := range n {
		key, err := credential.NewAPIKey(rand.Reader, "lk", "live")
		if err != nil {
			b.Fatal(err)
		}
		plaintexts[i] = key
		idx.UpsertAPIKey(&latchkeyv1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprint("key-", i), UID: types.UID(fmt.Sprint("uid-", i))},
			Spec:       latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}},
			Status: latchkeyv1.APIKeyStatus{CredentialStatus: latchkeyv1.CredentialStatus{
				Credentials: []latchkeyv1.CredentialHash{{Hash: credential.Hash(key)}},
			}},
		})
	}
	secret, _ := credential.NewClientSecret(rand.Reader)
	idx.UpsertClient(benchClient(secret))
	cfg.IssuerURL, cfg.SigningAlgorithm = "https://auth.bench", alg
	s, err := NewServer(cfg, idx, keys, clk, logr.Discard(), prometheus.NewRegistry(), discardUsage{})
	if err != nil {
		b.Fatal(err)
	}
	s.SetSynced()
	return s, plaintexts, benchClientID, secret
}

const benchClientID = "0123456789abcdef01234567"

// benchClient is benchServer's OAuthClient, whose secret is secret.
func benchClient(secret string) *latchkeyv1.OAuthClient {
	return &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "client", UID: "client-uid"},
		Spec: latchkeyv1.OAuthClientSpec{
			Scopes: []string{"leads:read"}, Audiences: []string{"https://api.bench"},
			Introspection: &latchkeyv1.IntrospectionPolicy{Audiences: []string{"https://api.bench"}, Scopes: []string{"leads:*"}},
		},
		Status: latchkeyv1.OAuthClientStatus{ClientID: benchClientID, CredentialStatus: latchkeyv1.CredentialStatus{
			Credentials: []latchkeyv1.CredentialHash{{Hash: credential.Hash(secret)}},
		}},
	}
}

func post(h http.Handler, path, body, id, secret string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// BenchmarkTokenEndpoint is one client_credentials request: parse, authenticate
// (one SHA-256 and one map lookup), sign.
func BenchmarkTokenEndpoint(b *testing.B) {
	for _, alg := range signingkeys.SupportedAlgorithms {
		b.Run(alg, func(b *testing.B) {
			s, _, id, secret := benchServer(b, alg, 1)
			h := s.Handler()
			b.ReportAllocs()
			for b.Loop() {
				if rec := post(h, "/oauth2/token", "grant_type=client_credentials", id, secret); rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkSign is the signature alone, the floor under the token endpoint.
func BenchmarkSign(b *testing.B) {
	for _, alg := range signingkeys.SupportedAlgorithms {
		b.Run(alg, func(b *testing.B) {
			s, _, id, _ := benchServer(b, alg, 1)
			client, _ := s.index.LookupClient(id)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.sign(client, "leads:read", []string{"https://api.bench"}, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIntrospectAPIKey is one introspection of an API key among 100,000.
func BenchmarkIntrospectAPIKey(b *testing.B) {
	s, keys, id, secret := benchServer(b, signingkeys.EdDSA, 100_000)
	h := s.Handler()
	bodies := make([]string, len(keys))
	for i, k := range keys {
		bodies[i] = url.Values{"token": {k}}.Encode()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if rec := post(h, "/oauth2/introspect", bodies[i%len(bodies)], id, secret); rec.Code != http.StatusOK ||
			!strings.Contains(rec.Body.String(), `"active":true`) {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		i++
	}
}

// BenchmarkAPIKeyLookup is the core of an API key check: checksum, SHA-256, map lookup.
func BenchmarkAPIKeyLookup(b *testing.B) {
	s, keys, _, _ := benchServer(b, signingkeys.EdDSA, 100_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := keys[i%len(keys)]
		if !credential.LooksLikeAPIKey(key) {
			b.Fatal("rejected a good key")
		}
		if _, ok := s.index.LookupAPIKey(index.Digest(sha256.Sum256([]byte(key)))); !ok {
			b.Fatal("key not found")
		}
		i++
	}
}

// BenchmarkRawSignature is the bare signature of a token-sized message with the
// standard library: the reference the token endpoint is compared with.
func BenchmarkRawSignature(b *testing.B) {
	message := []byte(strings.Repeat("x", 400))
	b.Run(signingkeys.RS256, func(b *testing.B) {
		key, _ := rsa.GenerateKey(rand.Reader, 2048)
		for b.Loop() {
			if _, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sha256Of(message)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(signingkeys.ES256, func(b *testing.B) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, key, sha256Of(message)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(signingkeys.EdDSA, func(b *testing.B) {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		for b.Loop() {
			_ = ed25519.Sign(key, message)
		}
	})
}

func sha256Of(m []byte) []byte {
	d := sha256.Sum256(m)
	return d[:]
}
