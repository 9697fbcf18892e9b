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
	// namespaceQueue bounds the records waiting to be written for one namespace,
	// and maxQueued for all: a record is queued only for a credential accepted
	// now and not queued before, so a tenant fills only its own namespace's
	// queue, with keys it holds, and the writer serves the namespaces in turn.
	namespaceQueue = 64
	maxQueued      = 4096
	// writeAttempts bounds the reads and writes of one record that lose their
	// optimistic lock to another writer (the manager, last-use writes).
	writeAttempts = 5
	// rememberWritten is how long a written record is remembered here, until the
	// watch has brought it into the index (index.Key.Reported), so that a report
	// arriving in between is not written again; rememberFailed how long a record
	// that could not be written is not tried again (each try costs a read).
	rememberWritten = time.Minute
	rememberFailed  = 10 * time.Second
)

// added is what became of a record handed to the recorder.
type added int

const (
	queued added = iota
	alreadyQueued
	queueFull
)

// recorder writes reports into status.leaks, once per credential, one at a time,
// taking the namespaces with records waiting in turn.
type recorder struct {
	host    Host
	metrics *metrics
	wake    chan struct{}

	mu sync.Mutex
	// waiting holds the records to write by namespace; turn the namespaces
	// with records waiting, in the order they are served.
	waiting map[string][]job
	turn    []string
	queued  int
	// seen holds each hash queued, being written or remembered: the zero time
	// while queued or being written, then until when it is remembered.
	seen map[string]time.Time
}

func newRecorder(h Host, m *metrics) *recorder {
	return &recorder{host: h, metrics: m, wake: make(chan struct{}, 1), waiting: map[string][]job{}, seen: map[string]time.Time{}}
}

// add queues the record of t, unless it is queued or remembered, or its
// namespace's queue (or the whole queue) is full.
func (r *recorder) add(t target, record latchkeyv1.LeakRecord) added {
	now := r.host.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if until, ok := r.seen[t.hash]; ok && (until.IsZero() || now.Before(until)) {
		return alreadyQueued
	}
	ns := t.ref.Namespace
	if len(r.waiting[ns]) >= namespaceQueue || r.queued >= maxQueued {
		return queueFull
	}
	if len(r.waiting[ns]) == 0 {
		r.turn = append(r.turn, ns)
	}
	r.waiting[ns] = append(r.waiting[ns], job{target: t, record: record})
	r.queued++
	r.seen[t.hash] = time.Time{}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return queued
}

// next takes the first record of the namespace whose turn it is.
func (r *recorder) next() (job, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.turn) == 0 {
		return job{}, false
	}
	ns := r.turn[0]
	jobs := r.waiting[ns]
	j := jobs[0]
	r.turn = r.turn[1:]
	if len(jobs) == 1 {
		delete(r.waiting, ns)
	} else {
		r.waiting[ns] = jobs[1:]
		r.turn = append(r.turn, ns) // its next record waits for the others' turns
	}
	r.queued--
	return j, true
}

func (r *recorder) run(ctx context.Context) {
	for {
		j, ok := r.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		result := r.write(ctx, j)
		r.metrics.records.WithLabelValues(result).Inc()
		now := r.host.Clock.Now()
		r.mu.Lock()
		switch result {
		case "written":
			r.seen[j.target.hash] = now.Add(rememberWritten)
		case "failed":
			r.seen[j.target.hash] = now.Add(rememberFailed)
		default:
			delete(r.seen, j.target.hash)
		}
		r.forgetLocked(now)
		r.mu.Unlock()
	}
}

// forgetLocked drops the hashes remembered long enough.
func (r *recorder) forgetLocked(now time.Time) {
	for hash, until := range r.seen {
		if !until.IsZero() && !now.Before(until) {
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
