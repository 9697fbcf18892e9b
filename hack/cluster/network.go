package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The node's addresses: private, and only ever on the node's own bridge. Nothing
// the cluster sends leaves the machine: the bridge has no uplink, the Service range
// is routed onto the bridge, and the filter table below drops anything from a pod
// or towards these ranges that would take another interface.
const (
	bridgeName      = "latchkey0"
	nodeIP          = "10.244.0.1" // the bridge's address: the API server, the kubelet, the pods' gateway
	podCIDR         = "10.244.0.0/24"
	serviceCIDR     = "10.96.0.0/24"
	kubernetesSvcIP = "10.96.0.1" // the first address of serviceCIDR: the Service "kubernetes"
	dnsServiceIP    = "10.96.0.10"
	nftTable        = "latchkey_cluster"
	nodeName        = "latchkey-node"
	clusterDomain   = "cluster.local"
)

// sysctls the node needs, with their values; the previous values are restored on stop.
var sysctls = map[string]string{
	"net/ipv4/ip_forward": "1",
	// Service traffic between two pods on the bridge goes through netfilter (kube-proxy's DNAT and its reverse).
	"net/bridge/bridge-nf-call-iptables": "1",
}

// setUpNetwork creates the bridge, routes the Service range onto it, sets the
// sysctls and installs the confinement table; each step adds its undo to td.
func setUpNetwork(td *teardown) error {
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		return fmt.Errorf("interface %s exists: another `make cluster` runs, or one was killed before it cleaned up (`ip link delete %s` and `nft delete table inet %s`)",
			bridgeName, bridgeName, nftTable)
	}
	// The kubelet adds its chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT)
	// through iptables-nft, creating the ip and ip6 filter, nat and mangle tables if
	// they are not there: both are removed once it has stopped.
	tablesBefore, err := nftTables()
	if err != nil {
		return err
	}
	td.add("removing what the kubelet left in iptables", func() error { return removeKubeletChains(tablesBefore) })
	if err := execute("ip", "link", "add", bridgeName, "type", "bridge"); err != nil {
		return err
	}
	td.add("deleting the bridge "+bridgeName, func() error { return execute("ip", "link", "delete", bridgeName) })
	ones, _ := mustCIDR(podCIDR).Mask.Size()
	if err := execute("ip", "addr", "add", fmt.Sprintf("%s/%d", nodeIP, ones), "dev", bridgeName); err != nil {
		return err
	}
	if err := execute("ip", "link", "set", bridgeName, "up"); err != nil {
		return err
	}
	// Without kube-proxy's rules (before it starts, after it stops) a packet to a
	// ClusterIP goes onto the bridge, where nothing answers, never out of the machine.
	if err := execute("ip", "route", "add", serviceCIDR, "dev", bridgeName, "src", nodeIP); err != nil {
		return err
	}
	for key, value := range sysctls {
		path := filepath.Join("/proc/sys", key)
		old, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting %s: %w", path, err)
		}
		restore := strings.TrimSpace(string(old))
		td.add(fmt.Sprintf("restoring %s=%s", strings.ReplaceAll(key, "/", "."), restore), func() error {
			return os.WriteFile(path, []byte(restore), 0o644)
		})
	}
	confine := fmt.Sprintf(`table inet %[1]s {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "%[2]s" oifname != "%[2]s" drop
	}
	chain output {
		type filter hook output priority filter; policy accept;
		ip daddr { %[3]s, %[4]s } oifname != { "%[2]s", "lo" } drop
	}
}
`, nftTable, bridgeName, podCIDR, serviceCIDR)
	if err := executeInput(confine, "nft", "-f", "-"); err != nil {
		return err
	}
	td.add("deleting the nftables table "+nftTable, func() error { return execute("nft", "delete", "table", "inet", nftTable) })
	return nil
}

// nftTables is the set of nftables tables, as "family name".
func nftTables() (map[string]bool, error) {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return nil, fmt.Errorf("nft list tables: %w", err)
	}
	tables := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), "table "); ok {
			tables[t] = true
		}
	}
	return tables, nil
}

// kubeletChains are the iptables chains the kubelet creates, by table, and the
// built-in chains that jump to them.
var kubeletChains = map[string][]string{
	"filter": {"KUBE-FIREWALL", "KUBE-KUBELET-CANARY"},
	"nat":    {"KUBE-KUBELET-CANARY"},
	"mangle": {"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"},
}

// removeKubeletChains deletes the ip and ip6 filter, nat and mangle tables that
// were not there before the cluster started, and the kubelet's chains from those
// that were.
func removeKubeletChains(before map[string]bool) error {
	after, err := nftTables()
	if err != nil {
		return err
	}
	var errs []error
	for _, family := range []string{"ip", "ip6"} {
		iptables := map[string]string{"ip": "iptables", "ip6": "ip6tables"}[family]
		for table, chains := range kubeletChains {
			name := family + " " + table
			if !after[name] {
				continue
			}
			if !before[name] {
				if err := execute("nft", "delete", "table", family, table); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			for _, chain := range chains {
				for _, builtin := range []string{"INPUT", "OUTPUT"} {
					for exec.Command(iptables, "-t", table, "-D", builtin, "-j", chain).Run() == nil {
					}
				}
				_ = exec.Command(iptables, "-t", table, "-F", chain).Run()
				_ = exec.Command(iptables, "-t", table, "-X", chain).Run()
			}
		}
	}
	return errors.Join(errs...)
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// run runs a command and returns its output in the error when it fails.
func execute(name string, args ...string) error { return executeInput("", name, args...) }

func executeInput(stdin, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// teardown is what stop undoes, last step first.
type teardown struct {
	steps []struct {
		what string
		undo func() error
	}
}

func (t *teardown) add(what string, undo func() error) {
	t.steps = append(t.steps, struct {
		what string
		undo func() error
	}{what, undo})
}

// run undoes every step, newest first, and goes on past a failure.
func (t *teardown) run(logf func(string, ...any)) error {
	var errs []error
	for i := len(t.steps) - 1; i >= 0; i-- {
		s := t.steps[i]
		logf("%s", s.what)
		if err := s.undo(); err != nil {
			logf("  failed: %v", err)
			errs = append(errs, fmt.Errorf("%s: %w", s.what, err))
		}
	}
	t.steps = nil
	return errors.Join(errs...)
}
