package controllers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// Attacker specs: a tenant with the built-in edit role in its own namespace (and
// nothing else) tries what SECURITY.md says it cannot do, against the real API
// server and the real manager.

var tenantCount atomic.Int32

// newTenant gives a spec a fresh namespace and a user who may edit it.
func newTenant(ctx context.Context) *testenv.Tenant {
	ns := newNamespace()
	tenant, err := testEnv.NewTenant(ctx, k8s, scheme, fmt.Sprintf("tenant-%d", tenantCount.Add(1)), ns)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return tenant
}

// allAcceptedHashes lists every hash any credential of kind accepts, cluster-wide, by owner.
func allAcceptedHashes(ctx context.Context, kind credentialKind) map[string][]string {
	owners := map[string][]string{}
	var objs []controllers.CredentialObject
	if kind.name == "APIKey" {
		var list latchkeyv1.APIKeyList
		Expect(k8s.List(ctx, &list)).To(Succeed())
		for i := range list.Items {
			objs = append(objs, &list.Items[i])
		}
	} else {
		var list latchkeyv1.OAuthClientList
		Expect(k8s.List(ctx, &list)).To(Succeed())
		for i := range list.Items {
			objs = append(objs, &list.Items[i])
		}
	}
	for _, o := range objs {
		for _, c := range o.CredentialStatus().Credentials {
			owners[c.Hash] = append(owners[c.Hash], o.GetNamespace()+"/"+o.GetName())
		}
	}
	return owners
}

