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
	"os"
	"path/filepath"
	"strings"
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
	if got := boundedURL("https://github.com/a/b/blob/main/.env"); got != "https://github.com/a/b/blob/main/.env" {
		t.Errorf("a URL was dropped: %q", got)
	}
	for _, u := range []string{strings.Repeat("a", maxURLLength+1), "https://x.test/\n", "https://x.test/é"} {
		if got := boundedURL(u); got != "" {
			t.Errorf("boundedURL(%q) = %q, want it dropped", u, got)
		}
	}
	if got := bounded(strings.Repeat("s", maxSourceLength+1), maxSourceLength); got != "" {
		t.Errorf("an oversized source was kept")
	}
}
