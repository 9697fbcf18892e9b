// Package testenv starts the control plane the test suites run against: a real
// kube-apiserver and etcd (controller-runtime's envtest) with the project's CRDs,
// plus kube-controller-manager running the garbage collector and the cluster-role
// aggregation controller, so that owner references and the built-in edit role do
// what they do in a cluster. The binaries come from hack/envtest.sh.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// K8sVersion is the version hack/envtest.sh builds by default.
const K8sVersion = "1.37.2"

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for an admin user, for processes and kubectl.
	Kubeconfig string
	dir        string
	gc         *exec.Cmd
}

// Options tune Start.
type Options struct {
	// SkipCRDs leaves the CRDs out, for a control plane that installs them itself (make demo).
	SkipCRDs bool
	// LogTo receives the controller manager's output.
	LogTo *os.File
}

// Start starts etcd, kube-apiserver with the project's CRDs, and the garbage
// collector. logTo receives the controller manager's output.
func Start(logTo *os.File) (*Env, error) { return StartWith(Options{LogTo: logTo}) }

// StartWith is Start with options.
func StartWith(o Options) (*Env, error) {
	root, assets, err := locate()
	if err != nil {
		return nil, err
	}
	env := &Env{Environment: &envtest.Environment{BinaryAssetsDirectory: assets}}
	return env.start(root, o)
}

// start starts the control plane e describes, with the project's CRDs unless
// o.SkipCRDs, and the garbage collector.
func (e *Env) start(root string, o Options) (*Env, error) {
	if !o.SkipCRDs {
		e.CRDDirectoryPaths = []string{filepath.Join(root, "config", "crd", "bases")}
		e.ErrorIfCRDPathMissing = true
	}
	var err error
	if e.Config, err = e.Environment.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s (run `make envtest`): %w", e.BinaryAssetsDirectory, err)
	}
	if err := e.startGarbageCollector(e.BinaryAssetsDirectory, o.LogTo); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) startGarbageCollector(assets string, logTo *os.File) error {
	admin, err := e.AddUser(envtest.User{Name: "latchkey-test-admin", Groups: []string{"system:masters"}}, e.Config)
	if err != nil {
		return fmt.Errorf("adding an admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	if e.dir, err = os.MkdirTemp("", "latchkey-testenv-"); err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}
	e.gc = exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+e.Kubeconfig,
		// The garbage collector deletes a credential's Secret with its owner; the
		// aggregation controller folds config/rbac's editor roles into the built-in
		// edit role, which is what a tenant is given (Tenant).
		"--controllers=garbagecollector,clusterrole-aggregation",
		"--leader-elect=false",
		"--secure-port=0",
		"--v=1",
	)
	if logTo != nil {
		e.gc.Stdout, e.gc.Stderr = logTo, logTo
	}
	if err := e.gc.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager (run `make envtest`): %w", err)
	}
	return nil
}

// WriteUserKubeconfig writes a kubeconfig that authenticates as user (with a client
// certificate signed by the control plane's CA) and returns its path.
func (e *Env) WriteUserKubeconfig(user envtest.User, path string) error {
	u, err := e.AddUser(user, e.Config)
	if err != nil {
		return fmt.Errorf("adding user %s: %w", user.Name, err)
	}
	kubeconfig, err := u.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(path, kubeconfig, 0o600)
}

// Stop stops every process Start started and removes their files.
func (e *Env) Stop() error {
	var errs []error
	if e.gc != nil && e.gc.Process != nil {
		_ = e.gc.Process.Kill()
		_ = e.gc.Wait()
	}
	errs = append(errs, e.Environment.Stop())
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

// FreeAddr returns a free loopback address for a listener a test starts later. Its
// port is below Linux's ephemeral range (stablePort): one from :0 is in that range,
// where any outgoing connection may take it as its source port before the listener
// binds it ("address already in use" once the machine is busy).
func FreeAddr() (string, error) {
	port, err := stablePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// locate returns the repository and the directory of the control-plane binaries:
// $KUBEBUILDER_ASSETS, else what `make envtest` builds.
func locate() (root, assets string, err error) {
	if root, err = repoRoot(); err != nil {
		return "", "", err
	}
	if assets = os.Getenv("KUBEBUILDER_ASSETS"); assets == "" {
		assets = filepath.Join(root, "bin", "k8s", K8sVersion)
	}
	return root, assets, nil
}

// repoRoot is the directory holding go.mod, found upwards from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// BuiltTool returns the path of a tool a hack/ script builds from its Go module
// into bin/<name>/<version>/<name> (hack/lib/gomodule.sh, hack/caddy.sh,
// hack/oidc-provider.sh): the version is the environment variable versionEnv, as
// the Makefile passes it, or defaultVersion. A tool that is not built is an error
// naming the make target that builds it, so that a test fails rather than skips.
func BuiltTool(name, versionEnv, defaultVersion string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	version := defaultVersion
	if v := os.Getenv(versionEnv); v != "" {
		version = v
	}
	bin := filepath.Join(root, "bin", name, version, name)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s %s is not built: run `make %s`: %w", name, version, name, err)
	}
	return bin, nil
}
