// Package watchfeed feeds the index (package index) from the API server: one
// client-go Reflector per kind (APIKeys, OAuthClients, APIs, OAuthGrants) and
// namespace, writing straight into the Index, which is the watch cache. It lists
// with one plain LIST decoded as it arrives, decodes only what the index reads
// (cached.go), and reports how stale each kind may be.
package watchfeed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	kjson "sigs.k8s.io/json"

	"github.com/prometheus/client_golang/prometheus"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
)

// The token server watches APIKeys and OAuthClients with client-go Reflectors that
// write straight into the Index: the index is the watch cache. An informer would
// keep every object a second time in its own store, which doubled the memory per
// API key (make bench: ~2.5 KiB per key with an informer, against a 2 KiB target),
// and the server never reads those objects back. The objects are decoded into the
// slim types of cached.go.

// indexFeed is what a Reflector writes to (cache.ReflectorStore), for one kind in
// one namespace ("" for all).
type indexFeed[T interface {
	runtime.Object
	GetNamespace() string
	GetUID() types.UID
}] struct {
	namespace string
	upsert    func(T)
	remove    func(types.UID)
	// replace makes the objects of namespace exactly list (a relist).
	replace func(namespace string, list []T)
	// seenAt, when set, hears the resourceVersion the feed has delivered up to:
	// its list's, then each event's and bookmark's, once the index holds what
	// came with it (the Reflector calls it after Add, Update or Delete).
	seenAt func(namespace, resourceVersion string)
	synced atomic.Bool
	// lastHeard is when the API server last told this feed anything (a list, an
	// event, a bookmark), in Unix nanoseconds: how stale the cache may be.
	lastHeard atomic.Int64
	clock     clock.PassiveClock
}

func (f *indexFeed[T]) heard() { f.lastHeard.Store(f.clock.Now().UnixNano()) }

func (f *indexFeed[T]) Add(obj any) error {
	f.heard()
	if typed, ok := obj.(T); ok {
		f.upsert(typed)
	}
	return nil
}

func (f *indexFeed[T]) Update(obj any) error { return f.Add(obj) }

// Delete drops a deleted object. A Reflector hands over the object itself
// (informers' DeletedFinalStateUnknown tombstones do not occur: a relist goes
// through Replace).
func (f *indexFeed[T]) Delete(obj any) error {
	f.heard()
	if typed, ok := obj.(T); ok {
		f.remove(typed.GetUID())
	}
	return nil
}

func (f *indexFeed[T]) Replace(list []any, resourceVersion string) error {
	typed := make([]T, 0, len(list))
	for _, obj := range list {
		if o, ok := obj.(T); ok {
			typed = append(typed, o)
		}
	}
	f.replace(f.namespace, typed)
	f.reached(resourceVersion)
	f.heard()
	f.synced.Store(true)
	return nil
}

func (f *indexFeed[T]) Resync() error { return nil }

// UpdateResourceVersion is called on every watch event, bookmarks included
// (cache.ResourceVersionUpdater): a bookmark proves the watch is alive.
func (f *indexFeed[T]) UpdateResourceVersion(resourceVersion string) {
	f.reached(resourceVersion)
	f.heard()
}

func (f *indexFeed[T]) reached(resourceVersion string) {
	if f.seenAt != nil && resourceVersion != "" {
		f.seenAt(f.namespace, resourceVersion)
	}
}

// HasSynced reports whether the first list has reached the index.
func (f *indexFeed[T]) HasSynced() bool { return f.synced.Load() }

// staleness is how long ago the API server last told this feed anything.
func (f *indexFeed[T]) staleness() time.Duration {
	return f.clock.Since(time.Unix(0, f.lastHeard.Load()))
}

// feedStore is a feed of either kind.
type feedStore interface {
	toolscache.ReflectorStore
	HasSynced() bool
	staleness() time.Duration
}

// Feeds are the running Reflectors' stores.
type Feeds struct {
	byResource map[string][]feedStore // "apikeys", "oauthclients"
}

// Staleness is the longest time since any feed of resource heard from the API
// server: the bound on how out of date answers about that resource may be.
func (fs *Feeds) Staleness(resource string) time.Duration {
	var worst time.Duration
	for _, f := range fs.byResource[resource] {
		worst = max(worst, f.staleness())
	}
	return worst
}

