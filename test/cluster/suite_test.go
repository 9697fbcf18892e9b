//go:build cluster

// Package cluster runs Latchkey the way it runs in production: on a real one-node
// cluster (`make cluster`, hack/cluster: kubelet, containerd, runc, kube-proxy,
// CoreDNS), installed with helm and with kubectl from the offline image that
// `make image` builds, its pods started by the kubelet under the restricted Pod
// Security level, probed by the kubelet, and reached through their Services. Run it
// with `make test-cluster` (part of `make test`); it needs root.
package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net"
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

const (
	systemNS = "latchkey-system"
	// The node's fixed addresses (hack/cluster).
	bridgeName = "latchkey0"
	dnsServer  = "10.96.0.10:53"
)

var (
	root       string // the repository
	kubectlBin string
	helmBin    string
	chartDir   string
	imageTar   string // bin/image/latchkey.tar, imported into the node's containerd
	workDir    string
	clusterDir string // hack/cluster's files: kubeconfigs, component logs, pod logs
	kubeconfig string
	clusterP   *testenv.Process
	// ipForwardBefore is net.ipv4.ip_forward before the cluster started, and
	// tablesBefore the nftables tables: both must be again after.
	ipForwardBefore, tablesBefore string
	// pathsBefore: which of the fixed paths the node's daemons write to existed.
	pathsBefore map[string]bool
	// plaintexts are the credentials the suite read from Secrets; none may appear in a log.
	plaintexts []string
	// httpc reaches the Services from this machine (kube-proxy's ClusterIPs) and
	// resolves cluster names through the cluster's DNS, as a pod does; freshConns
	// does the same over a new connection for every request.
	httpc, freshConns *http.Client
)

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Cluster Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	Expect(os.Geteuid()).To(Equal(0), "the cluster suite runs a kubelet and containerd: it needs root")
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	k8sBin := filepath.Join(root, "bin", "k8s", envOr("K8S_VERSION", testenv.K8sVersion))
	kubectlBin = filepath.Join(k8sBin, "kubectl")
	helmBin, err = testenv.BuiltTool("helm", "HELM_VERSION", "v4.3.1")
	Expect(err).NotTo(HaveOccurred())
	coredns, err := testenv.BuiltTool("coredns", "COREDNS_VERSION", "v1.15.0")
	Expect(err).NotTo(HaveOccurred())
	chartDir = filepath.Join(root, "charts", "latchkey")
	imageTar = filepath.Join(root, "bin", "image", "latchkey.tar")
	for _, f := range []string{filepath.Join(root, "bin", "latchkey-cluster"), filepath.Join(root, "bin", "cluster", "pause"), imageTar} {
		Expect(f).To(BeAnExistingFile(), "run `make test-cluster` (it builds the image and the cluster's tools)")
	}
	Expect(chartImage()).To(Equal(imageRef()), "bin/image/latchkey.tar is tagged as the chart's default image (make image with the default IMG)")
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	Expect(err).NotTo(HaveOccurred())
	ipForwardBefore = strings.TrimSpace(string(raw))
	tablesBefore = nftTables()
	pathsBefore = existing(fixedPaths...)

	workDir = GinkgoT().TempDir()
	clusterDir = filepath.Join(workDir, "cluster")
	kubeconfig = filepath.Join(clusterDir, "admin.kubeconfig")
	By("starting the one-node cluster as `make cluster` does, with the image imported")
	clusterP, err = testenv.StartProcess("cluster", filepath.Join(workDir, "cluster.log"), "",
		filepath.Join(root, "bin", "latchkey-cluster"), "--dir", clusterDir, "--k8s-bin", k8sBin,
		"--pause", filepath.Join(root, "bin", "cluster", "pause"), "--coredns", coredns, "--import", imageTar)
	Expect(err).NotTo(HaveOccurred())
	start := time.Now()
	Eventually(func() error {
		if !clusterP.Running() {
			return StopTrying("the cluster exited: " + tail(filepath.Join(workDir, "cluster.log"), 30))
		}
		_, err := os.Stat(filepath.Join(clusterDir, "ready"))
		return err
	}).WithTimeout(5 * time.Minute).Should(Succeed())
	AddReportEntry("cluster up", time.Since(start).Round(100*time.Millisecond).String())

	httpc, freshConns = newClient(true), newClient(false)
})

