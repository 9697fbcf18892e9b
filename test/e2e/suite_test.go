//go:build e2e

// Package e2e drives the real binaries as separate processes against a local
// control plane (hack/controlplane), and uses the built kubectl the way a user
// would. Run it with `make test-e2e` (part of `make test`).
package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/latchkey-dev/latchkey/internal/testenv"
)

var (
	root       string // the repository
	binDir     string // bin/, with latchkey, kubectl-latchkey, latchkey-controlplane
	kubectlBin string
	caddyBin   string // hack/caddy.sh's build, the edge specs' proxy
	workDir    string // kubeconfigs and process logs
	controlPl  *process
	manager    *process
	tokenSrv   *process
	issuer     string // the token server's URL (and iss)
	probeAddr  string // the manager's /healthz and /readyz
	// oidcProvider is the upstream OpenID Provider users sign in at (the example OP
	// of github.com/zitadel/oidc, built by hack/oidc-provider.sh).
	oidcProvider *testenv.OIDCProvider
	// plaintexts are the credentials the suite read from Secrets; none may appear in a log.
	plaintexts []string
	// scanner signs the secret-scanning reports the token server accepts.
	scanner *secretScanner
	// scanningConfig is the token server's --secret-scanning-config.
	scanningConfig string
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "End-to-end Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	binDir = filepath.Join(root, "bin")
	kubectlBin = filepath.Join(binDir, "k8s", envOr("K8S_VERSION", "1.37.2"), "kubectl")
	for _, bin := range []string{"latchkey", "kubectl-latchkey", "latchkey-controlplane"} {
		Expect(filepath.Join(binDir, bin)).To(BeAnExistingFile(), "run `make build`")
	}
	Expect(kubectlBin).To(BeAnExistingFile(), "run `make envtest`")
	caddyBin, err = testenv.BuiltTool("caddy", "CADDY_VERSION", "v2.11.9")
	Expect(err).NotTo(HaveOccurred())
	workDir = GinkgoT().TempDir()

	By("starting the local control plane")
	controlPl = startProcess("controlplane", "", filepath.Join(binDir, "latchkey-controlplane"), "--dir", workDir)
	Eventually(filepath.Join(workDir, "ready")).WithTimeout(2 * time.Minute).Should(BeAnExistingFile())

	By("installing the CRDs and RBAC as a user would")
	kubectl("apply", "--server-side", "-k", filepath.Join(root, "config", "local"))
	kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd/apikeys.latchkey.dev", "crd/oauthclients.latchkey.dev")

	issuer = "http://" + freeAddr()
	probeAddr = freeAddr()

	By("starting the upstream OpenID Provider and giving the token server its client secret")
	oidcProvider, err = testenv.StartOIDCProvider(filepath.Join(workDir, "oidc-provider.log"),
		[]string{issuer + "/oauth2/callback"}, []testenv.OIDCUser{alice.OIDCUser})
	Expect(err).NotTo(HaveOccurred(), "run `make oidc-provider` (hack/oidc-provider.sh)")
	// From a file, not --from-literal: kubectl's arguments are printed when it fails.
	clientSecretFile := filepath.Join(workDir, "oidc-client-secret")
	Expect(os.WriteFile(clientSecretFile, []byte(oidcProvider.ClientSecret), 0o600)).To(Succeed())
	kubectl("create", "secret", "generic", "latchkey-oidc-client", "-n", "latchkey-system",
		"--from-file=client-secret="+clientSecretFile)
	scanner, scanningConfig = newSecretScanner(workDir)
	manager = startManager()
	tokenSrv = startTokenServer()
	Eventually(func() int { return httpStatus(issuer + "/readyz") }).Should(Equal(http.StatusOK), "the token server becomes ready")
})

