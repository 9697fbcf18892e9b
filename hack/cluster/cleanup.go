package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What stopping undoes beyond the processes it started: these run after every pod
// was deleted and the kubelet and containerd stopped, and find what is left of a
// teardown that went wrong. Each is precise: only what this cluster created.

// killShims ends the containerd shims of the containerd listening at sock: they
// outlive containerd by design, and they carry its address on their command line.
func killShims(sock string) error {
	pids, err := processes(func(args []string) bool {
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			return false
		}
		for i, a := range args {
			if (a == "-address" || a == "--address") && i+1 < len(args) && args[i+1] == sock {
				return true
			}
		}
		return false
	})
	if err != nil {
		return err
	}
	return killAndWait(pids)
}

// containerLogLinks is where the kubelet links every container's log.
const containerLogLinks = "/var/log/containers"

// fixedPaths are where the node's daemons write whatever directories they are
// given: the kubelet's device-plugin socket, the CNI library's result cache,
// containerd's shim sockets and runc's state, and the log links.
var fixedPaths = []string{"/var/lib/kubelet", "/var/lib/cni", "/run/containerd", containerLogLinks}

// removeKubeletLeftovers ends any process still in a pod's cgroup (a container
// whose shim was killed), removes the cgroups under kubepods that the kubelet
// created in every cgroup v1 hierarchy (deepest first), and the links the kubelet
// made in /var/log/containers to the pod logs in podLogsDir.
func removeKubeletLeftovers(podLogsDir string) error {
	var errs []error
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if unified, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil && unified.IsDir() {
		hierarchies = append(hierarchies, "/sys/fs/cgroup/kubepods")
	}
	var pids []int
	var dirs []string
	for _, h := range hierarchies {
		_ = filepath.WalkDir(h, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			dirs = append(dirs, path)
			raw, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	if err := killAndWait(pids); err != nil {
		errs = append(errs, err)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	links, _ := filepath.Glob(filepath.Join(containerLogLinks, "*.log"))
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, podLogsDir+string(filepath.Separator)) {
			if err := os.Remove(l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// unmountUnder detaches every mount below dir (pods' volumes, containers' root
// file systems, sandboxes' shm), deepest first.
func unmountUnder(dir string) error {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	s := bufio.NewScanner(bytes.NewReader(raw))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := strings.ReplaceAll(fields[4], `\040`, " ")
		if strings.HasPrefix(mp, dir+string(filepath.Separator)) {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var errs []error
	for _, mp := range mounts {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// processes returns the pids whose command line matches.
func processes(match func(args []string) bool) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killAndWait sends SIGKILL to each pid and waits up to 10 s until all are gone.
func killAndWait(pids []int) error {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil {
			if zombie(pid) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d still runs 10 s after SIGKILL", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// zombie: the process has exited and waits for its parent to reap it.
func zombie(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}
