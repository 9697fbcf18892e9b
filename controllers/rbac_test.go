package controllers_test

import (
	"context"
	"os/exec"

	"github.com/latchkey-dev/latchkey/internal/testenv"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The namespace-scoped install (config/namespaced), rendered with kustomize as a
// user would and applied to the API server, grants the manager what it needs in
// the listed namespaces and its own, and nothing anywhere else.
var _ = Describe("The namespace-scoped install", func() {
	ctx := context.Background()
	const manager = "system:serviceaccount:latchkey-system:latchkey-manager"

	allowed := func(user string, attributes authorizationv1.ResourceAttributes) bool {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, ResourceAttributes: &attributes,
		}}
		ExpectWithOffset(1, k8s.Create(ctx, review)).To(Succeed())
		return review.Status.Allowed
	}
	can := func(user, verb, resource, namespace string) bool {
		return allowed(user, authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: resource})
	}

	It("lets the manager manage Secrets and read APIs in its namespaces only, and write one ConfigMap", func() {
		rendered, err := exec.Command("go", "tool", "kustomize", "build", "../config/namespaced").Output()
		Expect(err).NotTo(HaveOccurred())
		for _, ns := range []string{"tenant-a", "tenant-b", "tenant-c"} {
			err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			Expect(client.IgnoreAlreadyExists(err)).To(Succeed())
		}
		objs, err := testenv.ReadManifests("config/namespaced", rendered)
		Expect(err).NotTo(HaveOccurred())
		for _, obj := range objs {
			switch o := obj.(type) {
			case *rbacv1.ClusterRoleBinding:
				for _, s := range o.Subjects {
					Expect(s.Name).NotTo(BeElementOf("latchkey-manager", "latchkey-tokenserver"), "no cluster-wide binding for %s", o.Name)
				}
			case *rbacv1.ClusterRole, *rbacv1.Role, *rbacv1.RoleBinding:
			default:
				continue
			}
			if err := k8s.Create(ctx, obj); !apierrors.IsAlreadyExists(err) {
				Expect(err).NotTo(HaveOccurred())
			}
		}

		// The API server's authorizer learns each RoleBinding from its own watch,
		// in no order: wait for each.
		for _, ns := range []string{"tenant-a", "tenant-b", "latchkey-system"} {
			Eventually(func() bool { return can(manager, "create", "secrets", ns) }).Should(BeTrue(), "in %s", ns)
		}
		for _, ns := range []string{"tenant-c", "kube-system", "default", ""} {
			for _, verb := range []string{"get", "list", "create", "update"} {
				Expect(can(manager, verb, "secrets", ns)).To(BeFalse(), "%s secrets in %q", verb, ns)
			}
		}

		By("reading APIs and writing their status in its namespaces only")
		api := func(verb, subresource, namespace string) authorizationv1.ResourceAttributes {
			return authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Group: "latchkey.dev", Resource: "apis", Subresource: subresource}
		}
		Eventually(func() bool { return allowed(manager, api("watch", "", "tenant-a")) }).Should(BeTrue())
		Eventually(func() bool { return allowed(manager, api("patch", "status", "tenant-b")) }).Should(BeTrue())
		Expect(allowed(manager, api("list", "", "tenant-c"))).To(BeFalse())
		Expect(allowed(manager, api("update", "", "tenant-a"))).To(BeFalse(), "the spec is the tenant's")

		By("writing the JWKS ConfigMap of its own namespace, and no other ConfigMap")
		configMap := func(verb, name, namespace string) authorizationv1.ResourceAttributes {
			return authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: "configmaps", Name: name}
		}
		for _, verb := range []string{"get", "list", "watch", "update"} {
			Eventually(func() bool { return allowed(manager, configMap(verb, "latchkey-jwks", "latchkey-system")) }).Should(BeTrue(), verb)
			Expect(allowed(manager, configMap(verb, "other", "latchkey-system"))).To(BeFalse(), verb)
			Expect(allowed(manager, configMap(verb, "latchkey-jwks", "tenant-a"))).To(BeFalse(), verb)
		}
		Eventually(func() bool { return allowed(manager, configMap("create", "", "latchkey-system")) }).Should(BeTrue())
		Expect(allowed(manager, configMap("list", "", "latchkey-system"))).To(BeFalse(), "a list of every ConfigMap")
		Expect(allowed(manager, configMap("delete", "latchkey-jwks", "latchkey-system"))).To(BeFalse())
		for _, ns := range []string{"tenant-a", "kube-system", ""} {
			Expect(can(manager, "create", "configmaps", ns)).To(BeFalse(), "create configmaps in %q", ns)
		}
	})
})
