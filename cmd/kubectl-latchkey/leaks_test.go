package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/leakscan"
	"github.com/latchkey-dev/latchkey/tokenserver"
	"github.com/latchkey-dev/latchkey/tokenserver/leaks"
)

// runPlugin runs the plugin as the binary would: args, standard input, and the
// exit status main would return.
// runPlugin runs the plugin and returns what it printed, once it has checked that
// this holds none of the credentials the tests made: a test prints stdout and
// stderr when it fails, and a credential must not be printed with them.
func runPlugin(t *testing.T, stdin string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand(context.Background(), &out)
	root.SetIn(strings.NewReader(stdin))
	root.SetErr(&errOut)
	root.SetArgs(args)
	status = exitStatus(root.Execute(), &errOut)
	noSecrets(t, "the plugin's output", out.String()+errOut.String(), credentialsMade.all()...)
	return out.String(), errOut.String(), status
}

// credentialsMade are the credentials the tests made (newKey, clientPair, typo).
var credentialsMade madeSet

type madeSet struct {
	mu   sync.Mutex
	list []string
}

func (m *madeSet) add(s ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list = append(m.list, s...)
}

func (m *madeSet) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.list)
}

func newKey(t *testing.T, prefix, env string) string {
	t.Helper()
	k, err := credential.NewAPIKey(rand.Reader, prefix, env)
	if err != nil {
		t.Fatal(err)
	}
	credentialsMade.add(k)
	return k
}

func keyID(s string) string { return credential.KeyID(credential.Hash(s)) }

func typo(key string) string {
	c := "A"
	if strings.HasSuffix(key, "A") {
		c = "B"
	}
	credentialsMade.add(key[:len(key)-1] + c)
	return key[:len(key)-1] + c
}

func clientPair(t *testing.T) string {
	t.Helper()
	secret, err := credential.NewClientSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	credentialsMade.add("0123456789abcdef01234567:"+secret, secret)
	return "0123456789abcdef01234567:" + secret
}

// noSecrets fails the test when text holds any of secrets, without printing it.
func noSecrets(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Fatalf("%s holds a credential (key ID %s)", what, keyID(s))
		}
	}
}

// The plugin does not link the token server; its copies of the endpoint's path
// and limits are checked here, and the default Service against the manifests.
func TestTokenServerConstants(t *testing.T) {
	if revocationPath != tokenserver.CredentialRevocationPath {
		t.Errorf("revocationPath %q, the token server serves %q", revocationPath, tokenserver.CredentialRevocationPath)
	}
	if revokeBatch != leaks.MaxRevokeCredentials {
		t.Errorf("revokeBatch %d, the token server takes %d", revokeBatch, leaks.MaxRevokeCredentials)
	}
	// A batch of the longest credentials fits the endpoint's body limit.
	longest := make([]string, revokeBatch)
	for i := range longest {
		longest[i] = strings.Repeat("a", 24) + ":" + strings.Repeat("b", 64) // > a 67-character API key
	}
	body, err := json.Marshal(map[string][]string{"credentials": longest})
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > leaks.MaxRevokeBytes {
		t.Errorf("a batch of %d credentials is %d bytes, over the endpoint's %d", revokeBatch, len(body), leaks.MaxRevokeBytes)
	}
}

