package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// The configuration files of the node's daemons. Each setting that departs from a
// default says why: most are the traps this machine sets (README, "A one-node
// cluster").

// containerdConfig is containerd 1.6's (Debian bookworm) configuration, with every
// path under the cluster's directory.
func containerdConfig(dir, runc, cniBinDir string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
# No btrfs, zfs, aufs or devmapper here: overlayfs only.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %[3]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  # Built offline and imported before the kubelet starts: no registry is reachable.
  sandbox_image = %[5]q
  # The sandbox lacks CAP_SYS_RESOURCE: runc cannot lower a container's
  # oom_score_adj below its own, and every sandbox would fail with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Pods' network namespaces under the cluster's directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[6]q
        # containerd 1.6 has no RuntimeConfig call to tell the kubelet its cgroup
        # driver: both are set to cgroupfs (this machine has no systemd).
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
    max_conf_num = 1
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(dir, "opt"), pauseImage, runc, cniBinDir, filepath.Join(dir, "net.d"))
}

// cniConfig is the bridge network: pods on the node's bridge, addresses from
// podCIDR, no masquerading (nothing leaves the machine).
func cniConfig(ipamDir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "latchkey",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, bridgeName, podCIDR, nodeIP, ipamDir)
}

// kubeletConfig is the KubeletConfiguration of the one node.
func kubeletConfig(p *pki, containerdSock, podLogsDir string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %[2]s
tlsPrivateKeyFile: %[3]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[4]s}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://%[5]s
# containerd 1.6 cannot report its cgroup driver (no RuntimeConfig call).
cgroupDriver: cgroupfs
# This machine has cgroup v1 only.
failCgroupV1: false
failSwapOn: false
clusterDomain: %[6]s
clusterDNS: [%[7]s]
# Pods never get the machine's resolver: cluster names only, no query leaves.
resolvConf: ""
# The images were imported, not pulled, and cannot be pulled again: image garbage
# collection and disk-pressure eviction must never remove them (as kind does).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "0%%"
  nodefs.inodesFree: "0%%"
  imagefs.available: "0%%"
  imagefs.inodesFree: "0%%"
podLogsDir: %[8]s
staticPodPath: ""
rotateCertificates: false
serverTLSBootstrap: false
shutdownGracePeriod: 0s
`, nodeIP, p.path("kubelet-serving.crt"), p.path("kubelet-serving.key"), p.path("ca.crt"), containerdSock,
		clusterDomain, dnsServiceIP, podLogsDir)
}

// kubeProxyConfig is kube-proxy in nftables mode: its own tables, which stop
// removes, and Services reachable from the host through their ClusterIPs.
func kubeProxyConfig(kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: %[1]s
bindAddress: %[2]s
clusterCIDR: %[3]s
clientConnection:
  kubeconfig: %[4]s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts on the bridge's address only, never on the machine's own interfaces.
nodePortAddresses: ["%[2]s/32"]
# Leave the machine's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, nodeName, nodeIP, podCIDR, kubeconfig)
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o600)
}
