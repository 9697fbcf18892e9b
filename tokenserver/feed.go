package tokenserver

import (
	"context"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// The token server watches APIKeys and OAuthClients with client-go Reflectors that
// write straight into the Index: the index is the watch cache. An informer would
// keep every object a second time in its own store, which doubled the memory per
// API key (make bench: ~2.5 KiB per key with an informer, against a 2 KiB target),
// and the server never reads those objects back.

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
	synced  atomic.Bool
}

func (f *indexFeed[T]) Add(obj any) error {
	upsertTyped(obj, f.upsert)
	return nil
}

func (f *indexFeed[T]) Update(obj any) error { return f.Add(obj) }

func (f *indexFeed[T]) Delete(obj any) error {
	deleteTyped[T](obj, f.remove)
	return nil
}

func (f *indexFeed[T]) Replace(list []any, _ string) error {
	typed := make([]T, 0, len(list))
	for _, obj := range list {
		if o, ok := obj.(T); ok {
			typed = append(typed, o)
		}
	}
	f.replace(f.namespace, typed)
	f.synced.Store(true)
	return nil
}

func (f *indexFeed[T]) Resync() error { return nil }

// HasSynced reports whether the first list has reached the index.
func (f *indexFeed[T]) HasSynced() bool { return f.synced.Load() }

// startFeeds runs one Reflector per kind and namespace (or one per kind for all
// namespaces) into index. The returned function waits until each has listed once.
func startFeeds(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespaces []string, index *Index) (func(context.Context) bool, error) {
	restClient, err := latchkeyRESTClient(cfg, scheme)
	if err != nil {
		return nil, err
	}
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	var synced []func() bool
	for _, ns := range namespaces {
		keys := &indexFeed[*latchkeyv1.APIKey]{namespace: ns,
			upsert: index.upsertAPIKey, remove: index.deleteAPIKey, replace: index.replaceAPIKeys}
		clients := &indexFeed[*latchkeyv1.OAuthClient]{namespace: ns,
			upsert: index.upsertClient, remove: index.deleteClient, replace: index.replaceClients}
		for resource, feed := range map[string]struct {
			store interface {
				toolscache.ReflectorStore
				HasSynced() bool
			}
			expected runtime.Object
		}{
			"apikeys":      {keys, &latchkeyv1.APIKey{}},
			"oauthclients": {clients, &latchkeyv1.OAuthClient{}},
		} {
			lw := toolscache.NewListWatchFromClient(restClient, resource, ns, fields.Everything())
			r := toolscache.NewReflectorWithOptions(lw, feed.expected, feed.store, toolscache.ReflectorOptions{Name: resource})
			go r.RunWithContext(ctx)
			synced = append(synced, feed.store.HasSynced)
		}
	}
	return func(ctx context.Context) bool {
		for _, hasSynced := range synced {
			if !waitFor(ctx, hasSynced) {
				return false
			}
		}
		return true
	}, nil
}

// latchkeyRESTClient is a REST client for latchkey.dev/v1alpha1 that decodes into typed objects.
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
