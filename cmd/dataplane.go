package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// dataPlaneFlags are the flags the token server and the authorizer have alike:
// what they watch, how they record last use, how they talk to the API server,
// TLS, metrics and logging.
type dataPlaneFlags struct {
	namespaces                           string
	lastUsedFlush, lastUsedGranularity   time.Duration
	kubeAPIQPS                           float64
	kubeAPIBurst                         int
	kubeAPICompression                   bool
	tlsCertFile, tlsKeyFile, metricsAddr string
	pprofAddr                            string
	benchmarkFloor                       bool
	gcPercent                            int
	zap                                  zap.Options
}

func (f *dataPlaneFlags) bind(fs *flag.FlagSet, served string) {
	fs.StringVar(&f.namespaces, "namespaces", "", "comma-separated namespaces whose "+served+" to serve; empty means all")
	fs.DurationVar(&f.lastUsedFlush, "last-used-flush-interval", 10*time.Second, "how often recorded uses are written to status.lastUsedAt")
	fs.DurationVar(&f.lastUsedGranularity, "last-used-granularity", time.Hour, "status.lastUsedAt is the start of the period of this length in which the credential was last used: at most one write per object per period, whatever the replica count (minimum 1m); give the token server and the authorizer the same value")
	fs.Float64Var(&f.kubeAPIQPS, "kube-api-qps", 50, "client-side QPS limit towards the API server")
	fs.IntVar(&f.kubeAPIBurst, "kube-api-burst", 100, "client-side burst towards the API server")
	fs.BoolVar(&f.kubeAPICompression, "kube-api-compression", true, kubeAPICompressionHelp)
	fs.StringVar(&f.tlsCertFile, "tls-cert-file", "", "serve TLS with this certificate (PEM)")
	fs.StringVar(&f.tlsKeyFile, "tls-key-file", "", "private key of --tls-cert-file (PEM)")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":9090", "address of /metrics; \"0\" disables it")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "0", "address of Go's /debug/pprof endpoints, for profiling; \"0\" (the default) disables them")
	fs.BoolVar(&f.benchmarkFloor, "benchmark-floor", false, "for make bench only, never in production: also serve no-op endpoints under /debug/floor/ on the HTTP listener, whose answer any caller may set (the floor each request shape is measured against)")
	fs.IntVar(&f.gcPercent, "gc-percent", 200, "Go's garbage-collection target (as GOGC; the GOGC variable, when set, wins): collect when the heap reaches 1+N/100 times the live heap")
	f.zap.BindFlags(fs)
}

// setUp checks the flags, sets the logger up and returns the API server's config.
func (f *dataPlaneFlags) setUp() (*rest.Config, error) {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&f.zap)))
	limitMemory(ctrl.Log)
	if f.gcPercent < 25 {
		return nil, fmt.Errorf("--gc-percent must be at least 25 (a server that never collects runs out of memory)")
	}
	if f.benchmarkFloor {
		ctrl.Log.Info("WARNING: --benchmark-floor serves /debug/floor/, whose answer any caller may set: for make bench only, never in production")
	}
	if os.Getenv("GOGC") == "" {
		// The live heap of both servers is small (the index: ~0.5 KiB per API key)
		// and their garbage rate high (5 to 25 KB per request). Collecting at 3x
		// the live heap instead of Go's 2x raised ES256 tokens/s on one core by
		// ~15% in make bench, and halves the authorizer's collections, for heap
		// headroom that stays a few MiB per 10,000 keys.
		debug.SetGCPercent(f.gcPercent)
	}
	if (f.tlsCertFile == "") != (f.tlsKeyFile == "") {
		return nil, fmt.Errorf("--tls-cert-file and --tls-key-file go together")
	}
	return kubeConfig(f.kubeAPIQPS, f.kubeAPIBurst, f.kubeAPICompression)
}

// listen opens a listener on addr, or none for "0".
func listen(addr string) (net.Listener, error) {
	if addr == "0" {
		return nil, nil
	}
	return net.Listen("tcp", addr)
}
