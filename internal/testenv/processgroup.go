package testenv

import (
	"os/exec"
	"syscall"
)

// StartProcessGroup is StartProcess with the process in a process group of its
// own, so that a Ctrl-C at the terminal reaches only the program that started it,
// which then stops its processes in the order it chooses (hack/cluster deletes
// every pod before it stops the kubelet).
func StartProcessGroup(name, logPath, kubeconfig, bin string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return startProcess(cmd, name, logPath, kubeconfig)
}
