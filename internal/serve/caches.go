package serve

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
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/lastused"
	"github.com/latchkey-dev/latchkey/internal/watchfeed"
)

// CacheOptions are what every process answering from the index (the token
// server, the authorizer) configures alike.
type CacheOptions struct {
	// Component names the process in metrics: latchkey_<component>_....
	Component string
	// Namespaces to watch; empty means all.
	Namespaces []string
	// LastUsedFlushInterval is how often uses are written; LastUsedGranularity what
	// status.lastUsedAt is truncated to (at least lastused.MinGranularity).
	LastUsedFlushInterval, LastUsedGranularity time.Duration
	Clock                                      clock.PassiveClock // real time when nil
	Log                                        logr.Logger
	// Registry receives the metrics; a new one with Go and process collectors when nil.
	Registry *prometheus.Registry
}

// Caches are a data-plane process's view of the cluster: the index, fed by
// watches, the recorder of last use, and the clients for its other reads and writes.
type Caches struct {
	Index    *index.Index
	Feeds    *watchfeed.Feeds
	LastUsed *lastused.Tracker
	// Clientset is for the process's other reads (a Secret, a ConfigMap).
	Clientset kubernetes.Interface
	// Writer is an uncached client of latchkey.dev's kinds.
	Writer   client.Client
	Clock    clock.PassiveClock
	Registry *prometheus.Registry
}

// StartCaches starts the feeds and the last-use tracker until ctx ends.
func StartCaches(ctx context.Context, cfg *rest.Config, o CacheOptions) (*Caches, error) {
	if o.LastUsedGranularity < lastused.MinGranularity {
		return nil, fmt.Errorf("the last-use granularity must be at least %s, not %s", lastused.MinGranularity, o.LastUsedGranularity)
	}
	c := &Caches{Clock: o.Clock, Registry: o.Registry}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
		c.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	scheme := runtime.NewScheme()
	if err := latchkeyv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	writer, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	c.Writer = writer
	if c.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	c.Index = index.NewIndex(o.Log.WithName("index"))
	c.LastUsed = lastused.New(writer, c.Index, c.Clock, o.Log, o.LastUsedFlushInterval, o.LastUsedGranularity, c.Registry, o.Component)
	if c.Feeds, err = watchfeed.Start(ctx, cfg, o.Namespaces, c.Index, c.Clock); err != nil {
		return nil, err
	}
	c.Feeds.RegisterStaleness(c.Registry, o.Component)
	go c.LastUsed.Run(ctx)
	return c, nil
}
