// Command cluster is `make cluster`: a real one-node Kubernetes cluster on this
// machine, with no Docker and no registry. It starts etcd, kube-apiserver,
// kube-controller-manager (every controller), kube-scheduler, containerd (Debian's,
// runc and the bridge CNI plugin), the kubelet and kube-proxy (nftables mode), all
// built from Go modules by hack/envtest.sh but containerd, imports the offline
// images (the sandbox image, CoreDNS and any --import tarball, such as `make image`'s)
// before the first pod, runs CoreDNS as the cluster DNS, waits for the node to be
// Ready, writes the admin kubeconfig and "ready" into --dir, and runs until SIGINT or
// SIGTERM, when it removes every pod, stops everything it started, and undoes every
// change it made to the machine (the bridge, routes, nftables tables, sysctls,
// mounts, cgroups).
//
// Addresses are private and stay on the machine: the node is the bridge latchkey0
// (10.244.0.1, the API server listens there on 6443), pods get 10.244.0.0/24 and
// Services 10.96.0.0/24, reachable from the host through kube-proxy.
//
// It must run as root (it runs a kubelet). The cluster suite (test/cluster) runs it
// the way `make cluster` does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/latchkey-dev/latchkey/internal/testenv"
)

type options struct {
	dir, k8sBin, pause, coredns string
	imports                     stringList
	cniBinDir                   string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var o options
	flag.StringVar(&o.dir, "dir", "", "directory for the cluster's files and the admin kubeconfig (default: a new temporary directory, removed on stop)")
	flag.StringVar(&o.k8sBin, "k8s-bin", filepath.Join("bin", "k8s", testenv.K8sVersion), "directory of etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl (hack/envtest.sh)")
	flag.StringVar(&o.pause, "pause", filepath.Join("bin", "cluster", "pause"), "the static pause binary (hack/cluster/pause)")
	flag.StringVar(&o.coredns, "coredns", "", "the static CoreDNS binary (hack/coredns.sh)")
	flag.StringVar(&o.cniBinDir, "cni-bin-dir", "/usr/lib/cni", "directory of the CNI plugins (Debian's containernetworking-plugins)")
	flag.Var(&o.imports, "import", "an image tarball to import into containerd before the first pod (repeatable), such as bin/image/latchkey.tar")
	flag.Parse()
	log := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "[cluster] "+format+"\n", args...) }
	if err := run(o, log); err != nil {
		log("ERROR: %v", err)
		os.Exit(1)
	}
}

func run(o options, log func(string, ...any)) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("the kubelet and containerd need root: run as root (sudo make cluster)")
	}
	if o.coredns == "" {
		return errors.New("--coredns is required (hack/coredns.sh builds it)")
	}
	tools := map[string]string{}
	for _, name := range []string{"containerd", "ctr", "runc", "nft", "ip"} {
		path, err := exec.LookPath(name)
		if err != nil {
			return fmt.Errorf("%s is not installed: run hack/node-packages.sh (with CI=true it installs Debian's containerd, runc, containernetworking-plugins and nftables)", name)
		}
		tools[name] = path
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(o.cniBinDir, plugin)); err != nil {
			return fmt.Errorf("the CNI plugin %s is missing from %s: run hack/node-packages.sh", plugin, o.cniBinDir)
		}
	}
	bins := map[string]string{}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
		bins[name] = filepath.Join(o.k8sBin, name)
		if _, err := os.Stat(bins[name]); err != nil {
			return fmt.Errorf("%s is not built: run `make cluster-tools` (hack/envtest.sh): %w", name, err)
		}
	}
	for _, f := range append([]string{o.pause, o.coredns}, o.imports...) {
		if _, err := os.Stat(f); err != nil {
			return err
		}
	}

	removeDir := o.dir == ""
	if removeDir {
		if o.dir, err = os.MkdirTemp("", "latchkey-cluster-"); err != nil {
			return err
		}
	}
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	c := &cluster{dir: o.dir, bins: bins, tools: tools, log: log}
	defer func() {
		log("stopping")
		if terr := c.td.run(log); terr != nil {
			err = errors.Join(err, terr)
		}
		if removeDir {
			if rerr := os.RemoveAll(o.dir); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		if err == nil {
			log("stopped; the machine is as it was")
		}
	}()
	start := time.Now()
	if err := c.start(ctx, o); err != nil {
		return err
	}
	kubeconfig := filepath.Join(o.dir, "admin.kubeconfig")
	fmt.Printf(`
A one-node cluster is up (%s), node %s Ready:
  export KUBECONFIG=%s
  %s get nodes,pods -A
Services are reachable from this machine at their ClusterIPs (%s), cluster DNS at %s.
Ctrl-C stops it and removes everything it started.
`, time.Since(start).Round(100*time.Millisecond), nodeName, kubeconfig, bins["kubectl"], serviceCIDR, dnsServiceIP)
	if err := os.WriteFile(filepath.Join(o.dir, "ready"), []byte(kubeconfig+"\n"), 0o600); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case p := <-c.exited:
		return fmt.Errorf("%s exited: %v (its log: %s)", p.Name, p.Err(), filepath.Join(o.dir, "logs", p.Name+".log"))
	}
}