var _ = AfterSuite(func() {
	for _, p := range []*process{tokenSrv, manager} {
		if p != nil {
			p.stop()
		}
	}
	if oidcProvider != nil {
		Expect(oidcProvider.Stop()).To(Succeed())
	}
	if controlPl != nil {
		controlPl.stop()
	}
	By("checking that no credential reached a log")
	for _, name := range []string{"manager", "tokenserver", "authz", "caddy", "authz-hostile", "caddy-hostile", "nginx"} {
		logs, err := os.ReadFile(filepath.Join(workDir, name+".log"))
		if err != nil {
			continue
		}
		for _, p := range plaintexts {
			Expect(strings.Contains(string(logs), p)).To(BeFalse(), "a credential in the %s log", name)
		}
	}
})

func startManager() *process {
	p := startManagerProcess(probeAddr, "--leader-elect")
	Eventually(func() int { return httpStatus("http://" + probeAddr + "/readyz") }).Should(Equal(http.StatusOK), "the manager becomes ready")
	return p
}

// startManagerProcess starts a manager with the suite's settings plus extra flags,
// its probes on probe, and returns at once: the fault specs kill some before they
// are ready. Every manager logs to manager.log, which AfterSuite searches.
func startManagerProcess(probe string, extra ...string) *process {
	args := append([]string{"manager", "--namespace=latchkey-system",
		"--metrics-bind-address=0", "--health-probe-bind-address=" + probe, "--issuer-url=" + issuer}, extra...)
	return startProcess("manager", filepath.Join(workDir, "latchkey-manager.kubeconfig"), filepath.Join(binDir, "latchkey"), args...)
}

func startTokenServer() *process {
	return startProcess("tokenserver", filepath.Join(workDir, "latchkey-tokenserver.kubeconfig"), filepath.Join(binDir, "latchkey"),
		"tokenserver", "--listen-address="+strings.TrimPrefix(issuer, "http://"), "--metrics-bind-address=0",
		"--issuer-url="+issuer, "--signing-key-namespace=latchkey-system", "--last-used-flush-interval=1s",
		"--oidc-issuer-url="+oidcProvider.Issuer, "--oidc-client-id="+oidcProvider.ClientID, "--oidc-username-claim=email",
		"--secret-scanning-config="+scanningConfig)
}

// alice signs in at the upstream provider; RBAC knows her by her email (the token
// server's --oidc-username-claim=email, as kube-apiserver would be configured).
var alice = struct {
	testenv.OIDCUser
	RBACName string
}{testenv.OIDCUser{ID: "u-alice", Username: "alice", Password: "Alice-e2e-Passw0rd", Email: "alice@acme.test"}, "alice@acme.test"}

// process is one of the binaries, running with its output in workDir/<name>.log
// (appended to across restarts).
type process struct{ *testenv.Process }

func startProcess(name, kubeconfig, bin string, args ...string) *process {
	p, err := testenv.StartProcess(name, filepath.Join(workDir, name+".log"), kubeconfig, bin, args...)
	Expect(err).NotTo(HaveOccurred())
	return &process{p}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop() {
	Expect(p.Stop(40*time.Second)).To(Succeed(), "%s exits cleanly on SIGTERM", p.Name)
}

// kill sends SIGKILL and waits until the process is gone (fine if it already was).
func (p *process) kill() {
	Expect(p.Kill(10 * time.Second)).To(Succeed())
}

// kubectl runs the built kubectl as the admin user, with bin/ on PATH so that
// `kubectl latchkey` finds the plugin, and returns its standard output.
func kubectl(args ...string) string {
	out, err := kubectlErr(args...)
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "kubectl %s", strings.Join(args, " "))
	return out
}

func kubectlErr(args ...string) (string, error) {
	cmd := exec.Command(kubectlBin, args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+filepath.Join(workDir, "admin.kubeconfig"),
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), nil
}

// secretValue reads one key of a Secret with kubectl, without mounting it.
func secretValue(ns, name, key string) string {
	encoded := kubectl("get", "secret", name, "-n", ns, "-o", "jsonpath={.data."+strings.ReplaceAll(key, ".", `\.`)+"}")
	decoded, err := base64.StdEncoding.DecodeString(encoded)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	if key == "api-key" || key == "client_secret" {
		plaintexts = append(plaintexts, string(decoded))
	}
	return string(decoded)
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func freeAddr() string {
	addr, err := testenv.FreeAddr()
	Expect(err).NotTo(HaveOccurred())
	return addr
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
