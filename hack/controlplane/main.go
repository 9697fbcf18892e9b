// Command controlplane runs a local Kubernetes control plane for `make demo` and the
// end-to-end suite: etcd and kube-apiserver on loopback (data in a temporary
// directory) and kube-controller-manager running the garbage collector, all built
// from Go modules by hack/envtest.sh. It writes one kubeconfig per user into --dir,
// then "ready", and runs until SIGINT or SIGTERM, when it stops everything it
// started and removes its data.
//
// Users: admin (system:masters, for kubectl), latchkey-manager and
// latchkey-tokenserver (no groups: they get exactly what config/local binds).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/latchkey-dev/latchkey/internal/testenv"
)

func main() {
	dir := flag.String("dir", "", "directory for the kubeconfigs (required)")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if dir == "" {
		return fmt.Errorf("--dir is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	gcLog, err := os.Create(filepath.Join(dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	defer gcLog.Close()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)

	env, err := testenv.StartWith(testenv.Options{SkipCRDs: true, LogTo: gcLog})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "controlplane: stopping:", err)
		}
	}()
	users := map[string]envtest.User{
		"admin":                {Name: "latchkey-admin", Groups: []string{"system:masters"}},
		"latchkey-manager":     {Name: "latchkey-manager"},
		"latchkey-tokenserver": {Name: "latchkey-tokenserver"},
	}
	for file, user := range users {
		if err := env.WriteUserKubeconfig(user, filepath.Join(dir, file+".kubeconfig")); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(env.Config.Host+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Printf("control plane ready at %s; kubeconfigs in %s\n", env.Config.Host, dir)
	<-signals
	return nil
}
