package tokenserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

var tenantCount atomic.Int32

// newTenant gives a spec a fresh namespace and a user with the edit role in it.
func newTenant() *testenv.Tenant {
	tenant, err := env.NewTenant(context.Background(), k8s, scheme, fmt.Sprintf("ts-tenant-%d", tenantCount.Add(1)), newNamespace())
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return tenant
}

// tenantClient creates an OAuthClient as the tenant and reads its Secret (as the
// tenant's workload would).
func tenantClient(t *testenv.Tenant, name string, mutate func(*latchkeyv1.OAuthClient)) testClient {
	obj := &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Namespace: t.Namespace, Name: name},
		Spec: latchkeyv1.OAuthClientSpec{
			Scopes:    []string{"leads:read", "leads:write"},
			Audiences: []string{"https://api.acme.test"},
		},
	}
	if mutate != nil {
		mutate(obj)
	}
	ExpectWithOffset(1, t.Client.Create(context.Background(), obj)).To(Succeed())
	waitIssued(obj)
	c := readClientSecret(obj)
	waitKnown(server, c)
	return c
}

// installPolicies creates config/policy's admission policies as the release does
// (kustomize prefixes both names alike, so they are used as written), and waits until
// the API server enforces them.
func installPolicies() {
	ctx := context.Background()
	objs, err := testenv.ReadManifests(filepath.Join("..", "config", "policy", "credential_status.yaml"), nil)
	Expect(err).NotTo(HaveOccurred())
	Expect(objs).To(HaveLen(2))
	for _, obj := range objs {
		Expect(k8s.Create(ctx, obj)).To(Succeed())
	}
	// A probe the token server's identity tries to alter until the policy holds.
	probe := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "policy-probe"},
		Spec: latchkeyv1.APIKeySpec{CredentialSpec: latchkeyv1.CredentialSpec{Revoked: true}}}
	Expect(k8s.Create(ctx, probe)).To(Succeed())
	asTokenServer, err := client.New(tokenServerConfig, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	serial := 0
	Eventually(func() error {
		serial++
		body := fmt.Sprintf(`{"status":{"serial":%d}}`, serial)
		return asTokenServer.Status().Patch(ctx, probe, client.RawPatch(types.MergePatchType, []byte(body)))
	}).WithTimeout(30*time.Second).Should(MatchError(ContainSubstring("only the Latchkey manager")), "the admission policy is enforced")
}

func mustJSONBytes(v any) []byte {
	b, err := json.Marshal(v)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return b
}

var _ = Describe("Tenant isolation at the token server", func() {
	ctx := context.Background()

	It("refuses introspection to a client that was not made a resource server", func() {
		victim := newTenant()
		_, key := newAPIKey(victim.Namespace, "crm", nil)
		attacker := newTenant()
		worker := tenantClient(attacker, "worker", nil)

		resp := postForm(server.URL+"/oauth2/introspect", url.Values{"token": {key}}, &basicAuth{worker.ClientID, worker.ClientSecret})
		expectOAuthError(resp, http.StatusForbidden, "unauthorized_client")
		Expect(string(resp.Body)).NotTo(ContainSubstring(victim.Namespace))
	})

	It("tells a resource server nothing about another tenant's API keys and tokens", func() {
		victim := newTenant()
		key, apiKey := newAPIKey(victim.Namespace, "crm", nil)
		victimClient := tenantClient(victim, "worker", nil)
		tok, err := clientCredentials(server, victimClient, oauth2.AuthStyleInHeader).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		own := newResourceServer(victim.Namespace, "own-api", nil)
		Expect(server.active(own, apiKey)).To(BeTrue(), "the victim's own resource server sees them")
		Expect(server.active(own, tok.AccessToken)).To(BeTrue())

		attacker := newTenant()
		// The attacker claims the victim's audience and scopes for its own resource server.
		spy := tenantClient(attacker, "spy", func(o *latchkeyv1.OAuthClient) {
			o.Spec.Introspection = &latchkeyv1.IntrospectionPolicy{
				Audiences: []string{"https://api.acme.test"}, Scopes: []string{"leads:*"},
			}
		})
		for _, token := range []string{apiKey, tok.AccessToken} {
			Expect(server.introspect(spy, token)).To(Equal(map[string]any{"active": false}),
				"a credential of another namespace (key %s) is unknown to it", key.Status.KeyID)
		}
	})

	It("answers only for the scopes and audiences a resource server serves", func() {
		ns := newNamespace()
		_, key := newAPIKey(ns, "mixed", func(k *latchkeyv1.APIKey) { k.Spec.Scopes = []string{"leads:read", "payroll:read"} })
		_, payrollOnly := newAPIKey(ns, "payroll", func(k *latchkeyv1.APIKey) { k.Spec.Scopes = []string{"payroll:read"} })
		leadsAPI := newResourceServer(ns, "leads-api", nil)

		Expect(server.introspect(leadsAPI, key)).To(HaveKeyWithValue("scope", "leads:read"), "payroll:read is not its business")
		Expect(server.introspect(leadsAPI, payrollOnly)).To(Equal(map[string]any{"active": false}))

		c := newClient(ns, "billing-worker", func(o *latchkeyv1.OAuthClient) { o.Spec.Audiences = []string{"https://payroll.acme.test"} })
		tok, err := clientCredentials(server, c, oauth2.AuthStyleInHeader).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(server.introspect(leadsAPI, tok.AccessToken)).To(Equal(map[string]any{"active": false}), "a token for another audience")
	})

	It("describes a token with its client's current scopes and audiences, and its namespace", func() {
		ns := newNamespace()
		rs := newResourceServer(ns, "leads-api", nil)
		c := newClient(ns, "narrowed", nil)
		tok, err := clientCredentials(server, c, oauth2.AuthStyleInHeader).Token(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(server.introspect(rs, tok.AccessToken)).To(And(
			HaveKeyWithValue("scope", "leads:read leads:write"), HaveKeyWithValue("namespace", ns)))

		mergePatch(c.Object, func(o *latchkeyv1.OAuthClient) { o.Spec.Scopes = []string{"leads:read"} })
		Eventually(func() any { return server.introspect(rs, tok.AccessToken)["scope"] }).Should(Equal("leads:read"),
			"a scope removed from the client is gone from its outstanding tokens")
		mergePatch(c.Object, func(o *latchkeyv1.OAuthClient) { o.Spec.Audiences = []string{"https://billing.acme.test"} })
		Eventually(func() bool { return server.active(rs, tok.AccessToken) }).Should(BeFalse(),
			"a token for an audience the client lost is inactive")
	})

	It("lets a resource server that lists other namespaces introspect their credentials", func() {
		consumer := newNamespace()
		_, key := newAPIKey(consumer, "partner", nil)
		shared := newResourceServer(newNamespace(), "shared-api", func(o *latchkeyv1.OAuthClient) {
			o.Spec.Introspection.Namespaces = []string{consumer}
		})
		Expect(server.introspect(shared, key)).To(And(HaveKeyWithValue("active", true), HaveKeyWithValue("namespace", consumer)))
	})

	It("cannot take a victim's client_id: the victim keeps getting tokens", func() {
		victim := newTenant()
		victimClient := tenantClient(victim, "victim", nil)
		attacker := newTenant()
		thief := &latchkeyv1.OAuthClient{
			ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: "thief"},
			Spec:       latchkeyv1.OAuthClientSpec{Audiences: []string{"https://api.acme.test"}},
		}
		Expect(attacker.Client.Create(ctx, thief)).To(Succeed())
		waitIssued(thief)
		Expect(thief.Status.ClientID).NotTo(Equal(victimClient.ClientID))
		Consistently(func() int { return server.token(victimClient, nil).StatusCode }, "1s", "100ms").Should(Equal(http.StatusOK))
	})
})

