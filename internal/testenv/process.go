package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is one of the project's binaries run by a suite (e2e, chaos), with its
// output appended to a log file (across restarts).
type Process struct {
	Name string
	Cmd  *exec.Cmd
	// exited is closed when the process has ended, with its exit error in err: a
	// closed channel, so that Stop, Kill and any spec can all wait on it.
	exited chan struct{}
	err    error
}

// StartProcess runs bin with args, KUBECONFIG=kubeconfig unless empty, and its
// output appended to logPath.
func StartProcess(name, logPath, kubeconfig, bin string, args ...string) (*Process, error) {
	return startProcess(exec.Command(bin, args...), name, logPath, kubeconfig)
}

func startProcess(cmd *exec.Cmd, name, logPath, kubeconfig string) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = os.Environ()
	if kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+kubeconfig)
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &Process{Name: name, Cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); log.Close(); close(p.exited) }()
	return p, nil
}

// Exited is closed once the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the process exited, once Exited is closed.
func (p *Process) Err() error { return p.err }

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits up to timeout for the process to exit, returning
// its exit error; past timeout it is killed and Stop says so.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.Name, timeout)
	}
}

// Kill sends SIGKILL, as a crash or an OOM kill would end the process, and waits
// up to timeout until it is gone. A process that already exited is fine.
func (p *Process) Kill(timeout time.Duration) error {
	_ = p.Cmd.Process.Kill()
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s still runs %s after SIGKILL", p.Name, timeout)
	}
}