// cluster is the running cluster: its processes and what stopping it undoes.
type cluster struct {
	dir   string
	bins  map[string]string
	tools map[string]string
	log   func(string, ...any)
	td    teardown
	pki   *pki
	admin *kubernetes.Clientset
	// exited receives a component that ended on its own while the cluster runs.
	exited chan *testenv.Process
}

func (c *cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

// process starts a component with its output in logs/<name>.log, and its stop in
// the teardown (SIGTERM, then SIGKILL after timeout).
func (c *cluster) process(name string, timeout time.Duration, bin string, args ...string) (*testenv.Process, error) {
	if err := os.MkdirAll(c.path("logs"), 0o700); err != nil {
		return nil, err
	}
	p, err := testenv.StartProcessGroup(name, c.path("logs", name+".log"), "", bin, args...)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	stopping := make(chan struct{})
	go func() {
		select {
		case <-p.Exited():
			select {
			case c.exited <- p:
			default:
			}
		case <-stopping:
		}
	}()
	c.td.add("stopping "+name, func() error {
		close(stopping)
		if !p.Running() {
			return nil
		}
		if err := p.Stop(timeout); err != nil && !isSignalExit(err) {
			return err
		}
		return nil
	})
	return p, nil
}

// isSignalExit: a component that ends on the SIGTERM it was sent.
func isSignalExit(err error) bool {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return true
		}
		return exit.ExitCode() == 0 || exit.ExitCode() == 1 || exit.ExitCode() == 143
	}
	return false
}

