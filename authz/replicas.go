package authz

import (
	"context"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/latchkey-dev/latchkey/internal/ratelimit"
)

// watchReplicas keeps limits' replica count at the number of ready endpoints of
// Service service in namespace (its EndpointSlices, as kube-proxy sees them):
// every replica enforces its share of each limit. It watches the slices of that
// one Service only, names and conditions, never their pods.
func watchReplicas(ctx context.Context, cs kubernetes.Interface, namespace, service string, limits *ratelimit.Limiter) toolscache.SharedIndexInformer {
	selector := discoveryv1.LabelServiceName + "=" + service
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return cs.DiscoveryV1().EndpointSlices(namespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return cs.DiscoveryV1().EndpointSlices(namespace).Watch(ctx, o)
		},
	}
	informer := toolscache.NewSharedIndexInformer(lw, &discoveryv1.EndpointSlice{}, 10*time.Minute, toolscache.Indexers{})
	recount := func(any) { limits.SetReplicas(readyEndpoints(informer.GetStore().List())) }
	_, _ = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: recount, UpdateFunc: func(_, o any) { recount(o) }, DeleteFunc: recount,
	})
	go informer.RunWithContext(ctx)
	return informer
}

// readyEndpoints counts the ready endpoints of slices, each once: an endpoint may
// be in two slices while they are rebalanced (counted by its target's UID, else
// its first address), and in one slice per address family on a dual-stack
// Service (the families are counted apart, and the largest count wins).
func readyEndpoints(slices []any) int {
	seen := map[discoveryv1.AddressType]map[string]bool{}
	most := 0
	for _, o := range slices {
		slice, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		family := seen[slice.AddressType]
		if family == nil {
			family = map[string]bool{}
			seen[slice.AddressType] = family
		}
		for _, e := range slice.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			id := ""
			if e.TargetRef != nil && e.TargetRef.UID != "" {
				id = string(e.TargetRef.UID)
			} else if len(e.Addresses) > 0 {
				id = e.Addresses[0]
			}
			if id != "" {
				family[id] = true
			}
		}
		most = max(most, len(family))
	}
	return most
}