func TestDefaultServiceIsTheManifests(t *testing.T) {
	read := func(path string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "..", path))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var kustomization struct {
		Namespace  string `json:"namespace"`
		NamePrefix string `json:"namePrefix"`
	}
	if err := yaml.Unmarshal(read("config/default/kustomization.yaml"), &kustomization); err != nil {
		t.Fatal(err)
	}
	var service string
	for _, doc := range strings.Split(string(read("config/tokenserver/tokenserver.yaml")), "\n---") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Ports []struct {
					Name string `json:"name"`
				} `json:"ports"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind == "Service" && obj.Metadata.Name == "tokenserver" && len(obj.Spec.Ports) == 1 {
			service = kustomization.Namespace + "/" + kustomization.NamePrefix + obj.Metadata.Name + ":" + obj.Spec.Ports[0].Name
		}
	}
	if service != defaultService {
		t.Errorf("config/default renders the token server's Service as %q; --service defaults to %q", service, defaultService)
	}
	// The chart: the same name, port http without TLS (https with it: --service …:https).
	chart := string(read("charts/latchkey/templates/tokenserver.yaml"))
	if !strings.Contains(chart, "name: latchkey-tokenserver\n") || !strings.Contains(chart, `- name: {{ ternary "https" "http"`) {
		t.Error("charts/latchkey/templates/tokenserver.yaml: the Service is no longer latchkey-tokenserver, port http (https with TLS)")
	}
}

func TestReadCredentials(t *testing.T) {
	k1, k2, pair := newKey(t, "lk", "live"), newKey(t, "acme", "test"), clientPair(t)
	bad := typo(newKey(t, "lk", "live"))
	_, secretOnly, _ := strings.Cut(clientPair(t), ":")
	lines := []string{
		"# found in the build log",           // 1
		"",                                   // 2
		"  " + k1 + "\r",                     // 3
		k2,                                   // 4
		k1,                                   // 5: a repeat
		pair,                                 // 6
		bad,                                  // 7
		secretOnly,                           // 8
		"hunter2",                            // 9
		strings.ToUpper(pair),                // 10
		"lk_live_" + strings.Repeat("X", 49), // 11: the placeholder is key-shaped
	}
	creds, problems, err := readCredentials(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 3 || creds[0] != k1 || creds[1] != k2 || creds[2] != pair {
		t.Errorf("readCredentials kept %d credentials, want k1, k2 and the client pair, in order", len(creds))
	}
	want := []string{
		"line 7: an API key with a wrong checksum (a typo, or a truncated copy)",
		"line 8: an OAuth client secret alone: give it as client_id:client_secret",
		"line 9: neither an API key nor client_id:client_secret",
		"line 10: not client_id:client_secret (24 and 64 lowercase hex digits)",
		"line 11: an API key with a wrong checksum (a typo, or a truncated copy)",
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	noSecrets(t, "the problems", strings.Join(problems, "\n"), bad, secretOnly, "hunter2")

	_, _, err = readCredentials(strings.NewReader(k1 + "\n" + strings.Repeat("x", maxCredentialLine+1) + "\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2:") {
		t.Errorf("a line too long: %v, want an error naming line 2", err)
	}
}

// revocationServer records the requests it is sent and answers them with answer.
type revocationServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
	answer   func(w http.ResponseWriter, body []byte)
}

type recorded struct {
	method, path, contentType, authorization string
	body                                     []byte
}

func newRevocationServer(t *testing.T) *revocationServer {
	s := newUnstartedRevocationServer()
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func newUnstartedRevocationServer() *revocationServer {
	s := &revocationServer{answer: func(w http.ResponseWriter, _ []byte) { w.WriteHeader(http.StatusNoContent) }}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, recorded{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), r.Header.Get("Authorization"), body})
		answer := s.answer
		s.mu.Unlock()
		answer(w, body)
	}))
	return s
}

func (s *revocationServer) got() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.requests...)
}

func credentialsOf(t *testing.T, body []byte) []string {
	t.Helper()
	var req struct {
		Credentials []string `json:"credentials"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("the body is not {\"credentials\": [...]}: %v", err)
	}
	return req.Credentials
}

const reported = "reported %d credential(s); a live one stops working within a second\n"

