package tokenserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/latchkey-dev/latchkey/internal/flowcontrol"
	"github.com/latchkey-dev/latchkey/internal/serve"
	"github.com/latchkey-dev/latchkey/tokenserver/leaks"
	"github.com/latchkey-dev/latchkey/tokenserver/thirdparty"
)

// Options configure a running token server (the flags of `latchkey tokenserver`).
type Options struct {
	Config
	// Listener serves the OAuth endpoints and the probes; MetricsListener /metrics and
	// PprofListener Go's /debug/pprof (either may be nil).
	Listener, MetricsListener, PprofListener net.Listener
	// BenchmarkFloor serves make bench's no-op endpoints (serve.FloorPath); never in production.
	BenchmarkFloor bool
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
	Upstream             *thirdparty.UpstreamConfig
	UpstreamSecretName   string
	UpstreamRevalidation time.Duration
	SignInsPerMinute     int
	// LeakReports configures the secret-scanning reporters (leaks.Options); the
	// self-revocation endpoint is always served.
	LeakReports leaks.Options
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
	caches, err := serve.StartCaches(ctx, restConfig, serve.CacheOptions{
		Component: "tokenserver", Namespaces: o.Namespaces, LastUsedFlushInterval: o.LastUsedFlushInterval,
		LastUsedGranularity: o.LastUsedGranularity, Clock: o.Clock, Log: o.Log, Registry: o.Registry,
	})
	if err != nil {
		return err
	}
	o.Clock, o.Registry = caches.Clock, caches.Registry
	idx, keys := caches.Index, &Keys{alg: o.SigningAlgorithm}
	srv, err := NewServer(o.Config, idx, keys, o.Clock, o.Log, o.Registry, caches.LastUsed)
	if err != nil {
		return err
	}
	synced := []toolscache.InformerSynced{caches.Feeds.HasSynced}
	// Leak records are written by a client of their own: a flood of reports of live
	// keys (which only their holder can send) waits behind nothing else.
	leakWriter, err := client.New(rest.CopyConfig(restConfig), client.Options{Scheme: caches.Writer.Scheme()})
	if err != nil {
		return err
	}
	if err := srv.EnableLeakReports(ctx, o.LeakReports, leakWriter); err != nil {
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
		requestWriter, err := client.New(rest.CopyConfig(restConfig), client.Options{Scheme: caches.Writer.Scheme()})
		if err != nil {
			return err
		}
		clientset, ns, name := caches.Clientset, o.SigningKeyNamespace, o.UpstreamSecretName
		err = srv.EnableThirdPartyApps(ctx, thirdparty.Options{
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
		synced = append(synced, srv.thirdParty.WorkspacesSynced)
	}
	keyInformer := watchSigningKeys(ctx, caches.Clientset, o.SigningKeyNamespace, o.SigningKeySecret, keys, func(err error) {
		o.Log.Error(err, "signing keys not loaded; keeping the previous ones")
	})
	srv.readiness.WhenSynced(ctx, func() {
		stopProfile()
		// The initial lists are garbage once the index is built; hand their
		// memory back now rather than at the runtime's forced GC minutes later.
		debug.FreeOSMemory()
		hashes, clients := idx.Sizes()
		o.Log.Info("caches synced", "apiKeyHashes", hashes, "oauthClients", clients)
	}, append(synced, keyInformer.HasSynced)...)
	go srv.scheduler.run(ctx)
	listener := o.Listener
	if perSource := srv.cfg.MaxConnectionsPerSource; perSource > 0 {
		listener = flowcontrol.LimitBySource(listener, perSource, maxHeldConnections, maxHeldWait, srv.trusted)
	}
	return serve.Run(ctx, serve.Config{
		HTTP:        []serve.HTTP{{Listener: listener, Handler: srv.Handler()}},
		TLSCertFile: o.TLSCertFile, TLSKeyFile: o.TLSKeyFile,
		Metrics: o.MetricsListener, Registry: o.Registry, Pprof: o.PprofListener,
		Floor: o.BenchmarkFloor, Readiness: srv.readiness,
	})
}

// Connections held unread beyond MaxConnectionsPerSource: at most this many, this long.
const (
	maxHeldConnections = 10000
	maxHeldWait        = 10 * time.Second
)

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
