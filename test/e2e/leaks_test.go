//go:build e2e

package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"

	. "github.com/onsi/gomega"
)

// secretScanner plays GitHub's secret scanning: a key pair of its own, whose
// public key the token server reads from a key-list file in GitHub's format
// (--secret-scanning-config), and reports signed as GitHub signs them.
type secretScanner struct {
	keyID string
	key   *ecdsa.PrivateKey
}

// newSecretScanner writes the scanner's key list and the token server's
// --secret-scanning-config into dir, and returns the config's path.
func newSecretScanner(dir string) (*secretScanner, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	Expect(err).NotTo(HaveOccurred())
	sc := &secretScanner{keyID: "e2e-scanner-key", key: key}
	list, err := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": sc.keyID, "is_current": true,
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}}})
	Expect(err).NotTo(HaveOccurred())
	keysFile, config := filepath.Join(dir, "scanner-keys.json"), filepath.Join(dir, "secret-scanning.yaml")
	Expect(os.WriteFile(keysFile, list, 0o600)).To(Succeed())
	Expect(os.WriteFile(config, []byte("reporters:\n- name: github\n  keysFile: "+keysFile+"\n  headerPrefix: Github-Public-Key\n"), 0o600)).To(Succeed())
	return sc, config
}

// report posts a signed report of token, found at url, to the token server.
func (sc *secretScanner) report(token, url string) int {
	body, err := json.Marshal([]map[string]string{{"token": token, "type": "latchkey_api_key", "url": url, "source": "content"}})
	Expect(err).NotTo(HaveOccurred())
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, sc.key, digest[:])
	Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequest(http.MethodPost, issuer+"/secret-scanning/github", bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Github-Public-Key-Identifier", sc.keyID)
	req.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	return resp.StatusCode
}
