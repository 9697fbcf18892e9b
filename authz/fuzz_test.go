package authz

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/index"
)

type discardUsage struct{}

func (discardUsage) Used(string, index.Ref, *atomic.Uint64, time.Time) {}

// fuzzAuthorizer decides against one API (GET /v1/leads needs leads:read) and one
// live key with leads:read.
func fuzzAuthorizer(t testing.TB) (*Authorizer, string) {
	key, err := credential.NewAPIKey(bytes.NewReader(bytes.Repeat([]byte{7}, 32)), "lk", "live")
	if err != nil {
		t.Fatal(err)
	}
	idx := index.NewIndex(logr.Discard())
	idx.UpsertAPI(fuzzAPI())
	idx.UpsertAPIKey(&latchkeyv1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "k", UID: "k"},
		Spec:       latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}},
		Status: latchkeyv1.APIKeyStatus{CredentialStatus: latchkeyv1.CredentialStatus{
			Credentials: []latchkeyv1.CredentialHash{{Hash: credential.Hash(key)}}}},
	})
	return &Authorizer{Index: idx, Keys: &JWKS{}, Issuer: "https://issuer", APIKeyHeader: "x-api-key",
		Usage: discardUsage{}, Clock: clocktesting.NewFakePassiveClock(time.Unix(1000, 0))}, key
}

// fuzzAPI is fuzzAuthorizer's API: GET /v1/leads at leads.test requires leads:read.
func fuzzAPI() *latchkeyv1.API {
	return &latchkeyv1.API{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "leads", UID: "api", CreationTimestamp: metav1.Unix(1, 0)},
		Spec: latchkeyv1.APISpec{Identifier: "https://leads", Hosts: []string{"leads.test"},
			Scopes: []latchkeyv1.APIScope{{Name: "leads:read"}},
			Rules:  []latchkeyv1.APIRule{{Methods: []string{"GET"}, PathPrefix: "/v1/leads", Scopes: []string{"leads:read"}}}},
	}
}

// FuzzDecide drives credential extraction and request parsing with arbitrary
// input: every answer is 200, 401 or 403, never a panic, and 200 only for the
// real key, on a clean path under the rule, with GET.
func FuzzDecide(f *testing.F) {
	a, key := fuzzAuthorizer(f)
	f.Add("GET", "/v1/leads", "leads.test", "Bearer "+key, "")
	f.Add("GET", "/v1/leads/42?x=1", "LEADS.test:8443", "", key)
	f.Add("POST", "/v1/leads", "leads.test", "Bearer "+key, "")
	f.Add("GET", "/v1/leads/..%2f", "leads.test", "bearer "+key, key)
	f.Add("GET", "/v1/%6ceads", "leads.test", "Bearer "+key+"=", "")
	f.Add("GET", "/v1/leads", "", "Bearer a.b.c", "")
	f.Add("GET", "/v1/leads\x00", "leads.test", "Bearer "+key[:len(key)-1]+"A", "x")
	f.Fuzz(func(t *testing.T, method, path, host, authorization, apiKey string) {
		headers := map[string]string{"authorization": authorization, "x-api-key": apiKey}
		d := a.Decide(Request{Method: method, Path: path, Host: host, Header: func(n string) string { return headers[n] }})
		switch d.Status {
		case 200:
			clean, ok := cleanPath(path)
			if d.Identity == nil || method != "GET" || !ok || !strings.HasPrefix(clean, "/v1/leads") {
				t.Fatalf("allowed %s %q (host %q)", method, path, host)
			}
			if _, got, _ := strings.Cut(authorization, " "); got != key && apiKey != key {
				t.Fatalf("allowed a request without the key")
			}
		case 401, 403:
			if d.Error != "" && strings.ContainsAny(d.Description, "\"\\") {
				t.Fatalf("an error description must be a quoted-string without escapes: %q", d.Description)
			}
		default:
			t.Fatalf("status %d", d.Status)
		}
		if strings.Contains(d.body(), key) || strings.Contains(d.challenge("r"), key) {
			t.Fatalf("a refusal repeats the key")
		}
	})
}

// cleanPath never lets a dot segment or an encoded separator through.
func FuzzCleanPath(f *testing.F) {
	for _, seed := range []string{"/", "/a/b", "/a/../b", "/a/%2e%2e/b", "/a//b", "/a;b", "/%41", "/a/./b", "/a%2Fb"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, target string) {
		clean, ok := cleanPath(target)
		if !ok {
			return
		}
		if !strings.HasPrefix(clean, "/") || strings.Contains(clean, "//") || strings.Contains(clean, "/../") ||
			strings.Contains(clean, "/./") || strings.HasSuffix(clean, "/..") || strings.HasSuffix(clean, "/.") ||
			strings.ContainsAny(clean, "\\;\x00") {
			t.Fatalf("cleanPath(%q) = %q", target, clean)
		}
	})
}
