package index

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// ReaderOptions are what every process answering from the index (the token server,
// the authorizer) configures alike.
type ReaderOptions struct {
	// Component names the process in metrics: latchkey_<component>_....
	Component string
	// Namespaces to watch; empty means all.
	Namespaces []string
	// LastUsedFlushInterval is how often uses are written; LastUsedGranularity what
	// status.lastUsedAt is truncated to (at least MinLastUsedGranularity).
	LastUsedFlushInterval, LastUsedGranularity time.Duration
	Clock                                      clock.PassiveClock // real time when nil
	Log                                        logr.Logger
	// Registry receives the metrics; a new one with Go and process collectors when nil.
	Registry *prometheus.Registry
}

// Reader is a running index: fed by watches, recording last use within its write
// budget, with a clientset for the process's other reads.
type Reader struct {
	Index     *Index
	Feeds     *Feeds
	Usage     *UsageTracker
	Clientset kubernetes.Interface
	// Writer is an uncached client of latchkey.dev's kinds, for the process's writes.
	Writer   client.Client
	Clock    clock.PassiveClock
	Registry *prometheus.Registry
}

// StartReader starts the feeds and the last-use tracker until ctx ends.
func StartReader(ctx context.Context, cfg *rest.Config, o ReaderOptions) (*Reader, error) {
	if o.LastUsedGranularity < MinLastUsedGranularity {
		return nil, fmt.Errorf("the last-use granularity must be at least %s, not %s", MinLastUsedGranularity, o.LastUsedGranularity)
	}
	r := &Reader{Clock: o.Clock, Registry: o.Registry}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Registry == nil {
		r.Registry = prometheus.NewRegistry()
		r.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	scheme := runtime.NewScheme()
	if err := latchkeyv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	writer, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	r.Writer = writer
	if r.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	r.Index = NewIndex(o.Log.WithName("index"))
	r.Usage = NewUsageTracker(writer, r.Index, r.Clock, o.Log, o.LastUsedFlushInterval, o.LastUsedGranularity, r.Registry, o.Component)
	if r.Feeds, err = StartFeeds(ctx, cfg, o.Namespaces, r.Index, r.Clock); err != nil {
		return nil, err
	}
	r.Feeds.RegisterStaleness(r.Registry, o.Component)
	go r.Usage.Run(ctx)
	return r, nil
}
