package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// +kubebuilder:rbac:groups=latchkey.dev,resources=oauthgrants,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=latchkey.dev,resources=oauthgrants/status,verbs=get;update;patch

// GrantClientUIDField indexes OAuthGrants by the UID of the client they were given
// to, so that a deleted client finds its grants in every workspace.
const GrantClientUIDField = "spec.client.uid"

// OAuthGrantReconciler reports whether each grant still stands and removes the
// grants whose app is gone: an OAuthClient deleted (or deleted and created again
// under the same name: another UID, another app) leaves nothing installed.
type OAuthGrantReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

func (r *OAuthGrantReconciler) SetupWithManager(mgr ctrl.Manager, options controller.Options) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &latchkeyv1.OAuthGrant{}, GrantClientUIDField,
		func(o client.Object) []string { return []string{o.(*latchkeyv1.OAuthGrant).Spec.Client.UID} }); err != nil {
		return fmt.Errorf("indexing OAuthGrants by client UID: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("oauthgrant").
		For(&latchkeyv1.OAuthGrant{}).
		Watches(&latchkeyv1.OAuthClient{}, handler.EnqueueRequestsFromMapFunc(r.grantsOfClient)).
		WithOptions(options).
		Complete(r)
}

// grantsOfClient maps an OAuthClient event to the grants given to it.
func (r *OAuthGrantReconciler) grantsOfClient(ctx context.Context, obj client.Object) []reconcile.Request {
	var grants latchkeyv1.OAuthGrantList
	if err := r.List(ctx, &grants, client.MatchingFields{GrantClientUIDField: string(obj.GetUID())}); err != nil {
		return nil
	}
	requests := make([]reconcile.Request, 0, len(grants.Items))
	for _, g := range grants.Items {
		requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&g)})
	}
	return requests
}

func (r *OAuthGrantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	grant := &latchkeyv1.OAuthGrant{}
	if err := r.Get(ctx, req.NamespacedName, grant); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !grant.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	ref := grant.Spec.Client
	app := &latchkeyv1.OAuthClient{}
	err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, app)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	if apierrors.IsNotFound(err) || string(app.UID) != ref.UID {
		// The Event stays in the workspace after the grant is gone: kubectl get
		// events says why the app disappeared.
		note := fmt.Sprintf("OAuthClient %s/%s (uid %s) is gone; the app is uninstalled from this workspace", ref.Namespace, ref.Name, ref.UID)
		r.Recorder.Eventf(grant, nil, corev1.EventTypeWarning, latchkeyv1.ReasonClientChanged, "Uninstall", "%s", note)
		ctrl.LoggerFrom(ctx).Info("removing a grant whose client is gone", "grant", req.String(), "client", ref.Namespace+"/"+ref.Name)
		err := r.Delete(ctx, grant, client.Preconditions{UID: &grant.UID})
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := grant.DeepCopy()
	reason, message := latchkeyv1.ReasonGranted,
		fmt.Sprintf("app %s/%s may act in this workspace with %d scopes", ref.Namespace, ref.Name, len(grant.Spec.Scopes))
	if grant.Spec.Revoked {
		// Uninstalled as declared: the desired state, so Ready=True (ConditionReady).
		reason, message = latchkeyv1.ReasonGrantRevoked, "the app is uninstalled (spec.revoked); its tokens are refused"
	}
	if setReadyCondition(&grant.Status.Conditions, grant.Generation, metav1.ConditionTrue, reason, message) {
		r.Recorder.Eventf(grant, nil, corev1.EventTypeNormal, reason, "Reconcile", "%s", message)
	}
	status := statusWriter[*latchkeyv1.OAuthGrant]{client: r.Client, fields: grantStatus}
	return ctrl.Result{}, status.finalize(ctx, before, grant, pending{}, nil)
}

// grantStatus is the status the grant reconciler writes: all of it. The refresh
// families and redeemed codes in it are the token server's, left as read.
func grantStatus(grant *latchkeyv1.OAuthGrant) statusFields {
	return statusFields{conditions: &grant.Status.Conditions, observedGeneration: &grant.Status.ObservedGeneration, compared: &grant.Status}
}
