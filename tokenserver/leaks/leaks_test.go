package leaks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
)

func keyList(t *testing.T, id string, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	list, err := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": id, "is_current": true, "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func host() Host {
	return Host{Index: index.NewIndex(logr.Discard()), Clock: clock.RealClock{}, Log: logr.Discard(),
		WithIO: func(r *http.Request, fn func(context.Context) error) error { return fn(r.Context()) }}
}

// TestNewRefusesMisconfiguration: a configuration the server cannot use is an
// error at start, never a reporter that silently accepts nothing (or anything).
func TestNewRefusesMisconfiguration(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	dir := t.TempDir()
	good, rsaFile, empty := filepath.Join(dir, "good.json"), filepath.Join(dir, "rsa.json"), filepath.Join(dir, "empty.json")
	for path, data := range map[string][]byte{good: keyList(t, "k1", &ec.PublicKey), rsaFile: keyList(t, "k1", &rsaKey.PublicKey),
		empty: []byte(`{"public_keys": []}`)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		reporters []Reporter
		want      string // "" for success
	}{
		{"GitHub's defaults", []Reporter{GitHub}, ""},
		{"a key file", []Reporter{{Name: "inhouse", KeysFile: good}}, ""},
		{"self is the self-revocation's", []Reporter{{Name: latchkeyv1.ReporterSelf, KeysFile: good}}, "not \"self\""},
		{"a name that is no DNS label", []Reporter{{Name: "Git/Hub", KeysFile: good}}, "DNS label"},
		{"twice", []Reporter{GitHub, GitHub}, "configured twice"},
		{"neither keys URL nor file", []Reporter{{Name: "x"}}, "set one of"},
		{"both", []Reporter{{Name: "x", KeysURL: "https://x.test", KeysFile: good}}, "set one of"},
		{"an RSA key", []Reporter{{Name: "x", KeysFile: rsaFile}}, "not an ECDSA P-256 key"},
		{"no keys", []Reporter{{Name: "x", KeysFile: empty}}, "no public_keys"},
		{"a header prefix that names no header", []Reporter{{Name: "x", KeysFile: good, HeaderPrefix: "Key Id"}}, "does not begin an HTTP header name"},
		{"a header prefix of its own", []Reporter{{Name: "x", KeysFile: good, HeaderPrefix: "X-Scanner-Key"}}, ""},
		{"a missing file", []Reporter{{Name: "x", KeysFile: filepath.Join(dir, "missing.json")}}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(host(), Options{Reporters: tc.reporters})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestVerifyWithKeyFile: the signature covers the raw body, under the configured
// header prefix, with a key read from the file.
func TestVerifyWithKeyFile(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	file := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(file, keyList(t, "k1", &ec.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(host(), Options{Reporters: []Reporter{{Name: "depsdev", KeysFile: file, HeaderPrefix: "GOSST-PUBLIC-KEY"}}})
	if err != nil {
		t.Fatal(err)
	}
	rep := s.reporters["depsdev"]
	body := []byte(`[{"token":"x","type":"t","url":"","source":"content"}]`)
	digest := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, ec, digest[:])
	request := func(id, signature string) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "/secret-scanning/depsdev", nil)
		r.Header.Set("GOSST-PUBLIC-KEY-Identifier", id)
		r.Header.Set("GOSST-PUBLIC-KEY-Signature", signature)
		return r
	}
	withIO := host().WithIO
	if err := rep.verify(request("k1", base64.StdEncoding.EncodeToString(sig)), body, withIO); err != nil {
		t.Errorf("a good signature: %v", err)
	}
	if err := rep.verify(request("k1", base64.StdEncoding.EncodeToString(sig)), append(body, ' '), withIO); err == nil {
		t.Error("a signature over other bytes (a trailing space) verified")
	}
	if err := rep.verify(request("k2", base64.StdEncoding.EncodeToString(sig)), body, withIO); err == nil {
		t.Error("an unknown key identifier verified (a key file is never refetched)")
	}
	if err := rep.verify(request("k1", strings.Repeat("A", 600)), body, withIO); err == nil {
		t.Error("an oversized signature header verified")
	}
}

// TestBoundedFields: what a report may put in status is what the CRD accepts.
func TestBoundedFields(t *testing.T) {
	if got := bounded("https://github.com/a/b/blob/main/.env", maxURLLength); got != "https://github.com/a/b/blob/main/.env" {
		t.Errorf("a URL was dropped: %q", got)
	}
	for _, u := range []string{strings.Repeat("a", maxURLLength+1), "https://x.test/\n", "https://x.test/é"} {
		if got := bounded(u, maxURLLength); got != "" {
			t.Errorf("bounded(%q) = %q, want it dropped", u, got)
		}
	}
	if got := bounded(strings.Repeat("s", maxSourceLength+1), maxSourceLength); got != "" {
		t.Errorf("an oversized source was kept")
	}
}

// TestRecorderTakesNamespacesInTurn: one tenant's flood of its own live keys
// fills its own namespace's queue, and waits behind every other namespace's
// record, one for one.
func TestRecorderTakesNamespacesInTurn(t *testing.T) {
	r := newRecorder(host(), newMetrics(nil))
	target := func(ns string, i int) target {
		return target{kind: index.KindAPIKey, ref: index.Ref{Namespace: ns, Name: "k"}, hash: ns + "/" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)}
	}
	for i := range namespaceQueue {
		if got := r.add(target("mallory", i), latchkeyv1.LeakRecord{}); got != queued {
			t.Fatalf("mallory's record %d: %v", i, got)
		}
	}
	if got := r.add(target("mallory", namespaceQueue), latchkeyv1.LeakRecord{}); got != queueFull {
		t.Fatalf("mallory's record beyond its namespace's queue: %v, want queueFull", got)
	}
	if got := r.add(target("mallory", 0), latchkeyv1.LeakRecord{}); got != alreadyQueued {
		t.Fatalf("a record queued again: %v, want alreadyQueued", got)
	}
	for _, ns := range []string{"alice", "bob"} {
		if got := r.add(target(ns, 0), latchkeyv1.LeakRecord{}); got != queued {
			t.Fatalf("%s's record behind mallory's flood: %v", ns, got)
		}
	}
	var order []string
	for range 5 {
		j, ok := r.next()
		if !ok {
			t.Fatal("nothing queued")
		}
		order = append(order, j.target.ref.Namespace)
	}
	if got := strings.Join(order, " "); got != "mallory alice bob mallory mallory" {
		t.Fatalf("written in the order %q", got)
	}
}

// TestKeyFetchOutlivesItsCaller: a caller that gives up (or hangs up) does not
// cancel the fetch of the key list, and the keys it brings serve the next report.
func TestKeyFetchOutlivesItsCaller(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	list := keyList(t, "k1", &ec.PublicKey)
	release := make(chan struct{})
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		<-release
		_, _ = w.Write(list)
	}))
	defer srv.Close()
	s, err := New(host(), Options{Reporters: []Reporter{{Name: "github", KeysURL: srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	rep := s.reporters["github"]
	gaveUp := func(r *http.Request, fn func(context.Context) error) error {
		ctx, cancel := context.WithCancel(r.Context())
		cancel()
		return fn(ctx)
	}
	req, _ := http.NewRequest(http.MethodPost, "/", nil)
	if _, err := rep.key(req, "k1", gaveUp); err != errKeysUnavailable {
		t.Fatalf("a caller that gave up: %v, want errKeysUnavailable (503: send it again)", err)
	}
	if _, err := rep.key(req, "k2", gaveUp); err != errKeysUnavailable {
		t.Fatalf("a second caller while the fetch runs: %v", err)
	}
	close(release)
	k, err := rep.key(req, "k1", host().WithIO)
	if err != nil || k == nil {
		t.Fatalf("after the fetch: %v, %v", k, err)
	}
	if k, err := rep.key(req, "k9", host().WithIO); k != nil || err != nil {
		t.Fatalf("an identifier missing from a fresh list: %v, %v; want no key (400)", k, err)
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}
