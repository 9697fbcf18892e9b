package tokenserver

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// usageTracker records status.lastUsedAt in batches: requests only note the use in
// memory; a flush every FlushInterval patches each object at most once per
// MinInterval, so a busy key does not turn into a write storm.
type usageTracker struct {
	client        client.Client
	clock         clock.PassiveClock
	log           logr.Logger
	flushInterval time.Duration
	minInterval   time.Duration

	mu      sync.Mutex
	pending map[usageKey]time.Time // last use not yet written
	written map[usageKey]time.Time // when lastUsedAt was last written
}

type usageKey struct {
	kind string
	ref  objectRef
}

func newUsageTracker(c client.Client, clk clock.PassiveClock, log logr.Logger, flush, minInterval time.Duration) *usageTracker {
	return &usageTracker{
		client: c, clock: clk, log: log, flushInterval: flush, minInterval: minInterval,
		pending: map[usageKey]time.Time{}, written: map[usageKey]time.Time{},
	}
}

// Used is on the hot path: one map write under a mutex.
func (u *usageTracker) Used(kind string, ref objectRef) {
	now := u.clock.Now()
	u.mu.Lock()
	u.pending[usageKey{kind, ref}] = now
	u.mu.Unlock()
}

// Run flushes until ctx ends.
func (u *usageTracker) Run(ctx context.Context) {
	ticker := time.NewTicker(u.flushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			u.flush(ctx)
		}
	}
}

// flush writes the uses that are due and keeps the rest for a later flush.
func (u *usageTracker) flush(ctx context.Context) {
	now := u.clock.Now()
	due := map[usageKey]time.Time{}
	u.mu.Lock()
	for key, usedAt := range u.pending {
		if now.Sub(u.written[key]) >= u.minInterval {
			due[key] = usedAt
			u.written[key] = now
			delete(u.pending, key)
		}
	}
	for key, at := range u.written { // forget what can no longer hold anything back
		if now.Sub(at) >= u.minInterval {
			delete(u.written, key)
		}
	}
	u.mu.Unlock()

	for key, usedAt := range due {
		if err := u.patch(ctx, key, usedAt); err != nil {
			u.log.V(1).Info("recording last use failed", "kind", key.kind, "namespace", key.ref.Namespace, "name", key.ref.Name, "error", err.Error())
		}
	}
}

// patch merges status.lastUsedAt, with the UID as a precondition so that a
// recreated object of the same name is not touched.
func (u *usageTracker) patch(ctx context.Context, key usageKey, usedAt time.Time) error {
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": key.ref.UID},
		"status":   map[string]any{"lastUsedAt": metav1.NewTime(usedAt)},
	})
	if err != nil {
		return err
	}
	var obj client.Object = &latchkeyv1.APIKey{}
	if key.kind == kindOAuthClient {
		obj = &latchkeyv1.OAuthClient{}
	}
	obj.SetNamespace(key.ref.Namespace)
	obj.SetName(key.ref.Name)
	return client.IgnoreNotFound(u.client.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)))
}