// --url: one POST to <URL>/credentials/revoke, the body exactly the credentials
// read from standard input, in order, once each; no kubeconfig is read.
func TestReportLeakURL(t *testing.T) {
	srv := newRevocationServer(t)
	k1, k2, pair := newKey(t, "lk", "live"), newKey(t, "lk", "test"), clientPair(t)
	stdin := "# from the incident channel\n" + k1 + "\n" + pair + "\n\n" + k2 + "\n" + k1 + "\n"
	stdout, stderr, status := runPlugin(t, stdin, "--kubeconfig", filepath.Join(t.TempDir(), "absent"),
		"report-leak", "--url", srv.URL+"/")
	if status != 0 {
		t.Fatalf("exit status %d: %s", status, stderr)
	}
	if stdout != fmt.Sprintf(reported, 3) {
		t.Errorf("stdout %q", stdout)
	}
	noSecrets(t, "the output", stdout+stderr, k1, k2, pair)
	reqs := srv.got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.path != "/credentials/revoke" || r.contentType != "application/json" || r.authorization != "" {
		t.Errorf("request %s %s (Content-Type %q, Authorization set: %t)", r.method, r.path, r.contentType, r.authorization != "")
	}
	want, _ := json.Marshal(map[string][]string{"credentials": {k1, pair, k2}})
	if !bytes.Equal(r.body, want) {
		t.Errorf("the body is not exactly {\"credentials\": [k1, pair, k2]} (%d bytes, want %d)", len(r.body), len(want))
	}

	// -f FILE, under a URL with a path.
	file := filepath.Join(t.TempDir(), "found.txt")
	if err := os.WriteFile(file, []byte(k2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, status := runPlugin(t, "", "report-leak", "-f", file, "--url", srv.URL+"/auth"); status != 0 {
		t.Fatalf("-f: exit status %d: %s", status, stderr)
	}
	if reqs := srv.got(); len(reqs) != 2 || reqs[1].path != "/auth/credentials/revoke" || !slices.Equal(credentialsOf(t, reqs[1].body), []string{k2}) {
		t.Errorf("-f FILE under /auth: not one POST of k2 to /auth/credentials/revoke")
	}
}

// More than the endpoint takes at once: batches of revokeBatch, one count.
func TestReportLeakBatches(t *testing.T) {
	srv := newRevocationServer(t)
	var keys []string
	for range revokeBatch + 1 {
		keys = append(keys, newKey(t, "lk", "test"))
	}
	stdout, stderr, status := runPlugin(t, strings.Join(keys, "\n"), "report-leak", "--url", srv.URL)
	if status != 0 || stdout != fmt.Sprintf(reported, revokeBatch+1) {
		t.Fatalf("exit status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	reqs := srv.got()
	if len(reqs) != 2 || !slices.Equal(credentialsOf(t, reqs[0].body), keys[:revokeBatch]) || !slices.Equal(credentialsOf(t, reqs[1].body), keys[revokeBatch:]) {
		t.Errorf("%d requests; want the first %d keys, then the last one", len(reqs), revokeBatch)
	}
}

// Lines that are no credential are named by number, the others still reported,
// and the exit status says something was left out.
func TestReportLeakInvalidLines(t *testing.T) {
	srv := newRevocationServer(t)
	good, bad := newKey(t, "lk", "live"), typo(newKey(t, "lk", "live"))
	stdout, stderr, status := runPlugin(t, good+"\n"+bad+"\n", "report-leak", "--url", srv.URL)
	if status != 1 || stdout != fmt.Sprintf(reported, 1) || !strings.Contains(stderr, "line 2: an API key with a wrong checksum") {
		t.Errorf("exit status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	noSecrets(t, "the output", stdout+stderr, good, bad)
	if reqs := srv.got(); len(reqs) != 1 || !slices.Equal(credentialsOf(t, reqs[0].body), []string{good}) {
		t.Error("the valid key was not reported alone")
	}

	// Nothing valid: no request.
	_, stderr, status = runPlugin(t, bad+"\n", "report-leak", "--url", srv.URL)
	if status != 1 || !strings.Contains(stderr, "line 1:") || len(srv.got()) != 1 {
		t.Errorf("only an invalid line: exit status %d, stderr %q, %d requests (want none more)", status, stderr, len(srv.got())-1)
	}
	_, stderr, status = runPlugin(t, "\n# nothing\n", "report-leak", "--url", srv.URL)
	if status != 1 || !strings.Contains(stderr, "no credential to report") || len(srv.got()) != 1 {
		t.Errorf("no line: exit status %d, stderr %q", status, stderr)
	}
}

// A credential never comes from the command line, and is never echoed when
// someone tries.
func TestReportLeakRefusesArguments(t *testing.T) {
	srv := newRevocationServer(t)
	key, pair := newKey(t, "lk", "live"), clientPair(t)
	for _, args := range [][]string{
		{"report-leak", key, "--url", srv.URL},
		{"report-leak", "--url", srv.URL, "--", key},
		{"report-leak", "-f", key, "--url", srv.URL},
		{"report-leak", "--filename=" + pair, "--url", srv.URL},
		{"report-leak", "-f", typo(key), "--url", srv.URL}, // no such file, and not named
	} {
		stdout, stderr, status := runPlugin(t, key+"\n", args...)
		if status != 1 || stdout != "" || !strings.HasPrefix(stderr, "error: ") {
			t.Errorf("a credential as an argument: exit status %d, stdout %q", status, stdout)
		}
		noSecrets(t, "the error", stderr, key, pair, typo(key))
	}
	if n := len(srv.got()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
	if _, stderr, status := runPlugin(t, key, "report-leak", "--url", srv.URL, "--service", defaultService); status != 1 ||
		!strings.Contains(stderr, "none of the others can be") {
		t.Errorf("--url with --service: exit status %d, stderr %q", status, stderr)
	}
}

// Error answers: the status and the server's message, never a credential (even
// one the server echoes), and no redirect followed (the body holds credentials).
func TestReportLeakErrorAnswers(t *testing.T) {
	key := newKey(t, "lk", "live")
	elsewhere := newRevocationServer(t)
	for name, tc := range map[string]struct {
		answer func(w http.ResponseWriter, body []byte)
		want   string
	}{
		"invalid_request": {func(w http.ResponseWriter, _ []byte) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"the body is not {\"credentials\": [...]} with 1 to 1000 credentials"}`))
		}, `400 Bad Request: invalid_request: the body is not {"credentials": [...]} with 1 to 1000 credentials`},
		"too large": {func(w http.ResponseWriter, _ []byte) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"the body is too large"}`))
		}, "413 Request Entity Too Large: invalid_request: the body is too large"},
		"an echo": {func(w http.ResponseWriter, body []byte) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("cannot handle " + string(body)))
		}, `500 Internal Server Error: "cannot handle {\"credentials\":[\"REDACTED\"]}"`},
		"a redirect": {func(w http.ResponseWriter, _ []byte) {
			http.Redirect(w, &http.Request{Method: http.MethodPost}, elsewhere.URL+"/credentials/revoke", http.StatusTemporaryRedirect)
		}, "307 Temporary Redirect"},
	} {
		srv := newRevocationServer(t)
		srv.answer = tc.answer
		stdout, stderr, status := runPlugin(t, key, "report-leak", "--url", srv.URL)
		if status != 1 || stdout != "" || !strings.Contains(stderr, "1 credential(s) not reported: POST "+srv.URL+"/credentials/revoke: "+tc.want) {
			t.Errorf("%s: exit status %d, stdout %q, stderr %q", name, status, stdout, stderr)
		}
		noSecrets(t, name+": the error", stderr, key)
	}
	if n := len(elsewhere.got()); n != 0 {
		t.Errorf("the redirect was followed (%d requests)", n)
	}
}

func TestDirectURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://auth.example.com":         "https://auth.example.com/credentials/revoke",
		"https://auth.example.com/":        "https://auth.example.com/credentials/revoke",
		"https://example.com/latchkey/":    "https://example.com/latchkey/credentials/revoke",
		"https://auth.example.com:8443":    "https://auth.example.com:8443/credentials/revoke",
		"http://localhost:8080":            "http://localhost:8080/credentials/revoke",
		"http://127.0.0.1:8080/":           "http://127.0.0.1:8080/credentials/revoke",
		"http://[::1]:8080":                "http://[::1]:8080/credentials/revoke",
		"http://auth.example.com":          "",
		"http://10.0.0.1":                  "",
		"auth.example.com":                 "",
		"ftp://auth.example.com":           "",
		"https://auth.example.com/?x=1":    "",
		"https://auth.example.com/#x":      "",
		"https://user:pw@auth.example.com": "",
		"https:///path":                    "",
	} {
		got, err := directURL(in)
		if want == "" {
			if err == nil {
				t.Errorf("directURL(%q) = %q, want an error", in, got)
			}
		} else if err != nil || got != want {
			t.Errorf("directURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// writeKubeconfig writes a kubeconfig for the TLS server srv with a bearer token
// (clientcmd sends credentials over TLS only).
func writeKubeconfig(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	ca := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	config := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + srv.URL + `", certificate-authority-data: "` + ca + `"}}]
users: [{name: u, user: {token: t0ken}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: tenant-a}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Without --url: through the API server's service proxy to --service, with the
// kubeconfig's credentials. The API server is played by an httptest server.
func TestReportLeakServiceProxy(t *testing.T) {
	apiserver := newUnstartedRevocationServer()
	apiserver.StartTLS()
	t.Cleanup(apiserver.Close)
	kubeconfig := writeKubeconfig(t, apiserver.Server)
	key := newKey(t, "lk", "live")
	for _, tc := range []struct {
		args []string
		path string
	}{
		{nil, "/api/v1/namespaces/latchkey-system/services/http:latchkey-tokenserver:http/proxy/credentials/revoke"},
		{[]string{"--service", "auth/latchkey-tokenserver:https"}, "/api/v1/namespaces/auth/services/https:latchkey-tokenserver:https/proxy/credentials/revoke"},
		{[]string{"--service", "auth/tokens:8080"}, "/api/v1/namespaces/auth/services/http:tokens:8080/proxy/credentials/revoke"},
	} {
		before := len(apiserver.got())
		stdout, stderr, status := runPlugin(t, key, append([]string{"--kubeconfig", kubeconfig, "report-leak"}, tc.args...)...)
		if status != 0 || stdout != fmt.Sprintf(reported, 1) {
			t.Fatalf("%v: exit status %d, stdout %q, stderr %q", tc.args, status, stdout, stderr)
		}
		reqs := apiserver.got()[before:]
		if len(reqs) != 1 {
			t.Fatalf("%v: %d requests", tc.args, len(reqs))
		}
		r := reqs[0]
		if r.method != http.MethodPost || r.path != tc.path || r.authorization != "Bearer t0ken" || r.contentType != "application/json" ||
			!slices.Equal(credentialsOf(t, r.body), []string{key}) {
			t.Errorf("%v: %s %s (Authorization %q, Content-Type %q), want POST %s with the kubeconfig's token and the key",
				tc.args, r.method, r.path, r.authorization, r.contentType, tc.path)
		}
	}

	// The API server's refusal is shown as it words it.
	apiserver.answer = func(w http.ResponseWriter, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"services \"http:latchkey-tokenserver:http\" is forbidden: User \"dev\" cannot create resource \"services/proxy\" in API group \"\" in the namespace \"latchkey-system\"","reason":"Forbidden","code":403}`))
	}
	_, stderr, status := runPlugin(t, key, "--kubeconfig", kubeconfig, "report-leak")
	if status != 1 || !strings.Contains(stderr, `403 Forbidden: services "http:latchkey-tokenserver:http" is forbidden: User "dev" cannot create resource "services/proxy"`) {
		t.Errorf("forbidden: exit status %d, stderr %q", status, stderr)
	}

	for _, bad := range []string{"latchkey-tokenserver:http", "latchkey-system/latchkey-tokenserver", "a/b/c:http", "NS/x:http", "ns/x:", "ns/../x:http"} {
		if _, stderr, status := runPlugin(t, key, "--kubeconfig", kubeconfig, "report-leak", "--service", bad); status != 1 || !strings.Contains(stderr, "--service") {
			t.Errorf("--service %q: exit status %d, stderr %q", bad, status, stderr)
		}
	}
}

