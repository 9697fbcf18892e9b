package testenv

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Tenant is a user who owns one namespace the way a platform team hands one out:
// bound there to the built-in edit role (Secrets, workloads, and through
// aggregation the APIKey, OAuthClient and API editor roles of config/rbac), and to
// nothing else. Attacker specs act as a Tenant, against the real API server.
type Tenant struct {
	User      string
	Namespace string
	// Client acts as User (impersonated by the admin), so every request goes
	// through the API server's authorization and admission as it would for them.
	Client client.Client
	Config *rest.Config
}

// InstallTenantRoles creates config/rbac's aggregated editor and viewer roles, as
// the release manifests do. Call it once per control plane.
func (e *Env) InstallTenantRoles(ctx context.Context, admin client.Client) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	for _, name := range []string{"apikey_editor_role", "apikey_viewer_role", "oauthclient_editor_role", "oauthclient_viewer_role",
		"api_editor_role", "api_viewer_role", "oauthgrant_editor_role", "oauthgrant_viewer_role"} {
		if err := applyClusterRoles(ctx, admin, filepath.Join(root, "config", "rbac", name+".yaml")); err != nil {
			return err
		}
	}
	return nil
}

// NewTenant binds user to the edit role in namespace and waits until the
// aggregated role lets them manage APIKeys, OAuthClients, APIs and Secrets there.
func (e *Env) NewTenant(ctx context.Context, admin client.Client, scheme *runtime.Scheme, user, namespace string) (*Tenant, error) {
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: user + "-edit"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
	}
	if err := admin.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("binding %s to edit in %s: %w", user, namespace, err)
	}
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	// The aggregation controller fills the edit role asynchronously.
	deadline := time.Now().Add(30 * time.Second)
	for _, check := range []authorizationv1.ResourceAttributes{
		{Namespace: namespace, Verb: "create", Group: "latchkey.dev", Resource: "apikeys"},
		{Namespace: namespace, Verb: "create", Group: "latchkey.dev", Resource: "oauthclients"},
		{Namespace: namespace, Verb: "create", Group: "latchkey.dev", Resource: "apis"},
		{Namespace: namespace, Verb: "update", Resource: "secrets"},
	} {
		for {
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &check}}
			if err := c.Create(ctx, review); err != nil {
				return nil, err
			}
			if review.Status.Allowed {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("tenant %s cannot %s %s in %s after 30s: is the edit role aggregated (config/rbac installed, clusterrole-aggregation running)?",
					user, check.Verb, check.Resource, namespace)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return &Tenant{User: user, Namespace: namespace, Client: c, Config: cfg}, nil
}

// BindClusterRole creates the ClusterRoles in path (relative to the working
// directory) and binds them cluster-wide to user, and returns a config that
// authenticates as user: a component under test runs with exactly the RBAC it ships.
func (e *Env) BindClusterRole(ctx context.Context, admin client.Client, user, path string) (*rest.Config, error) {
	objs, err := ReadManifests(path, nil)
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		role, ok := obj.(*rbacv1.ClusterRole)
		if !ok {
			continue
		}
		if err := admin.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating ClusterRole %s: %w", role.Name, err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name + "-" + user},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		}
		if err := admin.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("binding ClusterRole %s: %w", role.Name, err)
		}
	}
	u, err := e.AddUser(envtest.User{Name: user}, e.Config)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// BindRole creates the Roles in path (relative to the working directory) in
// namespace, whatever namespace the file names, and binds them there to user: for
// a component's rights in the operator's namespace (a user of BindClusterRole).
func (e *Env) BindRole(ctx context.Context, admin client.Client, user, path, namespace string) error {
	objs, err := ReadManifests(path, nil)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		role, ok := obj.(*rbacv1.Role)
		if !ok {
			continue
		}
		role.Namespace = namespace
		if err := admin.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Role %s: %w", role.Name, err)
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: role.Name + "-" + user},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		}
		if err := admin.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("binding Role %s: %w", role.Name, err)
		}
	}
	return nil
}

// applyClusterRoles creates every ClusterRole in a YAML file.
func applyClusterRoles(ctx context.Context, admin client.Client, path string) error {
	objs, err := ReadManifests(path, nil)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if role, ok := obj.(*rbacv1.ClusterRole); ok {
			if err := admin.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating ClusterRole %s: %w", role.Name, err)
			}
		}
	}
	return nil
}
