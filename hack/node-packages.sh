#!/usr/bin/env bash
# Ensures the parts of a Kubernetes node that are not Go modules, for `make cluster`
# and the cluster suite (test/cluster): containerd (with its ctr client), runc, the
# CNI plugins (bridge, host-local, loopback) and nft (kube-proxy's nftables mode).
# They come from Debian's packages: installed when CI=true, a loud error with the
# apt-get command anywhere else (hack/lib/debian.sh), never a silent skip.
#
# Usage: hack/node-packages.sh
# Output: one line per program, "name path", the CNI plugins' directory last
# ("cni-bin-dir /usr/lib/cni").
set -euo pipefail

# shellcheck source=hack/lib/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"

containerd="$(ensure_debian_package node containerd containerd runc | tail -n1)"
ctr="$(ensure_debian_package node containerd ctr | tail -n1)"
runc="$(ensure_debian_package node runc runc | tail -n1)"
bridge="$(ensure_debian_package node containernetworking-plugins /usr/lib/cni/bridge | tail -n1)"
nft="$(ensure_debian_package node nftables nft | tail -n1)"
for plugin in host-local loopback; do
	[ -x "/usr/lib/cni/$plugin" ] || { echo "[node] ERROR: /usr/lib/cni/$plugin is missing: reinstall containernetworking-plugins" >&2; exit 1; }
done
printf 'containerd %s\nctr %s\nrunc %s\nnft %s\ncni-bin-dir %s\n' "$containerd" "$ctr" "$runc" "$nft" "$(dirname "$bridge")"