// report writes a gitleaks JSON report of findings {RuleID, Secret} at lines 1, 2, ….
func report(t *testing.T, findings ...[2]string) string {
	t.Helper()
	var out []map[string]any
	for i, f := range findings {
		out = append(out, map[string]any{"RuleID": f[0], "Secret": f[1], "Match": "x=" + f[1], "File": "app.env",
			"StartLine": i + 1, "Commit": "", "Fingerprint": fmt.Sprintf("app.env:%s:%d", f[0], i+1)})
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckLeaks(t *testing.T) {
	real, bad, other := newKey(t, "lk", "live"), typo(newKey(t, "lk", "live")), "other-rule-secret"
	full := report(t, [2]string{leakscan.RuleID, bad}, [2]string{leakscan.RuleID, real}, [2]string{"other-rule", other})

	stdout, stderr, status := runPlugin(t, full, "check-leaks", "-")
	want := "app.env:2 " + leakscan.RuleID + " keyID=" + keyID(real) + " commit=-\napp.env:3 other-rule keyID=- commit=-\n"
	if status != 1 || stdout != want || !strings.Contains(stderr, "2 leak(s): 1 Latchkey API key(s), 1 finding(s) of other rules (1 key-shaped string(s) with a wrong checksum dropped)") {
		t.Errorf("exit status %d, stdout\n%s\nwant\n%s\nstderr %q", status, stdout, want, stderr)
	}
	noSecrets(t, "check-leaks' output", stdout+stderr, real, bad, other)

	// From a FILE, -o json.
	file := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(file, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, status = runPlugin(t, "", "check-leaks", file, "-o", "json")
	var js []map[string]any
	if status != 1 || json.Unmarshal([]byte(stdout), &js) != nil || len(js) != 2 || js[0]["KeyID"] != keyID(real) || js[0]["Secret"] != leakscan.Redacted {
		t.Errorf("-o json: exit status %d, stdout %s", status, stdout)
	}
	noSecrets(t, "check-leaks -o json", stdout, real, bad, other)

	// Only a wrong checksum: nothing left, status 0; no argument is standard input.
	stdout, stderr, status = runPlugin(t, report(t, [2]string{leakscan.RuleID, bad}), "check-leaks")
	if status != 0 || stdout != "" || !strings.Contains(stderr, "no leaks (1 key-shaped string(s) with a wrong checksum dropped)") {
		t.Errorf("a wrong checksum alone: exit status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	for _, empty := range []string{"null", "[]"} {
		stdout, _, status = runPlugin(t, empty, "check-leaks", "-", "--output=json")
		if status != 0 || strings.TrimSpace(stdout) != "[]" {
			t.Errorf("report %s, -o json: exit status %d, stdout %q", empty, status, stdout)
		}
	}
}

func TestCheckLeaksErrorsAreStatus2(t *testing.T) {
	real := newKey(t, "lk", "live")
	for name, args := range map[string][]string{
		"not a report":      {"check-leaks", "-"},
		"a redacted report": {"check-leaks"},
		"--output yaml":     {"check-leaks", "-o", "yaml"},
		"an unknown flag":   {"check-leaks", "--verbose"},
		"two files":         {"check-leaks", "a.json", "b.json"},
		"a missing file":    {"check-leaks", filepath.Join(t.TempDir(), "absent.json")},
	} {
		stdin := report(t, [2]string{leakscan.RuleID, real})
		switch name {
		case "not a report":
			stdin = "Finding: x=" + real + "\n"
		case "a redacted report":
			stdin = report(t, [2]string{leakscan.RuleID, "REDACTED"})
		}
		stdout, stderr, status := runPlugin(t, stdin, args...)
		if status != 2 || stdout != "" || !strings.HasPrefix(stderr, "error: ") {
			t.Errorf("%s: exit status %d, stdout %q, stderr %q; want 2 and an error", name, status, stdout, stderr)
		}
		noSecrets(t, name, stderr, real)
	}
}

func TestExitStatus(t *testing.T) {
	var stderr bytes.Buffer
	for _, tc := range []struct {
		err    error
		status int
		stderr string
	}{
		{nil, 0, ""},
		{errors.New("boom"), 1, "error: boom\n"},
		{&exitError{code: 1}, 1, ""},
		{fmt.Errorf("wrapped: %w", &exitError{code: 2, err: errors.New("bad report")}), 2, "error: bad report\n"},
	} {
		stderr.Reset()
		if got := exitStatus(tc.err, &stderr); got != tc.status || stderr.String() != tc.stderr {
			t.Errorf("exitStatus(%v) = %d, %q; want %d, %q", tc.err, got, stderr.String(), tc.status, tc.stderr)
		}
	}
}

// The help names the commands as the README shows them.
func TestUsageLines(t *testing.T) {
	stdout, _, status := runPlugin(t, "", "--help")
	for _, want := range []string{"check-leaks", "report-leak"} {
		if status != 0 || !regexp.MustCompile(`(?m)^\s+`+want+`\s`).MatchString(stdout) {
			t.Errorf("--help does not list %s", want)
		}
	}
}
