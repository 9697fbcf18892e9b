package tokenserver

import (
	"context"
	"fmt"
	"slices"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// workspaces answers which workspaces a user may install apps into: the namespaces
// labelled latchkey.dev/workspace=true where RBAC lets them create oauthgrants.
// Kubernetes decides, through a SubjectAccessReview, so that `kubectl create
// rolebinding` is the whole permission system.
type workspaces struct {
	clientset kubernetes.Interface
}

// maxWorkspacesChecked bounds the reviews one sign-in may cost.
const maxWorkspacesChecked = 200

// authenticatedGroup is what kube-apiserver adds to every authenticated user:
// bindings to it apply to the user here as they do there.
const authenticatedGroup = "system:authenticated"

// allowed lists the workspaces u may install apps into, sorted.
func (ws *workspaces) allowed(ctx context.Context, u user) ([]string, error) {
	list, err := ws.clientset.CoreV1().Namespaces().List(ctx, metav1.ListOptions{
		LabelSelector: latchkeyv1.WorkspaceLabel + "=" + latchkeyv1.WorkspaceLabelValue, Limit: maxWorkspacesChecked,
	})
	if err != nil {
		return nil, fmt.Errorf("listing workspaces: %w", err)
	}
	var (
		mu       sync.Mutex
		allowed  []string
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, 8)
	)
	for _, ns := range list.Items {
		if !ns.DeletionTimestamp.IsZero() {
			continue
		}
		wg.Add(1)
		slots <- struct{}{}
		go func(name string) {
			defer func() { <-slots; wg.Done() }()
			ok, err := ws.mayInstall(ctx, u, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if ok {
				allowed = append(allowed, name)
			}
		}(ns.Name)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	slices.Sort(allowed)
	return allowed, nil
}

// mayInstall asks RBAC whether u may create oauthgrants in workspace, and checks
// that the namespace is (still) a workspace.
func (ws *workspaces) mayInstall(ctx context.Context, u user, workspace string) (bool, error) {
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Name, Groups: append(slices.Clone(u.Groups), authenticatedGroup),
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: workspace, Verb: "create", Group: latchkeyv1.GroupVersion.Group, Resource: "oauthgrants",
		},
	}}
	answer, err := ws.clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("asking RBAC about workspace %s: %w", workspace, err)
	}
	return answer.Status.Allowed && !answer.Status.Denied, nil
}

// isWorkspace reports whether namespace carries the workspace label now.
func (ws *workspaces) isWorkspace(ctx context.Context, namespace string) (bool, error) {
	ns, err := ws.clientset.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	return ns.Labels[latchkeyv1.WorkspaceLabel] == latchkeyv1.WorkspaceLabelValue && ns.DeletionTimestamp.IsZero(), nil
}
