package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// StartRestartable is StartWith for a control plane whose kube-apiserver and etcd
// can be killed and started again (the chaos suite's outages) and come back as the
// same servers, so that clients reconnect by themselves: same ports, same serving
// certificate and client CA, same data. envtest deletes the directories it
// creates itself on Stop; here the certificates and etcd's data live under dir,
// which the caller owns and removes. o.LogTo receives kube-apiserver's and etcd's
// output too.
func StartRestartable(o Options, dir string) (*Env, error) {
	root, assets, err := locate()
	if err != nil {
		return nil, err
	}
	certDir, dataDir := filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "etcd")
	for _, d := range []string{certDir, dataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	apiPort, err := stablePort()
	if err != nil {
		return nil, err
	}
	etcdPort, err := stablePort()
	if err != nil {
		return nil, err
	}
	apiServer := &envtest.APIServer{CertDir: certDir}
	apiServer.SecureServing.Address, apiServer.SecureServing.Port = "127.0.0.1", strconv.Itoa(apiPort)
	etcd := &envtest.Etcd{DataDir: dataDir, URL: &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdPort))}}
	if o.LogTo != nil {
		apiServer.Out, apiServer.Err, etcd.Out, etcd.Err = o.LogTo, o.LogTo, o.LogTo, o.LogTo
	}
	env := &Env{Environment: &envtest.Environment{
		BinaryAssetsDirectory: assets,
		ControlPlane:          envtest.ControlPlane{APIServer: apiServer, Etcd: etcd},
	}}
	return env.start(root, o)
}

// KillAPIServer kills kube-apiserver, as a crash would, and waits until it has
// exited. Only for an Env from StartRestartable.
func (e *Env) KillAPIServer() error {
	if err := killChild(e.ControlPlane.APIServer.Path); err != nil {
		return err
	}
	return e.ControlPlane.APIServer.Stop()
}

// StartAPIServer starts kube-apiserver again on its port, with its certificates,
// and waits until it is healthy.
func (e *Env) StartAPIServer() error { return e.ControlPlane.APIServer.Start() }

// KillEtcd kills etcd, as a crash would, and waits until it has exited;
// kube-apiserver keeps running. Only for an Env from StartRestartable.
func (e *Env) KillEtcd() error {
	if err := killChild(e.ControlPlane.Etcd.Path); err != nil {
		return err
	}
	return e.ControlPlane.Etcd.Stop()
}

// StartEtcd starts etcd again on its client port, with its data, and waits until
// it is healthy.
func (e *Env) StartEtcd() error { return e.ControlPlane.Etcd.Start() }

// killChild sends SIGKILL to the child process running the binary at path.
// envtest only stops its processes with SIGTERM, and kube-apiserver answers that
// with a graceful shutdown that waits for open watches to end, which they do not.
// envtest's Stop, called afterwards, reaps the process.
func killChild(path string) error {
	binary, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return err
	}
	for _, stat := range stats {
		raw, err := os.ReadFile(stat)
		if err != nil {
			continue // it exited meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		if exe, err := os.Readlink(filepath.Join(filepath.Dir(stat), "exe")); err != nil || exe != binary {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(stat)))
		if err != nil {
			return err
		}
		return syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Errorf("no child process runs %s", binary)
}

// stablePort returns a free loopback port below Linux's ephemeral range (32768 and
// up by default). envtest picks ports in that range, where, while a component is
// down, the kernel may hand its port to an outgoing connection as a source port,
// and the restart could not bind it.
func stablePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		if handedOut.ports[port] {
			continue // free now, but promised to a listener that may not be up yet
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			handedOut.ports[port] = true
			return port, l.Close()
		}
	}
	return 0, errors.New("no free port between 20000 and 32000")
}

// handedOut are the ports stablePort returned in this process: never twice.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}
