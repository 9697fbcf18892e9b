package authz_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// A tenant with the edit role in its own namespace, against another team's API.
// Scopes are written by a credential's own namespace, so they must mean nothing to
// an API that does not trust that namespace; and what one team's API serves must
// not be taken over by another's.
var _ = Describe("A tenant attacking another team's API", func() {
	var victimNS, identifier, host, victimKey string
	var victimAPI *latchkeyv1.API
	var tenant *testenv.Tenant
	BeforeEach(func() {
		victimNS = newNamespace()
		host = "leads." + victimNS + ".test"
		victimAPI = newAPI(victimNS, "leads", func(a *latchkeyv1.API) { a.Spec.Hosts = []string{host} })
		identifier = victimAPI.Spec.Identifier
		_, victimKey = newAPIKey(victimNS, "victim", nil)
		Eventually(func() int { return forwardAuth("", "GET", "/v1/leads", host, bearer(victimKey)).Status }).Should(Equal(200))
		var err error
		tenant, err = env.NewTenant(context.Background(), k8s, scheme, "mallory-"+victimNS, newNamespace())
		Expect(err).NotTo(HaveOccurred())
	})

	// createAs creates obj as the tenant and waits until the manager has reconciled it.
	createAs := func(obj client.Object) {
		ExpectWithOffset(1, tenant.Client.Create(context.Background(), obj)).To(Succeed())
	}

	It("cannot use an API key it wrote itself, whatever scopes it declares", func() {
		key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: "mine"},
			Spec: latchkeyv1.APIKeySpec{Scopes: []string{"leads:read", "leads:write", "leads:*"}}}
		createAs(key)
		waitReady(key)
		plaintext := secretValue(tenant.Namespace, key.SecretName(), latchkeyv1.APIKeySecretKey)
		for _, method := range []string{"GET", "POST"} {
			// Refused from the start; refused as a key known but not for this API
			// once the authorizer's watch has brought it.
			Eventually(func(g Gomega) {
				r := forwardAuth("", method, "/v1/leads", host, bearer(plaintext))
				Expect(r.Status).To(Equal(401), method)
				_, description := errorBody(r)
				g.Expect(description).To(Equal("the credential is not valid for this API"))
			}).Should(Succeed())
			Expect(checkStatus(check(map[string]string{"latchkey.dev/api": victimNS + "/leads"}, method, "/v1/leads", "", bearer(plaintext)))).To(Equal(401))
		}
	})

	It("cannot use an access token its own client got for the victim's audience", func() {
		app := &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: "app"},
			Spec: latchkeyv1.OAuthClientSpec{Scopes: []string{"leads:write"}, Audiences: []string{identifier}}}
		createAs(app)
		waitReady(app)
		id := secretValue(tenant.Namespace, app.SecretName(), latchkeyv1.ClientIDSecretKey)
		secret := secretValue(tenant.Namespace, app.SecretName(), latchkeyv1.ClientSecretSecretKey)
		token := accessToken(id, secret, identifier) // the token server signs any audience the client lists
		Consistently(func() int { return forwardAuth("", "POST", "/v1/leads", host, bearer(token)).Status }, "500ms").Should(Equal(401))
	})

	It("cannot take over the victim's host or identifier with an API of its own", func() {
		// Claims made in the same second all give way (apirules.NotNewer); here the
		// victim's API is strictly older, as an existing API is.
		Eventually(func() bool { return time.Now().After(victimAPI.CreationTimestamp.Add(time.Second)) }).Should(BeTrue())
		claim := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: "squatter"},
			Spec: latchkeyv1.APISpec{Identifier: identifier, Hosts: []string{host},
				DefaultAction: latchkeyv1.DefaultActionAuthenticate, Namespaces: []string{"*"}}}
		createAs(claim)
		key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: "mine"},
			Spec: latchkeyv1.APIKeySpec{Scopes: []string{"leads:write"}}}
		createAs(key)
		waitReady(key)
		plaintext := secretValue(tenant.Namespace, key.SecretName(), latchkeyv1.APIKeySecretKey)
		// The tenant's API is known to the authorizer (it accepts the tenant's key
		// once it is served), yet the victim's host keeps the victim's rules.
		Consistently(func(g Gomega) {
			g.Expect(forwardAuth("", "POST", "/v1/admin", host, bearer(plaintext)).Status).To(Equal(401))
			g.Expect(forwardAuth("", "GET", "/v1/leads", host, bearer(victimKey)).Status).To(Equal(200), "the victim's API still serves its host")
		}, "500ms").Should(Succeed())
		Expect(forwardAuth(tenant.Namespace+"/squatter", "GET", "/", "", bearer(plaintext)).Status).To(Equal(403),
			"the squatting API is not served at all")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			ready := metaCondition(claim.Status.Conditions, latchkeyv1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Reason).To(Equal(latchkeyv1.ReasonIdentifierConflict))
		}).WithTimeout(15 * time.Second).Should(Succeed())
	})
})