var _ = Describe("A compromised token server", func() {
	ctx := context.Background()

	It("may record last use, and cannot change anything else in a credential's status", func() {
		ns := newNamespace()
		key, plaintext := newAPIKey(ns, "guarded", nil)
		c := newClient(ns, "guarded", nil)
		asTokenServer, err := client.New(tokenServerConfig, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		patchStatus := func(obj client.Object, status map[string]any) error {
			body := mustJSONBytes(map[string]any{"metadata": map[string]any{"uid": obj.GetUID()}, "status": status})
			return asTokenServer.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body))
		}
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		Expect(patchStatus(key, map[string]any{"lastUsedAt": now})).To(Succeed())
		Expect(patchStatus(c.Object, map[string]any{"lastUsedAt": now})).To(Succeed())

		planted := credential.Hash("lk_live_planted")
		for what, status := range map[string]map[string]any{
			"add a hash": {"credentials": []map[string]any{
				{"hash": credential.Hash(plaintext), "serial": 1, "issuedAt": now},
				{"hash": planted, "serial": 2, "issuedAt": now}}},
			"raise the serial": {"serial": 7},
			"mark it ready":    {"observedGeneration": 9},
		} {
			err := patchStatus(key, status)
			Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%s: got %v", what, err)
			Expect(err.Error()).To(ContainSubstring("only the Latchkey manager may change the status"), what)
		}
		err = patchStatus(c.Object, map[string]any{"clientID": "000000000000000000000000"})
		Expect(err).To(HaveOccurred())
		latest := &latchkeyv1.APIKey{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(key), latest)).To(Succeed())
		Expect(latest.Status.Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(plaintext))))
	})

	It("still lets an identity that may issue in a namespace, through a RoleBinding only, write status there", func() {
		// As the namespace-scoped install binds the manager (config/namespaced).
		ns := newNamespace()
		key, _ := newAPIKey(ns, "scoped", nil)
		role := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "scoped-issuer-" + ns},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"latchkey.dev"}, Resources: []string{"apikeys"}, Verbs: []string{"get", "issue"}},
				{APIGroups: []string{"latchkey.dev"}, Resources: []string{"apikeys/status"}, Verbs: []string{"patch"}},
			},
		}
		Expect(k8s.Create(ctx, role)).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scoped-issuer"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "scoped-issuer"}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		})).To(Succeed())
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "scoped-issuer"}
		scoped, err := client.New(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error {
			return scoped.Status().Patch(ctx, key, client.RawPatch(types.MergePatchType, []byte(`{"status":{"lastRotateRequest":"scoped"}}`)))
		}).Should(Succeed(), "the policy checks issue in the request's namespace")
	})
})