// watchBackoff replaces client-go's (0.8 s doubling to 30 s): after an API server
// outage the feeds retry at least every second, so that a revocation made once
// it is back reaches the index within about a second, not half a minute later.
// Each retry is one cheap request per feed.
var watchBackoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: time.Second}

// Start runs one Reflector per kind and namespace (or one per kind for all
// namespaces) into index.
func Start(ctx context.Context, cfg *rest.Config, namespaces []string, index *index.Index, clk clock.PassiveClock) (*Feeds, error) {
	restClient, err := latchkeyRESTClient(cfg, cacheScheme())
	if err != nil {
		return nil, err
	}
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	fs := &Feeds{byResource: map[string][]feedStore{}}
	for _, ns := range namespaces {
		keys := &indexFeed[*cachedAPIKey]{namespace: ns, clock: clk,
			upsert:  func(k *cachedAPIKey) { index.UpsertAPIKey(k.apiKey()) },
			remove:  index.DeleteAPIKey,
			replace: func(ns string, list []*cachedAPIKey) { index.ReplaceAPIKeys(ns, convert(list, (*cachedAPIKey).apiKey)) }}
		clients := &indexFeed[*cachedOAuthClient]{namespace: ns, clock: clk,
			upsert: func(c *cachedOAuthClient) { index.UpsertClient(c.oauthClient()) },
			remove: index.DeleteClient,
			replace: func(ns string, list []*cachedOAuthClient) {
				index.ReplaceClients(ns, convert(list, (*cachedOAuthClient).oauthClient))
			}}
		apis := &indexFeed[*cachedAPI]{namespace: ns, clock: clk,
			upsert:  func(a *cachedAPI) { index.UpsertAPI(a.api()) },
			remove:  index.DeleteAPI,
			replace: func(ns string, list []*cachedAPI) { index.ReplaceAPIs(ns, convert(list, (*cachedAPI).api)) }}
		grants := grantFeed(ns, clk, index)
		keys.heard()
		clients.heard()
		apis.heard()
		grants.heard()
		watches := func(resource string) *toolscache.ListWatch {
			return toolscache.NewListWatchFromClient(restClient, resource, ns, fields.Everything())
		}
		for resource, feed := range map[string]struct {
			store    feedStore
			expected runtime.Object
			lw       toolscache.ListerWatcher
		}{
			"apikeys": {keys, &cachedAPIKey{}, listWatch[cachedAPIKey, *cachedAPIKey]{
				ListWatch: watches("apikeys"), client: restClient, resource: "apikeys", namespace: ns}},
			"oauthclients": {clients, &cachedOAuthClient{}, listWatch[cachedOAuthClient, *cachedOAuthClient]{
				ListWatch: watches("oauthclients"), client: restClient, resource: "oauthclients", namespace: ns}},
			"apis": {apis, &cachedAPI{}, listWatch[cachedAPI, *cachedAPI]{
				ListWatch: watches("apis"), client: restClient, resource: "apis", namespace: ns}},
			"oauthgrants": {grants, &cachedOAuthGrant{}, listWatch[cachedOAuthGrant, *cachedOAuthGrant]{
				ListWatch: watches("oauthgrants"), client: restClient, resource: "oauthgrants", namespace: ns}},
		} {
			r := toolscache.NewReflectorWithOptions(feed.lw, feed.expected, feed.store,
				toolscache.ReflectorOptions{Name: resource, Backoff: &watchBackoff})
			go r.RunWithContext(ctx)
			fs.byResource[resource] = append(fs.byResource[resource], feed.store)
		}
	}
	return fs, nil
}

// grantFeed feeds the OAuthGrants of ns into index, and tells it how far it has
// delivered them: a token is accepted before its grant arrives (index.AcceptToken).
func grantFeed(ns string, clk clock.PassiveClock, index *index.Index) *indexFeed[*cachedOAuthGrant] {
	return &indexFeed[*cachedOAuthGrant]{namespace: ns, clock: clk,
		upsert: func(g *cachedOAuthGrant) { index.UpsertGrant(g.grant()) },
		remove: index.DeleteGrant,
		seenAt: index.GrantsSeenAt,
		replace: func(ns string, list []*cachedOAuthGrant) {
			index.ReplaceGrants(ns, convert(list, (*cachedOAuthGrant).grant))
		}}
}