var _ = Describe("A tenant with an API older than the victim's", func() {
	It("cannot edit it to claim the victim's identifier or host, nor alias a host with a port", func() {
		ctx := context.Background()
		tenant, err := env.NewTenant(ctx, k8s, scheme, "mallory-old", newNamespace())
		Expect(err).NotTo(HaveOccurred())
		own := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: "old"},
			Spec: latchkeyv1.APISpec{Identifier: "https://old." + tenant.Namespace + ".test", Hosts: []string{"old." + tenant.Namespace + ".test"},
				DefaultAction: latchkeyv1.DefaultActionAuthenticate}}
		Expect(tenant.Client.Create(ctx, own)).To(Succeed())
		Eventually(func() bool { return time.Now().After(own.CreationTimestamp.Add(time.Second)) }).Should(BeTrue())
		victimNS := newNamespace()
		host := "leads." + victimNS + ".test"
		victim := newAPI(victimNS, "leads", func(a *latchkeyv1.API) { a.Spec.Hosts = []string{host} })

		// The tenant's API is older, so a claim edited into it would win: the
		// schema refuses the edit.
		steal := own.DeepCopy()
		steal.Spec.Identifier = victim.Spec.Identifier
		Expect(tenant.Client.Patch(ctx, steal, client.MergeFrom(own))).To(MatchError(ContainSubstring("identifier is immutable")))
		steal = own.DeepCopy()
		steal.Spec.Hosts = append(steal.Spec.Hosts, host)
		Expect(tenant.Client.Patch(ctx, steal, client.MergeFrom(own))).To(MatchError(ContainSubstring("hosts are immutable")))

		// host:port would be a second claim key for the same host.
		alias := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: tenant.Namespace, Name: "alias"},
			Spec: latchkeyv1.APISpec{Identifier: "https://alias.test", Hosts: []string{host + ":443"}}}
		Expect(apierrors.IsInvalid(tenant.Client.Create(ctx, alias))).To(BeTrue())
		_, victimKey := newAPIKey(victimNS, "victim", nil)
		Eventually(func() string {
			return forwardAuth("", "GET", "/v1/leads", host+":443", bearer(victimKey)).Header.Get("X-Latchkey-Api")
		}).Should(Equal(victimNS+"/leads"), "a Host with a port is the same host")
	})
})

var _ = Describe("The authorizer's own rights", func() {
	It("cannot read any Secret, nor write credentials or APIs", func() {
		for _, attrs := range []authorizationv1.ResourceAttributes{
			{Verb: "get", Resource: "secrets", Namespace: operatorNamespace, Name: "latchkey-signing-keys"},
			{Verb: "list", Resource: "secrets"},
			{Verb: "watch", Resource: "secrets"},
			{Verb: "update", Group: "latchkey.dev", Resource: "apikeys", Namespace: "default"},
			{Verb: "create", Group: "latchkey.dev", Resource: "oauthclients", Namespace: "default"},
			{Verb: "update", Group: "latchkey.dev", Resource: "apis", Namespace: "default"},
			{Verb: "patch", Group: "latchkey.dev", Resource: "apis", Subresource: "status", Namespace: "default"},
			{Verb: "update", Resource: "configmaps", Namespace: operatorNamespace, Name: jwksConfigMap},
			{Verb: "list", Resource: "configmaps", Namespace: operatorNamespace},
		} {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: authzUser, ResourceAttributes: &attrs}}
			Expect(k8s.Create(context.Background(), review)).To(Succeed())
			Expect(review.Status.Allowed).To(BeFalse(), "%+v", attrs)
		}
	})
})

func secretValue(ns, name, key string) string {
	secret := &corev1.Secret{}
	ExpectWithOffset(1, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, secret)).To(Succeed())
	v := string(secret.Data[key])
	plaintexts = append(plaintexts, v)
	return v
}

func metaCondition(conditions []metav1.Condition, t string) *metav1.Condition {
	for i := range conditions {
		if conditions[i].Type == t {
			return &conditions[i]
		}
	}
	return nil
}
