// Package lastused records when credentials were last used, in their
// status.lastUsedAt, within a write budget: requests note a use in memory, and a
// flush writes at most one patch per object per granularity, whatever the number
// of uses or of replicas. The token server and the authorizer share it.
package lastused

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/index"
)

// MinGranularity is the finest last-use granularity allowed: at 100,000
// active keys even one write per key per minute is ~1,700 writes/s to etcd.
const MinGranularity = time.Minute

// Tracker records status.lastUsedAt within a write budget. Requests only note
// the use in memory. Every FlushInterval the uses are truncated to Granularity, and
// an object is patched only when its truncated last use is later than what the watch
// cache already holds: at most one write per object per granularity bucket. Every
// replica truncates the same way, so when two replicas write the same bucket before
// either sees the other's write, the second patch changes nothing and the API
// server stores nothing (no etcd revision, no watch event).
type Tracker struct {
	client        client.Client
	cache         Cache
	clock         clock.PassiveClock
	log           logr.Logger
	flushInterval time.Duration
	granularity   time.Duration

	mu      sync.Mutex
	pending map[usageKey]time.Time // latest use not yet flushed
	// period counts the flushes that took pending (under mu; read without it by
	// Used's fast path).
	period atomic.Uint64
	// written is the bucket this replica last wrote per object, until the watch
	// cache catches up with it (kept for the current bucket only).
	written map[usageKey]time.Time
	// flushing counts the uses taken by the flush under way and not yet handled.
	flushing atomic.Int64

	writes, skipped *prometheus.CounterVec
}

// Cache is what the watch cache knows of last use (the Index).
type Cache interface {
	LastUsed(kind string, uid types.UID) time.Time
}

type usageKey struct {
	kind string
	ref  index.Ref
}

// New records uses through c; its metrics are named after component
// (latchkey_<component>_last_used_writes_total, ...).
func New(c client.Client, cache Cache, clk clock.PassiveClock, log logr.Logger, flush, granularity time.Duration, reg prometheus.Registerer, component string) *Tracker {
	u := &Tracker{
		client: c, cache: cache, clock: clk, log: log, flushInterval: flush, granularity: granularity,
		pending: map[usageKey]time.Time{}, written: map[usageKey]time.Time{},
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_" + component + "_last_used_writes_total",
			Help: "status.lastUsedAt patches sent to the API server.",
		}, []string{"kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_" + component + "_last_used_skipped_total",
			Help: "Objects used but not written because their last use already covered the bucket.",
		}, []string{"kind"}),
	}
	reg.MustRegister(u.writes, u.skipped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "latchkey_" + component + "_last_used_pending",
		Help: "Objects used whose use is not yet written or skipped (it grows while the API server is unreachable).",
	}, func() float64 {
		u.mu.Lock()
		defer u.mu.Unlock()
		return float64(len(u.pending) + int(u.flushing.Load()))
	}))
	return u
}

// Used is on the hot path. noted is the credential's index entry's memory of
// its last noted use (index.Key.UseNoted; nil: none): a use in the same flush
// period and the same bucket as the one noted there changes nothing a flush
// would write, and costs an atomic load instead of a map write under a mutex.
// now is the request's time, read once by its server: a request that did I/O
// may report it after a later request did, so the later use stays pending.
func (u *Tracker) Used(kind string, ref index.Ref, noted *atomic.Uint64, now time.Time) {
	bucket := uint64(now.Truncate(u.granularity).UnixMilli()) & (1<<42 - 1)
	if noted != nil && noted.Load() == u.period.Load()<<42|bucket {
		return
	}
	key := usageKey{kind, ref}
	u.mu.Lock()
	later, ok := u.pending[key]
	if ok && !later.Before(now) {
		u.mu.Unlock()
		return
	}
	u.pending[key] = now
	mark := u.period.Load()<<42 | bucket // under mu: the period this use is pending in
	u.mu.Unlock()
	if noted != nil {
		noted.Store(mark)
	}
}

// Run flushes until ctx ends.
func (u *Tracker) Run(ctx context.Context) {
	wait.UntilWithContext(ctx, u.flush, u.flushInterval)
}

// flush writes the uses whose bucket is not recorded yet.
func (u *Tracker) flush(ctx context.Context) {
	current := u.clock.Now().Truncate(u.granularity)
	u.mu.Lock()
	pending := u.pending
	u.pending = map[usageKey]time.Time{}
	u.period.Add(1) // a use noted before this is in pending: the next one is noted anew
	u.flushing.Store(int64(len(pending)))
	for key, bucket := range u.written { // older buckets can no longer hold a write back
		if bucket.Before(current) {
			delete(u.written, key)
		}
	}
	u.mu.Unlock()

	// Once the API server is unreachable, the rest waits for the next flush rather
	// than each failing in turn.
	reachable := true
	for key, usedAt := range pending {
		if reachable {
			reachable = u.record(ctx, key, usedAt)
		} else {
			u.requeue(key, usedAt)
		}
		u.flushing.Add(-1)
	}
}

// requeue keeps a use that was not written for the next flush, unless a later one
// has been noted since.
func (u *Tracker) requeue(key usageKey, usedAt time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if later, ok := u.pending[key]; !ok || later.Before(usedAt) {
		u.pending[key] = usedAt
	}
}

// record writes one object's last use if its bucket is not recorded yet. It
// reports false when the API server could not be reached (the use is kept).
func (u *Tracker) record(ctx context.Context, key usageKey, usedAt time.Time) bool {
	bucket := usedAt.Truncate(u.granularity)
	u.mu.Lock()
	done := !u.written[key].Before(bucket)
	u.mu.Unlock()
	if done || !u.cache.LastUsed(key.kind, key.ref.UID).Before(bucket) {
		u.skipped.WithLabelValues(kindLabel(key.kind)).Inc()
		return true
	}
	u.writes.WithLabelValues(kindLabel(key.kind)).Inc()
	if err := u.patch(ctx, key, bucket); err != nil {
		// The API server may be down: keep the use for the next flush, unless a
		// later one has been noted since.
		u.log.V(1).Info("recording last use failed; will retry", "kind", key.kind, "namespace", key.ref.Namespace, "name", key.ref.Name, "error", err.Error())
		u.requeue(key, usedAt)
		var status apierrors.APIStatus
		return errors.As(err, &status) // an answer, even an error, means the API server is there
	}
	u.mu.Lock()
	u.written[key] = bucket
	u.mu.Unlock()
	return true
}

// patch merges status.lastUsedAt, with the UID as a precondition so that a
// recreated object of the same name is not touched. A gone object is not an error.
func (u *Tracker) patch(ctx context.Context, key usageKey, bucket time.Time) error {
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": key.ref.UID},
		"status":   map[string]any{"lastUsedAt": metav1.NewTime(bucket.UTC())},
	})
	if err != nil {
		return err
	}
	var obj client.Object = &latchkeyv1.APIKey{}
	if key.kind == index.KindOAuthClient {
		obj = &latchkeyv1.OAuthClient{}
	}
	obj.SetNamespace(key.ref.Namespace)
	obj.SetName(key.ref.Name)
	err = u.client.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) { // gone, or replaced by another object of the same name
		return nil
	}
	return err
}

// kindLabel is the metrics label of an internal kind name.
func kindLabel(kind string) string {
	if kind == index.KindOAuthClient {
		return "OAuthClient"
	}
	return "APIKey"
}