func convert[From, To any](list []From, f func(From) To) []To {
	out := make([]To, len(list))
	for i, v := range list {
		out[i] = f(v)
	}
	return out
}

// listWatch lists with one plain LIST served from the API server's watch cache
// rather than client-go's default "watch list" stream: with 20,000 APIKeys the
// stream took 2.6–3.1 s to sync and the LIST 1.7–1.9 s (same run, same machine).
// The LIST response is decoded as it arrives (streamList), so decoding overlaps
// the transfer and the process never holds the whole response body (~1.5 KB per
// APIKey, 150 MB at 100,000). The list it returns is a cachedList of T.
type listWatch[T any, P cachedObject[T]] struct {
	*toolscache.ListWatch
	client    rest.Interface
	resource  string
	namespace string
}

// IsWatchListSemanticsUnSupported tells the Reflector not to use the stream.
func (listWatch[T, P]) IsWatchListSemanticsUnSupported() bool { return true }

func (lw listWatch[T, P]) List(opts metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), opts)
}

func (lw listWatch[T, P]) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	body, err := lw.client.Get().Namespace(lw.namespace).Resource(lw.resource).
		VersionedParams(&opts, metav1.ParameterCodec).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	listMeta, items, err := streamList[T](body)
	if err != nil {
		return nil, fmt.Errorf("decoding the list of %s: %w", lw.resource, err)
	}
	return &cachedList[T, P]{ListMeta: listMeta, Items: items}, nil
}

// streamList decodes a Kubernetes list response, {"metadata": ..., "items": [...],
// ...}, one item at a time, with the API machinery's JSON rules (case-sensitive
// field names).
func streamList[T any](r io.Reader) (metav1.ListMeta, []T, error) {
	var listMeta metav1.ListMeta
	var items []T
	dec := kjson.NewDecoderCaseSensitivePreserveInts(r)
	if err := expectDelim(dec, '{'); err != nil {
		return listMeta, nil, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return listMeta, nil, err
		}
		switch tok {
		case "metadata":
			err = dec.Decode(&listMeta)
		case "items":
			if err = expectDelim(dec, '['); err != nil {
				return listMeta, nil, err
			}
			for dec.More() {
				items = append(items, *new(T))
				if err = dec.Decode(&items[len(items)-1]); err != nil {
					return listMeta, nil, err
				}
			}
			err = expectDelim(dec, ']')
		default: // kind, apiVersion
			var skip skipped
			err = dec.Decode(&skip)
		}
		if err != nil {
			return listMeta, nil, err
		}
	}
	return listMeta, items, expectDelim(dec, '}')
}

func expectDelim(dec kjson.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("unexpected %v, want %v", tok, want)
	}
	return nil
}

// latchkeyRESTClient is a REST client for latchkey.dev/v1alpha1 that decodes with scheme.
func latchkeyRESTClient(cfg *rest.Config, scheme *runtime.Scheme) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &latchkeyv1.GroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientFor(c)
}

// RegisterStaleness exposes how stale each watch cache may be: the seconds since
// the API server last sent it a list, an event or a bookmark (bookmarks come about
// once a minute on a quiet cluster). During an API server outage it grows while the
// server keeps answering from the cache.
// component names the process in the metric: latchkey_<component>_cache_staleness_seconds.
func (fs *Feeds) RegisterStaleness(reg prometheus.Registerer, component string) {
	for resource := range fs.byResource {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "latchkey_" + component + "_cache_staleness_seconds",
			Help:        "Seconds since the API server last sent this watch cache a list, an event or a bookmark.",
			ConstLabels: prometheus.Labels{"resource": resource},
		}, func() float64 { return fs.Staleness(resource).Seconds() }))
	}
}

// HasSynced reports whether every feed has listed once.
func (fs *Feeds) HasSynced() bool {
	for _, list := range fs.byResource {
		for _, f := range list {
			if !f.HasSynced() {
				return false
			}
		}
	}
	return true
}
