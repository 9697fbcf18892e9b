package thirdparty

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// workspaces answers which workspaces a user may install apps into: the namespaces
// labelled latchkey.dev/workspace=true where RBAC lets them create oauthgrants.
// Kubernetes decides, through a SubjectAccessReview, so that `kubectl create
// rolebinding` is the whole permission system.
//
// The workspaces come from a watch of the labelled namespaces (names only), and
// each review is kept for rbacCacheTTL, so that a sign-in, which lists the
// workspaces a user may install into, costs the API server a bounded number of
// calls however many there are. What decides (the consent, a refresh) asks RBAC
// afresh.
type workspaces struct {
	clientset kubernetes.Interface
	now       func() time.Time
	// names is the watch's store of the labelled namespaces.
	names toolscache.Store

	mu      sync.Mutex
	reviews map[string]review // by user and workspace
}

type review struct {
	allowed bool
	at      time.Time
}

// maxWorkspacesChecked bounds the reviews one sign-in may cost.
const maxWorkspacesChecked = 200

// rbacCacheTTL is how long a review for a sign-in's list is reused;
// maxCachedReviews bounds the reviews kept.
const (
	rbacCacheTTL     = 10 * time.Second
	maxCachedReviews = 10000
)

// authenticatedGroup is what kube-apiserver adds to every authenticated user:
// bindings to it apply to the user here as they do there.
const authenticatedGroup = "system:authenticated"

// newWorkspaces watches the labelled namespaces until ctx ends; synced reports
// when the watch has listed them.
func newWorkspaces(ctx context.Context, cs kubernetes.Interface, now func() time.Time) (ws *workspaces, synced func() bool) {
	selector := latchkeyv1.WorkspaceLabel + "=" + latchkeyv1.WorkspaceLabelValue
	lw := toolscache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "namespaces", metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	informer := toolscache.NewSharedInformer(lw, &corev1.Namespace{}, 0)
	// Names, labels and deletion alone: a namespace's other fields are of no use here.
	_ = informer.SetTransform(func(obj any) (any, error) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, ResourceVersion: ns.ResourceVersion,
				Labels: ns.Labels, DeletionTimestamp: ns.DeletionTimestamp}}, nil
		}
		return obj, nil
	})
	go informer.RunWithContext(ctx)
	return &workspaces{clientset: cs, now: now, names: informer.GetStore(), reviews: map[string]review{}}, informer.HasSynced
}

// allowed lists the workspaces u may install apps into, sorted.
func (ws *workspaces) allowed(ctx context.Context, u user) ([]string, error) {
	names := ws.workspaces()
	var (
		mu       sync.Mutex
		allowed  []string
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, 8)
	)
	for _, name := range names {
		wg.Add(1)
		slots <- struct{}{}
		go func(name string) {
			defer func() { <-slots; wg.Done() }()
			ok, err := ws.mayInstall(ctx, u, name, false)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if ok {
				allowed = append(allowed, name)
			}
		}(name)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	slices.Sort(allowed)
	return allowed, nil
}

// workspaces lists the labelled namespaces the watch holds, sorted, at most
// maxWorkspacesChecked.
func (ws *workspaces) workspaces() []string {
	var names []string
	for _, obj := range ws.names.List() {
		if ns, ok := obj.(*corev1.Namespace); ok && isWorkspace(ns) {
			names = append(names, ns.Name)
		}
	}
	slices.Sort(names)
	return names[:min(len(names), maxWorkspacesChecked)]
}

func isWorkspace(ns *corev1.Namespace) bool {
	return ns.Labels[latchkeyv1.WorkspaceLabel] == latchkeyv1.WorkspaceLabelValue && ns.DeletionTimestamp.IsZero()
}

// isWorkspace reports whether namespace carries the workspace label: the watch
// says so, or, for a namespace it does not hold (yet), the API server does.
func (ws *workspaces) isWorkspace(ctx context.Context, namespace string) (bool, error) {
	if obj, ok, _ := ws.names.GetByKey(namespace); ok {
		ns, typed := obj.(*corev1.Namespace)
		return typed && isWorkspace(ns), nil
	}
	ns, err := ws.clientset.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return isWorkspace(ns), nil
}

// mayInstall asks RBAC whether u may create oauthgrants in workspace. Unless
// fresh, it reuses an answer of the last rbacCacheTTL.
func (ws *workspaces) mayInstall(ctx context.Context, u user, workspace string, fresh bool) (bool, error) {
	key := u.Name + "\x00" + strings.Join(u.Groups, "\x00") + "\x00\x00" + workspace
	now := ws.now()
	ws.mu.Lock()
	r, ok := ws.reviews[key]
	ws.mu.Unlock()
	if ok && !fresh && now.Sub(r.at) < rbacCacheTTL {
		return r.allowed, nil
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Name, Groups: append(slices.Clone(u.Groups), authenticatedGroup),
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: workspace, Verb: "create", Group: latchkeyv1.GroupVersion.Group, Resource: "oauthgrants",
		},
	}}
	answer, err := ws.clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("asking RBAC about workspace %s: %w", workspace, err)
	}
	allowed := answer.Status.Allowed && !answer.Status.Denied
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if len(ws.reviews) >= maxCachedReviews {
		for k, old := range ws.reviews {
			if now.Sub(old.at) >= rbacCacheTTL {
				delete(ws.reviews, k)
			}
		}
	}
	if len(ws.reviews) < maxCachedReviews {
		ws.reviews[key] = review{allowed: allowed, at: now}
	}
	return allowed, nil
}