var _ = AfterSuite(func() {
	if clusterP == nil {
		return
	}
	By("checking that no credential reached a log: every container's, every component's")
	var logs []string
	_ = filepath.WalkDir(clusterDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(path, ".log") {
			logs = append(logs, path)
		}
		return nil
	})
	Expect(logs).NotTo(BeEmpty())
	for _, path := range logs {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue // a log rotated or removed meanwhile
		}
		for _, p := range plaintexts {
			Expect(strings.Contains(string(raw), p)).To(BeFalse(), "a credential in %s", path)
		}
	}

	By("stopping the cluster: every pod removed, every process stopped, the machine as it was")
	Expect(clusterP.Stop(3*time.Minute)).To(Succeed(), "the cluster stops cleanly on SIGTERM: %s", tail(filepath.Join(workDir, "cluster.log"), 30))
	_, err := net.InterfaceByName(bridgeName)
	Expect(err).To(HaveOccurred(), "the bridge is gone")
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	Expect(err).NotTo(HaveOccurred())
	Expect(strings.TrimSpace(string(raw))).To(Equal(ipForwardBefore), "ip_forward is restored")
	Expect(nftTables()).To(Equal(tablesBefore), "the nftables tables are as they were (the bridge's, kube-proxy's and the kubelet's removed)")
	Expect(existing(fixedPaths...)).To(Equal(pathsBefore), "the kubelet's, containerd's and the CNI library's fixed paths are as they were")
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	Expect(err).NotTo(HaveOccurred())
	Expect(string(mounts)).NotTo(ContainSubstring(clusterDir), "nothing stays mounted")
})

// newClient is an HTTP client that resolves a Service name from a Secret
// (latchkey-tokenserver.latchkey-system.svc) through the cluster DNS, as a pod's
// resolver does with the cluster domain as its search suffix, and reaches the
// Service through kube-proxy. keepAlive false opens a connection per request.
func newClient(keepAlive bool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Resolver: &net.Resolver{PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, dnsServer)
		}}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if net.ParseIP(host) == nil && strings.HasSuffix(host, ".svc") {
				addr = net.JoinHostPort(host+".cluster.local.", port)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 32,
	}}
}

// fixedPaths are where the kubelet, containerd's shims and the CNI library write
// whatever directories they are given (hack/cluster removes what it created).
var fixedPaths = []string{"/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/var/log/containers"}

// existing tells which of the paths exist.
func existing(paths ...string) map[string]bool {
	exist := map[string]bool{}
	for _, p := range paths {
		_, err := os.Lstat(p)
		exist[p] = err == nil
	}
	return exist
}

// nftTables lists the nftables tables of this machine.
func nftTables() string {
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), string(out))
	return string(out)
}

// kubectl runs the built kubectl as the cluster's admin and returns its standard output.
func kubectl(args ...string) string {
	out, err := kubectlErr(args...)
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "kubectl %s", strings.Join(args, " "))
	return out
}

func kubectlErr(args ...string) (string, error) {
	return runTool(kubectlBin, args...)
}

// helm runs the helm CLI (hack/helm.sh) against the cluster.
func helm(args ...string) string {
	out, err := runTool(helmBin, args...)
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "helm %s", strings.Join(args, " "))
	return out
}

func runTool(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HELM_CACHE_HOME="+filepath.Join(workDir, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(workDir, "helm-config"), "HELM_DATA_HOME="+filepath.Join(workDir, "helm-data"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), nil
}

// secretValue reads one key of a Secret with kubectl; credentials are remembered
// so that AfterSuite can search the logs for them.
func secretValue(ns, name, key string) string {
	encoded := kubectl("get", "secret", name, "-n", ns, "-o", "jsonpath={.data."+strings.ReplaceAll(key, ".", `\.`)+"}")
	decoded, err := base64.StdEncoding.DecodeString(encoded)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	if key == "api-key" || key == "client_secret" {
		plaintexts = append(plaintexts, string(decoded))
	}
	return string(decoded)
}

// clusterIP is the ClusterIP of a Service, reachable from this machine through kube-proxy.
func clusterIP(ns, name string) string {
	ip := kubectl("get", "service", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	ExpectWithOffset(1, net.ParseIP(ip)).NotTo(BeNil(), "Service %s/%s has a ClusterIP", ns, name)
	return ip
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// tail is the last n lines of a file, for a failure message.
func tail(path string, n int) string {
	raw, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