var _ = Describe("A tenant with edit rights in its own namespace", func() {
	ctx := context.Background()

	It("cannot take over another tenant's client_id by writing the Secret before the manager does", func() {
		victim := waitReady(ctx, oauthClientKind, create(ctx, oauthClientKind, newNamespace(), "victim", nil), latchkeyv1.ReasonIssued).(*latchkeyv1.OAuthClient)
		attacker := newTenant(ctx)

		// Create an OAuthClient and at once a Secret of its name that claims to be its
		// controlled, issued Secret, holding the victim's client_id. Retried with a new
		// name until the attacker's Secret lands before the manager's.
		var thief *latchkeyv1.OAuthClient
		attempt := 0
		Eventually(func() error {
			attempt++
			thief = &latchkeyv1.OAuthClient{
				ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: fmt.Sprintf("thief-%d", attempt)},
				Spec:       latchkeyv1.OAuthClientSpec{Audiences: []string{"https://api.example.com"}},
			}
			if err := attacker.Client.Create(ctx, thief); err != nil {
				return StopTrying("creating the OAuthClient").Wrap(err)
			}
			return attacker.Client.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: attacker.Namespace, Name: thief.SecretName(),
					Labels:      map[string]string{controllers.ManagedByLabel: controllers.ManagedByValue},
					Annotations: map[string]string{latchkeyv1.SerialAnnotation: "1"},
					OwnerReferences: []metav1.OwnerReference{{
						APIVersion: latchkeyv1.GroupVersion.String(), Kind: "OAuthClient",
						Name: thief.Name, UID: thief.UID, Controller: ptr.To(true),
					}},
				},
				Data: map[string][]byte{
					latchkeyv1.ClientIDSecretKey:     []byte(victim.Status.ClientID),
					latchkeyv1.ClientSecretSecretKey: []byte(oauthClientKind.forge()),
				},
			})
		}).Should(Succeed())

		ready := waitReady(ctx, oauthClientKind, thief, latchkeyv1.ReasonIssued).(*latchkeyv1.OAuthClient)
		Expect(ready.Status.ClientID).NotTo(Equal(victim.Status.ClientID), "the manager chose the client_id, not the Secret")
		secret := getSecret(ctx, attacker.Namespace, thief.SecretName())
		Expect(string(secret.Data[latchkeyv1.ClientIDSecretKey])).To(Equal(ready.Status.ClientID))
		Expect(credential.Hash(credentialIn(oauthClientKind, secret))).NotTo(Equal(credential.Hash(oauthClientKind.forge())), "the planted secret was replaced")
		Expect(get(ctx, oauthClientKind, victim.Namespace, victim.Name).(*latchkeyv1.OAuthClient).Status.ClientID).
			To(Equal(victim.Status.ClientID))
	})

	for _, kind := range kinds {
		Context("with an "+kind.name, func() {
			// plant writes a credential into the attacker's own object's Secret, with the
			// next serial, as a crashed manager would have left it.
			plant := func(attacker *testenv.Tenant, obj controllers.CredentialObject, plaintext string, annotations map[string]string) {
				secret := &corev1.Secret{}
				Expect(attacker.Client.Get(ctx, client.ObjectKey{Namespace: attacker.Namespace, Name: obj.SecretName()}, secret)).To(Succeed())
				for k, v := range annotations {
					secret.Annotations[k] = v
				}
				secret.Annotations[latchkeyv1.SerialAnnotation] = strconv.FormatInt(obj.CredentialStatus().Serial+1, 10)
				secret.Data[kind.secretKey] = []byte(plaintext)
				Expect(attacker.Client.Update(ctx, secret)).To(Succeed())
			}
			// expectReplaced waits until the manager replaced the planted credential, and
			// checks it never accepted it.
			expectReplaced := func(attacker *testenv.Tenant, obj controllers.CredentialObject, planted string) {
				// Hashes, not plaintexts, in assertions: a failure message must not print a credential.
				Eventually(func() string {
					return credential.Hash(credentialIn(kind, getSecret(ctx, attacker.Namespace, obj.SecretName())))
				}).
					ShouldNot(Equal(credential.Hash(planted)), "the planted credential is replaced")
				Eventually(func(g Gomega) {
					current := credentialIn(kind, getSecret(ctx, attacker.Namespace, obj.SecretName()))
					status := get(ctx, kind, attacker.Namespace, obj.GetName()).CredentialStatus()
					g.Expect(status.Credentials).To(ConsistOf(HaveField("Hash", credential.Hash(current))))
				}).Should(Succeed())
				Eventually(eventReasons).WithArguments(ctx, attacker.Namespace, obj.GetName()).Should(ContainElement("SecretModified"))
			}

			It("cannot inflate the manager's memory with the metadata of its own "+kind.name, func() {
				attacker := newTenant(ctx)
				obj := kind.newObject(attacker.Namespace, "ballast")
				obj.SetAnnotations(map[string]string{"example.com/padding": strings.Repeat("x", 200<<10)})
				labels := map[string]string{}
				var finalizers []string
				for i := range 500 {
					labels[fmt.Sprintf("example.com/label-%03d", i)] = strings.Repeat("y", 63)
					finalizers = append(finalizers, fmt.Sprintf("example.com/finalizer-%03d", i))
				}
				obj.SetLabels(labels)
				obj.SetFinalizers(finalizers)
				Expect(attacker.Client.Create(ctx, obj)).To(Succeed())
				DeferCleanup(func() { // let the namespace go away
					patch(ctx, kind, obj, func(o controllers.CredentialObject) { o.SetFinalizers(nil) })
				})
				waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)

				cached := kind.newObject(attacker.Namespace, obj.GetName())
				Expect(managerCache.Get(ctx, client.ObjectKeyFromObject(obj), cached)).To(Succeed())
				Expect(len(mustJSON(cached))).To(BeNumerically("<", 4<<10), "the manager caches the %s without what it never reads", kind.name)

				By("nor with a rotate request, the one annotation the manager reads, which still reaches it")
				before := get(ctx, kind, attacker.Namespace, obj.GetName()).CredentialStatus().Credentials[0].Hash
				request := strings.Repeat("r", 200<<10)
				patch(ctx, kind, obj, func(o controllers.CredentialObject) {
					o.SetAnnotations(map[string]string{latchkeyv1.RotateAnnotation: request})
				})
				Eventually(func(g Gomega) {
					status := get(ctx, kind, attacker.Namespace, obj.GetName()).CredentialStatus()
					g.Expect(status.Credentials[0].Hash).NotTo(Equal(before), "the rotate request was acted on")
					g.Expect(status.LastRotateRequest).To(Equal(credential.Hash(request)), "status records the request's digest, not the request")
				}).Should(Succeed())
				Expect(managerCache.Get(ctx, client.ObjectKeyFromObject(obj), cached)).To(Succeed())
				Expect(len(mustJSON(cached))).To(BeNumerically("<", 4<<10), "the manager caches the request's digest")
			})

			It("cannot plant a credential of its choosing", func() {
				attacker := newTenant(ctx)
				obj := kind.newObject(attacker.Namespace, "planted")
				Expect(attacker.Client.Create(ctx, obj)).To(Succeed())
				ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
				chosen := kind.forge()
				plant(attacker, ready, chosen, nil)
				expectReplaced(attacker, ready, chosen)
				Expect(allAcceptedHashes(ctx, kind)).NotTo(HaveKey(credential.Hash(chosen)), "no object accepts the planted credential")
			})

			It("cannot bring back a revoked credential", func() {
				attacker := newTenant(ctx)
				obj := kind.newObject(attacker.Namespace, "phoenix")
				Expect(attacker.Client.Create(ctx, obj)).To(Succeed())
				issued := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)
				revoked := credentialIn(kind, getSecret(ctx, attacker.Namespace, issued.SecretName()))
				proof := getSecret(ctx, attacker.Namespace, issued.SecretName()).Annotations

				patch(ctx, kind, issued, func(o controllers.CredentialObject) { o.Lifecycle().Revoked = true })
				Eventually(readyReason).WithArguments(ctx, kind, obj).Should(Equal(latchkeyv1.ReasonRevoked))
				patch(ctx, kind, issued, func(o controllers.CredentialObject) { o.Lifecycle().Revoked = false })
				restored := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)

				plant(attacker, restored, revoked, proof)
				expectReplaced(attacker, restored, revoked)
				Expect(allAcceptedHashes(ctx, kind)).NotTo(HaveKey(credential.Hash(revoked)), "no object accepts the revoked credential")
			})

			It("cannot move an issued credential, with everything the manager wrote beside it, to another object", func() {
				attacker := newTenant(ctx)
				donor, taker := kind.newObject(attacker.Namespace, "donor"), kind.newObject(attacker.Namespace, "taker")
				Expect(attacker.Client.Create(ctx, donor)).To(Succeed())
				Expect(attacker.Client.Create(ctx, taker)).To(Succeed())
				donor = waitReady(ctx, kind, donor, latchkeyv1.ReasonIssued)
				taker = waitReady(ctx, kind, taker, latchkeyv1.ReasonIssued)
				donorSecret := getSecret(ctx, attacker.Namespace, donor.SecretName())

				moved := credentialIn(kind, donorSecret)
				plant(attacker, taker, moved, donorSecret.Annotations)
				expectReplaced(attacker, taker, moved)
				Expect(allAcceptedHashes(ctx, kind)[credential.Hash(moved)]).To(ConsistOf(attacker.Namespace + "/donor"))
			})

			It("cannot make another tenant's leaked credential its own", func() {
				victim := waitReady(ctx, kind, create(ctx, kind, newNamespace(), "victim", nil), latchkeyv1.ReasonIssued)
				leaked := credentialIn(kind, getSecret(ctx, victim.GetNamespace(), victim.SecretName()))
				attacker := newTenant(ctx)
				obj := kind.newObject(attacker.Namespace, "shadow")
				Expect(attacker.Client.Create(ctx, obj)).To(Succeed())
				ready := waitReady(ctx, kind, obj, latchkeyv1.ReasonIssued)

				plant(attacker, ready, leaked, nil)
				Eventually(func() string {
					return credential.Hash(credentialIn(kind, getSecret(ctx, attacker.Namespace, obj.SecretName())))
				}).
					ShouldNot(Equal(credential.Hash(leaked)))
				Expect(allAcceptedHashes(ctx, kind)[credential.Hash(leaked)]).
					To(ConsistOf(victim.GetNamespace()+"/victim"), "only the victim accepts its credential: nothing to shadow in the token server")
			})
		})
	}

	It("cannot inflate the manager's memory with Secrets labelled as the operator's", func() {
		attacker := newTenant(ctx)
		big := bytes.Repeat([]byte("x"), 256<<10)
		annotations := map[string]string{}
		for i := range 8 {
			annotations[fmt.Sprintf("example.com/padding-%d", i)] = string(big[:24<<10])
		}
		var finalizers []string // kept by the API server like any other metadata
		for i := range 2000 {
			finalizers = append(finalizers, fmt.Sprintf("example.com/finalizer-%05d", i))
		}
		for i := range 3 {
			Expect(attacker.Client.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: fmt.Sprintf("ballast-%d", i),
					Labels: map[string]string{controllers.ManagedByLabel: controllers.ManagedByValue}, Annotations: annotations},
				Data: map[string][]byte{"a": big, "b": big},
			})).To(Succeed())
		}
		Expect(attacker.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: "finalized",
				Labels: map[string]string{controllers.ManagedByLabel: controllers.ManagedByValue}, Finalizers: finalizers},
		})).To(Succeed())
		DeferCleanup(func() { // let the namespace go away
			secret := &corev1.Secret{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: attacker.Namespace, Name: "finalized"}, secret)).To(Succeed())
			secret.Finalizers = nil
			Expect(k8s.Update(ctx, secret)).To(Succeed())
		})
		// A Secret with many small values: each one would cost a map entry.
		many := map[string][]byte{}
		for i := range 1000 {
			many[fmt.Sprintf("k%d", i)] = []byte("v")
		}
		Expect(attacker.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: "confetti",
				Labels: map[string]string{controllers.ManagedByLabel: controllers.ManagedByValue}},
			Data: many,
		})).To(Succeed())

		// Owner references of any length: the API server checks only that they are
		// there. A finalizer keeps them while the garbage collector deletes them
		// (their owners do not exist).
		for name, owner := range map[string]metav1.OwnerReference{
			"giant-kind": {APIVersion: "latchkey.dev/v1alpha1", Kind: strings.Repeat("K", 200<<10), Name: "victim", UID: "1e2d3c4b-5a69-4788-9aab-bccddeeff001", Controller: ptr.To(true)},
			"giant-name": {APIVersion: latchkeyv1.GroupVersion.String(), Kind: "APIKey", Name: strings.Repeat("n", 200<<10), UID: "1e2d3c4b-5a69-4788-9aab-bccddeeff002", Controller: ptr.To(true)},
		} {
			Expect(attacker.Client.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: name, OwnerReferences: []metav1.OwnerReference{owner},
					Labels: map[string]string{controllers.ManagedByLabel: controllers.ManagedByValue}, Finalizers: []string{"example.com/hold"}},
			})).To(Succeed())
			DeferCleanup(func() {
				Expect(k8s.Patch(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: name}},
					client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
			})
		}
		cached := func(name string) func(g Gomega) string {
			return func(g Gomega) string {
				record, err := controllers.CachedSecret(ctx, managerCache, types.NamespacedName{Namespace: attacker.Namespace, Name: name})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(record).NotTo(BeEmpty(), "the manager's cache has seen %s", name)
				return record
			}
		}
		for _, name := range []string{"ballast-0", "ballast-1", "ballast-2", "confetti", "finalized", "giant-kind", "giant-name"} {
			Eventually(func(g Gomega) int { return len(cached(name)(g)) }).Should(BeNumerically("<", 1<<10),
				"the manager caches a record of %s, of bounded size", name)
		}
		Expect(managerCache.Get(ctx, client.ObjectKey{Namespace: attacker.Namespace, Name: "ballast-0"}, &corev1.Secret{})).
			NotTo(Succeed(), "nothing reads a Secret from the cache as if it held the Secret")

		By("and holds no credential of its own Secrets, in plaintext or as a digest")
		key := waitReady(ctx, apiKeyKind, create(ctx, apiKeyKind, attacker.Namespace, "digested", nil), latchkeyv1.ReasonIssued)
		plaintext := credentialIn(apiKeyKind, getSecret(ctx, attacker.Namespace, key.SecretName()))
		record := cached(key.SecretName())(Default)
		digest := sha256.Sum256([]byte(plaintext))
		Expect(strings.Contains(record, plaintext)).To(BeFalse(), "the cache record holds the plaintext credential")
		Expect(strings.Contains(record, hex.EncodeToString(digest[:]))).To(BeFalse(), "the cache record holds the credential's hex digest")
		Expect(strings.Contains(record, string(digest[:]))).To(BeFalse(), "the cache record holds the credential's raw digest")
	})

	It("cannot take over another tenant's API identifier or host", func() {
		victimNS := newNamespace()
		host := victimNS + ".example.com"
		victim := waitAPI(ctx, createAPI(ctx, victimNS, "leads", func(a *latchkeyv1.API) {
			a.Spec.Identifier = "https://" + host + "/leads"
			a.Spec.Hosts = []string{host}
		}), metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
		attacker := newTenant(ctx)
		waitPastCreationSecond(victim) // a newcomer, not a tie

		impostor := &latchkeyv1.API{
			ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: "impostor"},
			Spec:       latchkeyv1.APISpec{Identifier: victim.Spec.Identifier, Hosts: []string{"attacker.example.com"}},
		}
		squatter := &latchkeyv1.API{
			ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: "squatter"},
			Spec:       latchkeyv1.APISpec{Identifier: "https://attacker.example.com/leads", Hosts: []string{host}},
		}
		for _, api := range []*latchkeyv1.API{impostor, squatter} {
			Expect(attacker.Client.Create(ctx, api)).To(Succeed())
			DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, api))).To(Succeed()) })
		}
		Expect(meta.FindStatusCondition(waitAPI(ctx, impostor, metav1.ConditionFalse, latchkeyv1.ReasonIdentifierConflict).Status.Conditions,
			latchkeyv1.ConditionReady).Message).To(HavePrefix("identifier " + victim.Spec.Identifier + " is held by"))
		Expect(meta.FindStatusCondition(waitAPI(ctx, squatter, metav1.ConditionFalse, latchkeyv1.ReasonIdentifierConflict).Status.Conditions,
			latchkeyv1.ConditionReady).Message).To(HavePrefix("host " + host + " is held by"))
		Consistently(apiReason).WithArguments(ctx, victim).WithTimeout(2 * time.Second).Should(Equal(latchkeyv1.ReasonAccepted))
	})

	It("cannot write an API's status", func() {
		attacker := newTenant(ctx)
		api := &latchkeyv1.API{
			ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: "self-accepted"},
			Spec:       latchkeyv1.APISpec{Identifier: "https://" + attacker.Namespace + ".example.com/self"},
		}
		Expect(attacker.Client.Create(ctx, api)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, api))).To(Succeed()) })
		base := api.DeepCopy()
		meta.SetStatusCondition(&api.Status.Conditions, metav1.Condition{
			Type: latchkeyv1.ConditionReady, Status: metav1.ConditionTrue, Reason: latchkeyv1.ReasonAccepted, Message: "trust me",
		})
		err := attacker.Client.Status().Patch(ctx, api, client.MergeFrom(base))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "patch: got %v", err)
		err = attacker.Client.Status().Update(ctx, api)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "update: got %v", err)
	})

	It("cannot write the JWKS ConfigMap that resource servers trust", func() {
		attacker := newTenant(ctx)
		key := client.ObjectKey{Namespace: operatorNamespace, Name: jwksConfigMap}
		planted := map[string]string{controllers.JWKSDataKey: `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"attacker"}]}`}
		Eventually(func() error { return k8s.Get(ctx, key, &corev1.ConfigMap{}) }).Should(Succeed())

		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: planted}
		for verb, err := range map[string]error{
			"update": attacker.Client.Update(ctx, cm),
			"patch":  attacker.Client.Patch(ctx, cm, client.Merge),
			"delete": attacker.Client.Delete(ctx, cm),
			"create": attacker.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: "latchkey-jwks-2"}, Data: planted}),
		} {
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s: got %v", verb, err)
		}
		current := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, key, current)).To(Succeed())
		Expect(current.Data[controllers.JWKSDataKey]).NotTo(ContainSubstring("attacker"))
	})

	It("cannot stop the cluster's watches of a kind with a timestamp Go cannot read", func() {
		attacker := newTenant(ctx)
		// RFC 3339 allows a lower-case "t" and "z", and so does the API server's
		// date-time check; metav1.Time does not. Stored, one such object would fail
		// every list and watch of its kind that decodes it: the manager's, the token
		// servers' and the authorizers', for every namespace.
		poisoned := map[string]*unstructured.Unstructured{
			"APIKey, expiresAt": {Object: map[string]any{"apiVersion": "latchkey.dev/v1alpha1", "kind": "APIKey",
				"metadata": map[string]any{"namespace": attacker.Namespace, "name": "poison"},
				"spec":     map[string]any{"expiresAt": "2030-01-01T00:00:00z"}}},
			"OAuthClient, expiresAt": {Object: map[string]any{"apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthClient",
				"metadata": map[string]any{"namespace": attacker.Namespace, "name": "poison"},
				"spec":     map[string]any{"scopes": []any{"leads:read"}, "expiresAt": "2030-01-01t00:00:00Z"}}},
			"OAuthGrant, grantedAt": {Object: map[string]any{"apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthGrant",
				"metadata": map[string]any{"namespace": attacker.Namespace, "name": "poison"},
				"spec": map[string]any{"client": map[string]any{"namespace": "partners", "name": "crm", "clientID": "0123456789abcdef01234567", "uid": "u-1"},
					"scopes": []any{"leads:read"}, "audiences": []any{"https://api.example.com"}, "grantedBy": "mallory", "grantedAt": "2026-01-01T00:00:00z"}}},
		}
		errs := map[string]error{}
		for what, obj := range poisoned {
			errs[what] = attacker.Client.Create(ctx, obj)
			if errs[what] == nil {
				DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj))).To(Succeed()) })
			}
		}
		// Another tenant's credentials are still issued: the manager's watches run.
		for _, kind := range []credentialKind{apiKeyKind, oauthClientKind} {
			waitReady(ctx, kind, create(ctx, kind, newNamespace(), "bystander", nil), latchkeyv1.ReasonIssued)
		}
		for what, err := range errs {
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s: got %v", what, err)
			Expect(err.Error()).To(ContainSubstring("should match"), what)
		}
	})

	It("cannot hold another tenant's new key behind a burst of its own", func() {
		attacker := newTenant(ctx)
		const burst = 400
		var created sync.WaitGroup
		names := make(chan int, burst)
		for i := range burst {
			names <- i
		}
		close(names)
		for range 16 {
			created.Go(func() {
				defer GinkgoRecover()
				for i := range names {
					key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: fmt.Sprintf("burst-%d", i)}}
					Expect(attacker.Client.Create(ctx, key)).To(Succeed())
				}
			})
		}
		created.Wait()
		DeferCleanup(func() {
			Expect(k8s.DeleteAllOf(ctx, &latchkeyv1.APIKey{}, client.InNamespace(attacker.Namespace))).To(Succeed())
		})
		waiting := func() int {
			var list latchkeyv1.APIKeyList
			Expect(k8s.List(ctx, &list, client.InNamespace(attacker.Namespace))).To(Succeed())
			n := 0
			for _, k := range list.Items {
				if !meta.IsStatusConditionTrue(k.Status.Conditions, latchkeyv1.ConditionReady) {
					n++
				}
			}
			return n
		}
		before := waiting()
		AddReportEntry("the burst's keys waiting when the other tenant's key is created", before)
		Expect(before).To(BeNumerically(">=", 100), "the burst left the manager a backlog to jump")
		start := time.Now()
		waitReady(ctx, apiKeyKind, create(ctx, apiKeyKind, newNamespace(), "bystander", nil), latchkeyv1.ReasonIssued)
		AddReportEntry("another tenant's key Ready after", time.Since(start).String())
		// First in, first out, the bystander's key would have waited for every one
		// of them (none waiting now, but the few in hand); served in turn, for
		// about one, and the rest of the burst for it.
		Expect(waiting()).To(BeNumerically(">=", 20),
			"%d of the burst's keys were waiting when the other tenant's was created", before)
	})

	It("cannot write status: hashes are the manager's alone", func() {
		attacker := newTenant(ctx)
		key := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: attacker.Namespace, Name: "self-issued"}}
		Expect(attacker.Client.Create(ctx, key)).To(Succeed())
		base := key.DeepCopy()
		key.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: credential.Hash(apiKeyKind.forge()), Serial: 99, IssuedAt: metav1.Now()}}
		err := attacker.Client.Status().Patch(ctx, key, client.MergeFrom(base))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	})
})