func (c *cluster) start(ctx context.Context, o options) error {
	c.exited = make(chan *testenv.Process, 1)
	log := c.log
	log("files in %s", c.dir)
	log("network: bridge %s (%s), pods %s, Services %s", bridgeName, nodeIP, podCIDR, serviceCIDR)
	if err := setUpNetwork(&c.td); err != nil {
		return err
	}

	// Paths the kubelet, containerd's shims and the CNI library use whatever they
	// are told: removed on stop unless they were there before.
	for _, path := range fixedPaths {
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			c.td.add("removing "+path, func() error { return os.RemoveAll(path) })
		}
	}

	var err error
	if c.pki, err = newPKI(c.path("pki")); err != nil {
		return err
	}
	if err := c.pki.serving("apiserver", "kube-apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain},
		[]net.IP{net.ParseIP(nodeIP), net.ParseIP(kubernetesSvcIP), net.ParseIP("127.0.0.1")}); err != nil {
		return err
	}
	if err := c.pki.serving("kubelet-serving", "system:node:"+nodeName, []string{nodeName}, []net.IP{net.ParseIP(nodeIP)}); err != nil {
		return err
	}
	server := "https://" + net.JoinHostPort(nodeIP, "6443")
	for _, id := range identities() {
		if err := c.pki.client(id); err != nil {
			return err
		}
		if err := c.pki.kubeconfig(id, server, c.path(id.file+".kubeconfig")); err != nil {
			return err
		}
	}

	log("starting etcd")
	etcdClient, err := testenv.FreeAddr()
	if err != nil {
		return err
	}
	etcdPeer, err := testenv.FreeAddr()
	if err != nil {
		return err
	}
	if _, err := c.process("etcd", 20*time.Second, c.bins["etcd"],
		"--data-dir="+c.path("etcd"),
		"--listen-client-urls=http://"+etcdClient, "--advertise-client-urls=http://"+etcdClient,
		"--listen-peer-urls=http://"+etcdPeer, "--initial-advertise-peer-urls=http://"+etcdPeer,
		"--initial-cluster=default=http://"+etcdPeer, "--unsafe-no-fsync=true"); err != nil {
		return err
	}
	if err := waitHTTP(ctx, "etcd", "http://"+etcdClient+"/health", 30*time.Second); err != nil {
		return err
	}

	log("starting kube-apiserver on %s", server)
	pk := c.pki.path
	if _, err := c.process("kube-apiserver", 30*time.Second, c.bins["kube-apiserver"],
		"--etcd-servers=http://"+etcdClient,
		"--bind-address="+nodeIP, "--advertise-address="+nodeIP, "--secure-port=6443",
		"--tls-cert-file="+pk("apiserver.crt"), "--tls-private-key-file="+pk("apiserver.key"),
		"--client-ca-file="+pk("ca.crt"),
		"--service-cluster-ip-range="+serviceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc."+clusterDomain,
		"--service-account-key-file="+pk("sa.pub"), "--service-account-signing-key-file="+pk("sa.key"),
		"--authorization-mode=Node,RBAC",
		// ServiceAccount admission (on by default; envtest turns it off) mounts every
		// pod's token; NodeRestriction keeps the kubelet to its own node.
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--kubelet-client-certificate="+pk("apiserver-kubelet-client.crt"), "--kubelet-client-key="+pk("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+pk("ca.crt"),
		// The host name resolves to 127.0.0.1 here: reach the kubelet at its InternalIP (logs, exec).
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--profiling=false"); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.path("admin.kubeconfig"))
	if err != nil {
		return err
	}
	if c.admin, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if err := poll(ctx, "kube-apiserver to be ready", 60*time.Second, func() (bool, error) {
		body, err := c.admin.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	}); err != nil {
		return err
	}

	log("starting containerd (%s) and importing the images", c.tools["containerd"])
	if err := c.startContainerd(ctx, o); err != nil {
		return err
	}

	log("starting the kubelet, node %s", nodeName)
	for _, d := range []string{"kubelet", "pod-logs"} {
		if err := os.MkdirAll(c.path(d), 0o700); err != nil {
			return err
		}
	}
	if err := writeFile(c.path("kubelet.yaml"), kubeletConfig(c.pki, c.path("containerd", "containerd.sock"), c.path("pod-logs"))); err != nil {
		return err
	}
	if _, err := c.process("kubelet", 30*time.Second, c.bins["kubelet"],
		"--config="+c.path("kubelet.yaml"), "--kubeconfig="+c.path("kubelet.kubeconfig"),
		"--root-dir="+c.path("kubelet"), "--cert-dir="+c.path("kubelet", "pki"),
		"--hostname-override="+nodeName, "--node-ip="+nodeIP, "--v=1"); err != nil {
		return err
	}

	log("starting kube-proxy (nftables)")
	if err := writeFile(c.path("kube-proxy.yaml"), kubeProxyConfig(c.path("kube-proxy.kubeconfig"))); err != nil {
		return err
	}
	c.td.add("deleting kube-proxy's nftables tables", func() error {
		for _, family := range []string{"ip", "ip6"} {
			if err := execute(c.tools["nft"], "list", "table", family, "kube-proxy"); err == nil {
				if err := execute(c.tools["nft"], "delete", "table", family, "kube-proxy"); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if _, err := c.process("kube-proxy", 10*time.Second, c.bins["kube-proxy"], "--config="+c.path("kube-proxy.yaml"), "--v=1"); err != nil {
		return err
	}

	// Stopping undoes this first: with the controllers and the scheduler stopped,
	// nothing recreates the pods that the kubelet then tears down.
	c.td.add("removing every pod (the kubelet tears down their sandboxes, networks and volumes)", func() error {
		return c.deleteAllPods()
	})
	log("starting kube-controller-manager (every controller) and kube-scheduler")
	if _, err := c.process("kube-controller-manager", 20*time.Second, c.bins["kube-controller-manager"],
		"--kubeconfig="+c.path("kube-controller-manager.kubeconfig"),
		"--controllers=*", "--use-service-account-credentials=true",
		"--service-account-private-key-file="+pk("sa.key"), "--root-ca-file="+pk("ca.crt"),
		"--cluster-signing-cert-file="+pk("ca.crt"), "--cluster-signing-key-file="+pk("ca.key"),
		"--service-cluster-ip-range="+serviceCIDR, "--cluster-cidr="+podCIDR,
		"--leader-elect=false", "--secure-port=0", "--v=1"); err != nil {
		return err
	}
	if _, err := c.process("kube-scheduler", 20*time.Second, c.bins["kube-scheduler"],
		"--kubeconfig="+c.path("kube-scheduler.kubeconfig"),
		"--authentication-kubeconfig="+c.path("kube-scheduler.kubeconfig"),
		"--authorization-kubeconfig="+c.path("kube-scheduler.kubeconfig"),
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0", "--v=1"); err != nil {
		return err
	}

	if err := poll(ctx, "node "+nodeName+" to be Ready", 90*time.Second, func() (bool, error) {
		node, err := c.admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	}); err != nil {
		return err
	}

	log("starting CoreDNS (Service kube-dns, %s)", dnsServiceIP)
	if err := writeFile(c.path("coredns.yaml"), corednsManifests()); err != nil {
		return err
	}
	if err := executeInput("", c.bins["kubectl"], "--kubeconfig="+c.path("admin.kubeconfig"), "apply", "--server-side", "-f", c.path("coredns.yaml")); err != nil {
		return err
	}
	return poll(ctx, "CoreDNS to be available", 120*time.Second, func() (bool, error) {
		d, err := c.admin.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return d.Status.AvailableReplicas >= 1, nil
	})
}

// startContainerd starts containerd with the CRI settings of this machine and
// imports the images before any pod: the sandbox image, CoreDNS, and o.imports.
func (c *cluster) startContainerd(ctx context.Context, o options) error {
	dir := c.path("containerd")
	sock := filepath.Join(dir, "containerd.sock")
	if err := writeFile(filepath.Join(dir, "config.toml"), containerdConfig(dir, c.tools["runc"], o.cniBinDir)); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "net.d", "10-latchkey.conflist"), cniConfig(filepath.Join(dir, "ipam"))); err != nil {
		return err
	}
	// Stopping containerd leaves its shims running (they outlive it by design), and
	// the kubelet leaves its cgroups and mounts: all undone once both have stopped.
	c.td.add("unmounting what containerd and the kubelet left mounted under "+c.dir, func() error { return unmountUnder(c.dir) })
	c.td.add("removing the kubelet's cgroups and log links", func() error { return removeKubeletLeftovers(c.path("pod-logs")) })
	c.td.add("ending containerd's shims", func() error { return killShims(sock) })
	if _, err := c.process("containerd", 20*time.Second, c.tools["containerd"], "--config="+filepath.Join(dir, "config.toml")); err != nil {
		return err
	}
	if err := poll(ctx, "containerd to listen", 30*time.Second, func() (bool, error) {
		return execute(c.tools["ctr"], "--address="+sock, "version") == nil, nil
	}); err != nil {
		return err
	}
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(images, 0o700); err != nil {
		return err
	}
	pause, coredns := filepath.Join(images, "pause.tar"), filepath.Join(images, "coredns.tar")
	if err := packBinary(o.pause, pauseImage, pause); err != nil {
		return fmt.Errorf("packing the pause image: %w", err)
	}
	if err := packBinary(o.coredns, corednsImage, coredns); err != nil {
		return fmt.Errorf("packing the CoreDNS image: %w", err)
	}
	for _, tarball := range append([]string{pause, coredns}, o.imports...) {
		c.log("importing %s", tarball)
		if err := execute(c.tools["ctr"], "--address="+sock, "--namespace=k8s.io", "images", "import", tarball); err != nil {
			return err
		}
	}
	return nil
}

// deleteAllPods deletes every pod and waits until the kubelet has torn each down
// (containers, sandbox network, volumes) and confirmed it.
func (c *cluster) deleteAllPods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if c.admin == nil {
		return nil
	}
	pods, err := c.admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	grace := int64(1)
	for _, p := range pods.Items {
		err := c.admin.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return poll(ctx, "every pod to be gone", 90*time.Second, func() (bool, error) {
		pods, err := c.admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
}

// poll calls cond every 100 ms until it holds, fails, ctx ends or timeout passes.
func poll(ctx context.Context, what string, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not happen within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitHTTP(ctx context.Context, what, url string, timeout time.Duration) error {
	return poll(ctx, what+" to answer "+url, timeout, func() (bool, error) {
		resp, err := http.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}
