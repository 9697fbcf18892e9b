//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"

	"github.com/latchkey-dev/latchkey/internal/testenv"
	. "github.com/onsi/gomega"
)

// secretScanner signs reports as GitHub's secret scanning does (testenv's).
type secretScanner struct{ *testenv.SecretScanner }

// newSecretScanner writes the scanner's key list and the token server's
// --secret-scanning-config into dir, and returns the config's path.
func newSecretScanner(dir string) (*secretScanner, string) {
	s, err := testenv.NewSecretScanner()
	Expect(err).NotTo(HaveOccurred())
	keysFile, config := filepath.Join(dir, "scanner-keys.json"), filepath.Join(dir, "secret-scanning.yaml")
	Expect(os.WriteFile(keysFile, s.KeyList, 0o600)).To(Succeed())
	Expect(os.WriteFile(config, []byte("reporters:\n- name: github\n  keysFile: "+keysFile+"\n  headerPrefix: Github-Public-Key\n"), 0o600)).To(Succeed())
	return &secretScanner{s}, config
}

// report posts a signed report of token, found at url, to the token server.
func (sc *secretScanner) report(token, url string) int {
	body, err := json.Marshal([]map[string]string{{"token": token, "type": "latchkey_api_key", "url": url, "source": "content"}})
	Expect(err).NotTo(HaveOccurred())
	sig, err := sc.Sign(body)
	Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequest(http.MethodPost, issuer+"/secret-scanning/github", bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Github-Public-Key-Identifier", sc.KeyID)
	req.Header.Set("Github-Public-Key-Signature", sig)
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	return resp.StatusCode
}
