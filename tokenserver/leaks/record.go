package leaks

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/index"
)

// Run writes the queued records until ctx ends.
func (s *Server) Run(ctx context.Context) { s.recorder.run(ctx) }

// target is a credential accepted now: an object's hash.
type target struct {
	kind string // index.KindAPIKey or index.KindOAuthClient
	ref  index.Ref
	hash string
}

type job struct {
	target target
	record latchkeyv1.LeakRecord
}

const (
	// queueLength bounds the records waiting to be written. A record is queued
	// only for a credential accepted now and not queued before, so an attacker
	// fills it only with keys it holds.
	queueLength = 4096
	// writeAttempts bounds the reads and writes of one record that lose their
	// optimistic lock to another writer (the manager, last-use writes).
	writeAttempts = 5
	// rememberWritten is how long a written record is remembered here, until the
	// watch has brought it into the index (index.Key.Reported), so that a report
	// arriving in between is not written again.
	rememberWritten = time.Minute
)

// recorder writes reports into status.leaks, once per credential, one at a time.
type recorder struct {
	host    Host
	metrics *metrics
	queue   chan job
	mu      sync.Mutex
	// seen holds each hash queued and not yet forgotten: the zero time while
	// queued or being written, then when it was written.
	seen map[string]time.Time
}

func newRecorder(h Host, m *metrics) *recorder {
	return &recorder{host: h, metrics: m, queue: make(chan job, queueLength), seen: map[string]time.Time{}}
}

// add queues the record of t, unless it is queued or was written a moment ago.
// It reports whether it queued it.
func (r *recorder) add(t target, record latchkeyv1.LeakRecord) bool {
	now := r.host.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if at, ok := r.seen[t.hash]; ok && (at.IsZero() || now.Sub(at) < rememberWritten) {
		return false
	}
	select {
	case r.queue <- job{target: t, record: record}:
		r.seen[t.hash] = time.Time{}
		return true
	default:
		return false // full: a later report of the same key finds room
	}
}

func (r *recorder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-r.queue:
			result := r.write(ctx, j)
			r.metrics.records.WithLabelValues(result).Inc()
			r.mu.Lock()
			if result == "written" {
				r.seen[j.target.hash] = r.host.Clock.Now()
			} else {
				delete(r.seen, j.target.hash)
			}
			r.forgetLocked()
			r.mu.Unlock()
		}
	}
}

// forgetLocked drops the written hashes remembered long enough.
func (r *recorder) forgetLocked() {
	now := r.host.Clock.Now()
	for hash, at := range r.seen {
		if !at.IsZero() && now.Sub(at) >= rememberWritten {
			delete(r.seen, hash)
		}
	}
}

// credentialObject is an APIKey or an OAuthClient.
type credentialObject interface {
	client.Object
	CredentialStatus() *latchkeyv1.CredentialStatus
}

var errFull = errors.New("status.leaks is full")

// write adds j's record to its object's status.leaks, if the object still
// accepts the credential and holds no report of it. Its result is a metrics label.
func (r *recorder) write(ctx context.Context, j job) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	log := r.host.Log.WithValues("kind", j.target.kind, "namespace", j.target.ref.Namespace, "name", j.target.ref.Name,
		"keyID", credential.KeyID(j.target.hash), "reporter", j.record.Reporter)
	for range writeAttempts {
		obj := newObject(j.target.kind)
		err := r.host.Writer.Get(ctx, client.ObjectKey{Namespace: j.target.ref.Namespace, Name: j.target.ref.Name}, obj)
		if apierrors.IsNotFound(err) {
			return "gone"
		}
		if err != nil {
			log.Error(err, "could not read the credential a leak report names")
			return "failed"
		}
		status := obj.CredentialStatus()
		switch {
		case obj.GetUID() != j.target.ref.UID,
			!slices.ContainsFunc(status.Credentials, func(c latchkeyv1.CredentialHash) bool { return c.Hash == j.target.hash }):
			return "gone"
		case slices.ContainsFunc(status.Leaks, func(l latchkeyv1.LeakRecord) bool { return l.Hash == j.target.hash }):
			return "written" // by another replica
		case len(status.Leaks) >= latchkeyv1.MaxLeakRecords:
			log.Error(errFull, "a leak report is not recorded: the manager drops old reports after a week")
			return "failed"
		}
		before := obj.DeepCopyObject().(credentialObject)
		status.Leaks = append([]latchkeyv1.LeakRecord{j.record}, status.Leaks...)
		// status.leaks is an atomic list, replaced whole: the lock keeps a report
		// written meanwhile (by another replica) from being dropped.
		err = r.host.Writer.Status().Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			log.Error(err, "could not record a leak report")
			return "failed"
		}
		log.Info("leak report recorded; the manager acts on it as spec.leakResponse says")
		return "written"
	}
	log.Error(errors.New("the object kept changing"), "could not record a leak report")
	return "failed"
}

func newObject(kind string) credentialObject {
	if kind == index.KindOAuthClient {
		return &latchkeyv1.OAuthClient{}
	}
	return &latchkeyv1.APIKey{}
}

// newRecord is the record of a report made now.
func (s *Server) newRecord(reporter, url, source, hash string) latchkeyv1.LeakRecord {
	return latchkeyv1.LeakRecord{Hash: hash, ReportedAt: metav1.NewTime(s.host.Clock.Now().Truncate(time.Second)),
		Reporter: reporter, URL: url, Source: source}
}
