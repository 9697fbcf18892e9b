package controllers

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// statusFields points into one object's status: the kstatus fields every status
// of the manager has, and the part compared with the object as read.
type statusFields struct {
	conditions         *[]metav1.Condition
	observedGeneration *int64
	// compared is what a reconcile may change: when it is as read, nothing is written.
	compared any
}

// statusWriter writes the status of one kind: its finalize is the only place a
// reconciler writes status, once, at the end of a reconcile (Flux's deferred
// finalizeStatus, in kustomize-controller), so that progress, the comparison and
// the optimistic lock are the same for every kind.
type statusWriter[T client.Object] struct {
	client client.Client
	fields func(T) statusFields
	// apiReader and newObject are set for the kinds whose status.lastUsedAt the
	// token servers and the authorizer write (the credentials): a patch that lost
	// its lock to such a write is written again (rebase). Without them a conflict
	// is returned, and the reconcile retried with backoff.
	apiReader client.Reader
	newObject func() T
}

// retriedFailure is a failed write that status reports (Ready=False, IssueFailed,
// with Reconciling): the status is this generation's verdict, so observedGeneration
// moves on, and the error makes the write retried with backoff.
type retriedFailure struct{ error }

func (f retriedFailure) Unwrap() error { return f.error }

// finalize ends a reconcile of obj, which was read as before and returned err. It
// records the generation as observed unless err leaves the verdict unreached (a
// retriedFailure reaches it), derives Reconciling and Stalled (setProgress, with
// work still pending), and patches the status if it changed. It returns err,
// joined with the patch's error.
func (w statusWriter[T]) finalize(ctx context.Context, before, obj T, work pending, err error) error {
	fields := w.fields(obj)
	var retried retriedFailure
	if err == nil || errors.As(err, &retried) {
		*fields.observedGeneration = obj.GetGeneration()
	}
	setProgress(fields.conditions, obj.GetGeneration(), work)
	if equality.Semantic.DeepEqual(w.fields(before).compared, fields.compared) {
		return err
	}
	// Optimistic lock: a status computed from a stale read must not win, and others
	// write beside it (lastUsedAt, a grant's refresh families). On a conflict the
	// next attempt decides again, on what it reads then: a credential's adopts
	// whatever Secret this one wrote.
	perr := w.client.Status().Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(perr) && w.apiReader != nil {
		perr = w.rebase(ctx, before, obj)
	}
	if perr != nil {
		return errors.Join(err, fmt.Errorf("patching status: %w", perr))
	}
	return err
}

// lastUsedAt is the status field the token servers and the authorizer write.
const lastUsedAt = "lastUsedAt"

// rebase retries a status patch that lost its optimistic lock to a write that
// changed nothing this reconcile decided on: status.lastUsedAt. Then the status
// decided here is still right, so it is written again on the fresh object, keeping
// its lastUsedAt. Without this, the next reconcile of a credential would adopt the
// Secret this one wrote without knowing which rotate request it answered, and
// rotate once more. Any other change (spec, annotations, other status) keeps the
// conflict: the next reconcile decides again.
func (w statusWriter[T]) rebase(ctx context.Context, before, decided T) error {
	fresh := w.newObject()
	if err := w.apiReader.Get(ctx, client.ObjectKeyFromObject(before), fresh); err != nil {
		return err
	}
	// In the cache's form (cacheForm), as before is: the cache leaves out
	// kubectl's last-applied annotation, which would otherwise always differ.
	cacheForm(fresh)
	// The whole status, kind-specific fields (an OAuthClient's clientID) included.
	freshStatus, err := statusOf(fresh)
	if err != nil {
		return err
	}
	beforeStatus, err := statusOf(before)
	if err != nil {
		return err
	}
	lastUsed := freshStatus[lastUsedAt]
	delete(freshStatus, lastUsedAt)
	delete(beforeStatus, lastUsedAt)
	if fresh.GetUID() != before.GetUID() || fresh.GetGeneration() != before.GetGeneration() ||
		!equality.Semantic.DeepEqual(fresh.GetAnnotations(), before.GetAnnotations()) ||
		!equality.Semantic.DeepEqual(freshStatus, beforeStatus) {
		return apierrors.NewConflict(schema.GroupResource{}, before.GetName(), errors.New("the object changed while it was reconciled"))
	}
	status, err := statusOf(decided)
	if err != nil {
		return err
	}
	if lastUsed != nil {
		status[lastUsedAt] = lastUsed
	} else {
		delete(status, lastUsedAt)
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(fresh)
	if err != nil {
		return err
	}
	content["status"] = status
	rebased := w.newObject()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(content, rebased); err != nil {
		return err
	}
	return w.client.Status().Patch(ctx, rebased, client.MergeFromWithOptions(fresh, client.MergeFromWithOptimisticLock{}))
}

// statusOf is obj's status as JSON-shaped data.
func statusOf(obj client.Object) (map[string]any, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	status, _ := content["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
	}
	return status, nil
}
