//go:build chaos

// Package chaos checks what the token server promises when things around it fail:
// it runs the real binaries as processes, kills and restarts kube-apiserver and
// etcd under load, and floods a token server with more concurrent requests than
// it admits at once. Run it with `make test-chaos` (part of `make test`).
package chaos

import (
	"context"
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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

const ns = "chaos"

var (
	root      string // the repository
	binDir    string // bin/, with latchkey
	workDir   string // kubeconfigs and process logs
	env       *testenv.Env
	admin     client.Client
	manager   *process
	tokenSrv  *server
	steadyKey string // an API key that stays active through every spec
	// worker issues tokens; ordersAPI is the resource server that introspects.
	worker, ordersAPI oauthClient
	// plaintexts are the credentials the suite read from Secrets; none may appear in a log.
	plaintexts []string
)

func TestChaos(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Chaos Suite")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	binDir = filepath.Join(root, "bin")
	Expect(filepath.Join(binDir, "latchkey")).To(BeAnExistingFile(), "run `make build`")
	workDir = GinkgoT().TempDir()

	By("starting a control plane whose kube-apiserver and etcd the suite can restart")
	cpLog, err := os.Create(filepath.Join(workDir, "controlplane.log"))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cpLog.Close)
	env, err = testenv.StartRestartable(testenv.Options{SkipCRDs: true, LogTo: cpLog}, filepath.Join(workDir, "controlplane"))
	Expect(err).NotTo(HaveOccurred())
	// The processes authenticate as the users config/local binds, as in test/e2e.
	for _, user := range []string{"latchkey-manager", "latchkey-tokenserver"} {
		Expect(env.WriteUserKubeconfig(envtest.User{Name: user}, filepath.Join(workDir, user+".kubeconfig"))).To(Succeed())
	}
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(latchkeyv1.AddToScheme(scheme)).To(Succeed())
	admin, err = client.New(env.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	By("installing the CRDs and RBAC as a user would")
	kubectl("apply", "--server-side", "-k", filepath.Join(root, "config", "local"))
	kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd/apikeys.latchkey.dev", "crd/oauthclients.latchkey.dev")

	By("starting the manager and the token server")
	issuer := "http://" + freeAddr()
	// No leader election: a 20-second outage outlasts the lease's renew deadline and
	// an elected manager exits by design (its Deployment would restart it). The
	// suite is about the token server; the manager only issues the credentials,
	// and signing keys for the main token server (RS256) and the overloaded one.
	manager = startProcess("manager", filepath.Join(workDir, "latchkey-manager.kubeconfig"), filepath.Join(binDir, "latchkey"),
		"manager", "--namespace=latchkey-system", "--metrics-bind-address=0", "--health-probe-bind-address="+freeAddr(),
		"--issuer-url="+issuer, "--signing-algorithms=RS256,"+overloadAlgorithm)
	tokenSrv = startTokenServer("tokenserver", issuer)

	By("issuing the credentials the specs use")
	kubectl("apply", "--server-side", "-f", filepath.Join("testdata", "credentials.yaml"))
	kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", ns, "apikeys", "--all")
	kubectl("wait", "--for=condition=Ready", "--timeout=60s", "-n", ns, "oauthclients", "--all")
	steadyKey = secretValue(ctx, "steady-apikey", "api-key")
	worker, ordersAPI = readClient(ctx, "worker"), readClient(ctx, "orders-api")
	Eventually(func() int { return httpStatus(tokenSrv.url + "/readyz") }).Should(Equal(http.StatusOK), "the token server becomes ready")
})

var _ = AfterSuite(func() {
	if tokenSrv != nil {
		tokenSrv.stop()
	}
	if manager != nil {
		manager.stop()
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
	By("checking that no credential reached a log")
	logs, err := filepath.Glob(filepath.Join(workDir, "*.log"))
	Expect(err).NotTo(HaveOccurred())
	for _, name := range logs {
		content, err := os.ReadFile(name)
		Expect(err).NotTo(HaveOccurred())
		for _, p := range plaintexts {
			Expect(strings.Contains(string(content), p)).To(BeFalse(), "a credential in %s", filepath.Base(name))
		}
	}
})

// server is a running token server: its process, its URL (also its issuer) and
// the address of its metrics listener.
type server struct {
	*process
	url, metrics string
}

// startTokenServer starts a token server on a fresh address, as test/e2e does,
// with extra flags; the caller waits for it to be ready.
func startTokenServer(name, issuer string, flags ...string) *server {
	s := &server{url: issuer, metrics: freeAddr()}
	args := append([]string{"tokenserver", "--listen-address=" + strings.TrimPrefix(issuer, "http://"),
		"--metrics-bind-address=" + s.metrics, "--issuer-url=" + issuer,
		"--signing-key-namespace=latchkey-system", "--last-used-flush-interval=1s"}, flags...)
	s.process = startProcess(name, filepath.Join(workDir, "latchkey-tokenserver.kubeconfig"), filepath.Join(binDir, "latchkey"), args...)
	return s
}

// process is one of the binaries, running with its output in workDir/<name>.log.
type process struct{ *testenv.Process }

func startProcess(name, kubeconfig, bin string, args ...string) *process {
	p, err := testenv.StartProcess(name, filepath.Join(workDir, name+".log"), kubeconfig, bin, args...)
	Expect(err).NotTo(HaveOccurred())
	return &process{p}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop() {
	if !p.Running() {
		Fail(fmt.Sprintf("%s had exited: %v (see %s.log)", p.Name, p.Err(), p.Name))
	}
	Expect(p.Stop(40*time.Second)).To(Succeed(), "%s exits cleanly on SIGTERM", p.Name)
}

// kubectl runs the control plane's kubectl as the admin user.
func kubectl(args ...string) string {
	cmd := exec.Command(env.ControlPlane.KubectlPath, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "kubectl %s: %s", strings.Join(args, " "), stderr.String())
	return string(out)
}

// secretValue reads one key of a Secret in ns and remembers it as a plaintext
// that no log may contain.
func secretValue(ctx context.Context, name, key string) string {
	var secret corev1.Secret
	ExpectWithOffset(1, admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &secret)).To(Succeed())
	value := string(secret.Data[key])
	ExpectWithOffset(1, value).NotTo(BeEmpty(), "%s has %s", name, key)
	if key == "api-key" || key == "client_secret" {
		plaintexts = append(plaintexts, value)
	}
	return value
}

func httpStatus(url string) int { return statusWith(quick, url) }

func freeAddr() string {
	addr, err := testenv.FreeAddr()
	Expect(err).NotTo(HaveOccurred())
	return addr
}
