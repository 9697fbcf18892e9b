package tokenserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/internal/index"
)

// Options configure a running token server (the flags of `latchkey tokenserver`).
type Options struct {
	Config
	// Listener serves the OAuth endpoints and the probes; MetricsListener /metrics and
	// PprofListener Go's /debug/pprof (either may be nil).
	Listener, MetricsListener, PprofListener net.Listener
	// TLSCertFile and TLSKeyFile turn on TLS on Listener.
	TLSCertFile, TLSKeyFile string
	// Namespaces to watch; empty means all.
	Namespaces []string
	// SigningKeyNamespace and SigningKeySecret locate the signing keys.
	SigningKeyNamespace, SigningKeySecret string
	// LastUsedFlushInterval is how often uses are written; LastUsedGranularity what
	// status.lastUsedAt is truncated to (at least index.MinLastUsedGranularity): at most one
	// write per object per granularity, whatever the replica count.
	LastUsedFlushInterval, LastUsedGranularity time.Duration
	// Upstream, when set, turns on third-party apps (authorization_code), signing
	// users in there. UpstreamSecretName names the Secret, in SigningKeyNamespace,
	// whose key "client-secret" holds its client secret. UpstreamRevalidation is
	// how often, at most, a refresh asks the provider whether the user is still
	// who signed in (ThirdPartyOptions).
	Upstream             *UpstreamConfig
	UpstreamSecretName   string
	UpstreamRevalidation time.Duration
	SignInsPerMinute     int
	// StartupCPUProfile, when set, is a file that receives a CPU profile of the start,
	// until the caches are synced.
	StartupCPUProfile string
	Clock             clock.PassiveClock
	Log               logr.Logger
	// Registry receives the metrics; a new one when nil.
	Registry *prometheus.Registry
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, restConfig *rest.Config, o Options) error {
	stopProfile, err := startCPUProfile(o.StartupCPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reader, err := index.StartReader(ctx, restConfig, index.ReaderOptions{
		Component: "tokenserver", Namespaces: o.Namespaces, LastUsedFlushInterval: o.LastUsedFlushInterval,
		LastUsedGranularity: o.LastUsedGranularity, Clock: o.Clock, Log: o.Log, Registry: o.Registry,
	})
	if err != nil {
		return err
	}
	o.Clock, o.Registry = reader.Clock, reader.Registry
	idx, keys := reader.Index, &Keys{alg: o.SigningAlgorithm}
	srv, err := NewServer(o.Config, idx, keys, o.Clock, o.Log, o.Registry, reader.Usage)
	if err != nil {
		return err
	}
	if o.Upstream != nil {
		// The calls made on behalf of requests (grants, reviews, workspaces) have
		// clients of their own, whose client-side rate limit nothing else shares:
		// neither the watches nor the last-use writes wait behind a sign-in, nor
		// those behind the last-use writes.
		requestClientset, err := kubernetes.NewForConfig(rest.CopyConfig(restConfig))
		if err != nil {
			return err
		}
		requestWriter, err := client.New(rest.CopyConfig(restConfig), client.Options{Scheme: reader.Writer.Scheme()})
		if err != nil {
			return err
		}
		clientset, ns, name := reader.Clientset, o.SigningKeyNamespace, o.UpstreamSecretName
		err = srv.EnableThirdPartyApps(ctx, ThirdPartyOptions{
			Upstream: *o.Upstream, Clientset: requestClientset, Writer: requestWriter,
			UpstreamRevalidation: o.UpstreamRevalidation, SignInsPerMinute: o.SignInsPerMinute,
			LoadClientSecret: func(ctx context.Context) (string, error) {
				secret, err := clientset.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return "", fmt.Errorf("reading the upstream client secret from Secret %s/%s: %w", ns, name, err)
				}
				value := strings.TrimSpace(string(secret.Data[UpstreamSecretKey]))
				if value == "" {
					return "", fmt.Errorf("Secret %s/%s has no %q key", ns, name, UpstreamSecretKey)
				}
				return value, nil
			},
		})
		if err != nil {
			return err
		}
	}
	keyInformer := watchSigningKeys(ctx, reader.Clientset, o.SigningKeyNamespace, o.SigningKeySecret, keys, func(err error) {
		o.Log.Error(err, "signing keys not loaded; keeping the previous ones")
	})
	go func() {
		synced := []toolscache.InformerSynced{keyInformer.HasSynced}
		if srv.thirdParty != nil {
			synced = append(synced, srv.thirdParty.workspacesSynced)
		}
		if reader.Feeds.WaitSynced(ctx) && toolscache.WaitForCacheSync(ctx.Done(), synced...) {
			stopProfile()
			// The initial lists are garbage once the index is built; hand their
			// memory back now rather than at the runtime's forced GC minutes later.
			debug.FreeOSMemory()
			srv.SetSynced()
			hashes, clients := idx.Sizes()
			o.Log.Info("caches synced", "apiKeyHashes", hashes, "oauthClients", clients)
		}
	}()
	go srv.scheduler.run(ctx)
	return serveAll(ctx, srv, o)
}

// UpstreamSecretKey is the data key of the Secret with the upstream client secret.
const UpstreamSecretKey = "client-secret"

// startCPUProfile profiles into path until the returned function is first called
// (no-op without a path).
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}

// newHTTPServer is every listener's server: bounded reads, writes and idle time, so
// that slow or idle connections cannot pile up (on the metrics and pprof listeners
// as much as on the API one). writeTimeout is the longest a response may take.
func newHTTPServer(handler http.Handler, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// pprofWriteTimeout leaves room for a 30-second CPU profile or trace (pprof's default).
const pprofWriteTimeout = 45 * time.Second

// Connections held unread beyond MaxConnectionsPerSource: at most this many, this long.
const (
	maxHeldConnections = 10000
	maxHeldWait        = 10 * time.Second
)

// serveAll runs the API listener (and the metrics and pprof ones, if any) until ctx ends.
func serveAll(ctx context.Context, srv *Server, o Options) error {
	if perSource := srv.cfg.MaxConnectionsPerSource; perSource > 0 {
		o.Listener = flowcontrol.LimitBySource(o.Listener, perSource, maxHeldConnections, maxHeldWait, srv.trusted)
	}
	api := newHTTPServer(srv.Handler(), 10*time.Second)
	errs := make(chan error, 2)
	go func() {
		errs <- serve(ctx, api, func() error {
			if o.TLSCertFile != "" {
				api.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				return api.ServeTLS(o.Listener, o.TLSCertFile, o.TLSKeyFile)
			}
			return api.Serve(o.Listener)
		})
	}()
	running := 1
	if o.MetricsListener != nil {
		running++
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}))
		metricsSrv := newHTTPServer(mux, 10*time.Second)
		go func() { errs <- serve(ctx, metricsSrv, func() error { return metricsSrv.Serve(o.MetricsListener) }) }()
	}
	if o.PprofListener != nil {
		running++
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
		pprofSrv := newHTTPServer(mux, pprofWriteTimeout)
		go func() { errs <- serve(ctx, pprofSrv, func() error { return pprofSrv.Serve(o.PprofListener) }) }()
	}
	var all []error
	for range running {
		if err := <-errs; err != nil && !errors.Is(err, http.ErrServerClosed) {
			all = append(all, err)
		}
	}
	if len(all) > 0 {
		return fmt.Errorf("serving: %w", errors.Join(all...))
	}
	return nil
}
