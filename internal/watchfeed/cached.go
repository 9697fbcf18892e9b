package watchfeed

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// The watch decodes APIKeys and OAuthClients into these types rather than the API's:
// they hold only what the index reads. Half of a reconciled APIKey's JSON is
// metadata.managedFields and a fifth is status.conditions; here the decoder scans
// past them without building anything (make bench, "Where cold start goes").

// cachedMeta is ObjectMeta without what the index never reads. Its fields named like
// ObjectMeta's JSON fields shadow them (encoding/json's rule for embedded structs),
// so those are skipped rather than decoded.
type cachedMeta struct {
	metav1.ObjectMeta `json:",inline"`

	ManagedFields   skipped `json:"managedFields,omitempty"`
	Annotations     skipped `json:"annotations,omitempty"`
	Labels          skipped `json:"labels,omitempty"`
	OwnerReferences skipped `json:"ownerReferences,omitempty"`
	Finalizers      skipped `json:"finalizers,omitempty"`
}

// skipped is a JSON value the decoder scans past and drops.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

// MarshalJSON writes nothing useful: the token server never encodes these types, but
// a value of the type must still encode as valid JSON.
func (skipped) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// cachedStatus is the part of a credential's status the index reads.
type cachedStatus struct {
	ClientID    string                      `json:"clientID,omitempty"`
	Credentials []latchkeyv1.CredentialHash `json:"credentials,omitempty"`
	LastUsedAt  *metav1.Time                `json:"lastUsedAt,omitempty"`
	// Leaks keeps each report's hash alone: the token server needs only to know
	// that a credential was reported, to write a report once.
	Leaks []cachedLeak `json:"leaks,omitempty"`
}

type cachedLeak struct {
	Hash string `json:"hash"`
}

// leaks are the reports the index reads: their hashes.
func (s *cachedStatus) leaks() []latchkeyv1.LeakRecord {
	if len(s.Leaks) == 0 {
		return nil
	}
	out := make([]latchkeyv1.LeakRecord, len(s.Leaks))
	for i, l := range s.Leaks {
		out[i].Hash = l.Hash
	}
	return out
}

// cachedAPIKey is an APIKey as the token server decodes it.
type cachedAPIKey struct {
	metav1.TypeMeta `json:",inline"`
	cachedMeta      `json:"metadata"`
	Spec            latchkeyv1.APIKeySpec `json:"spec"`
	Status          cachedStatus          `json:"status"`
}

// cachedOAuthClient is an OAuthClient as the token server decodes it.
type cachedOAuthClient struct {
	metav1.TypeMeta `json:",inline"`
	cachedMeta      `json:"metadata"`
	Spec            latchkeyv1.OAuthClientSpec `json:"spec"`
	Status          cachedStatus               `json:"status"`
}

// cachedAPI is an API as the index decodes it: the whole spec (APIs are few and
// small), without the metadata the index never reads.
type cachedAPI struct {
	metav1.TypeMeta `json:",inline"`
	cachedMeta      `json:"metadata"`
	Spec            latchkeyv1.APISpec `json:"spec"`
}

// cachedOAuthGrant is an OAuthGrant as the index decodes it: the spec, the
// families' IDs and the consents (the rest of status is the token server's
// bookkeeping).
type cachedOAuthGrant struct {
	metav1.TypeMeta `json:",inline"`
	cachedMeta      `json:"metadata"`
	Spec            latchkeyv1.OAuthGrantSpec `json:"spec"`
	Status          struct {
		RefreshFamilies []struct {
			ID string `json:"id"`
		} `json:"refreshFamilies,omitempty"`
		Consents []latchkeyv1.Consent `json:"consents,omitempty"`
	} `json:"status"`
}

// cachedObject is a cached kind's pointer: the object the Reflector handles.
type cachedObject[T any] interface {
	*T
	runtime.Object
}

// cachedList is a list of one cached kind, as the API server sends it.
type cachedList[T any, P cachedObject[T]] struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []T `json:"items"`
}

func (l *cachedList[T, P]) DeepCopyObject() runtime.Object {
	out := &cachedList[T, P]{TypeMeta: l.TypeMeta, Items: make([]T, 0, len(l.Items))}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	for i := range l.Items {
		out.Items = append(out.Items, *P(&l.Items[i]).DeepCopyObject().(P))
	}
	return out
}

// cacheScheme maps latchkey.dev/v1alpha1's kinds to the cached types.
func cacheScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	gv := latchkeyv1.GroupVersion
	s.AddKnownTypeWithName(gv.WithKind("APIKey"), &cachedAPIKey{})
	s.AddKnownTypeWithName(gv.WithKind("APIKeyList"), &cachedList[cachedAPIKey, *cachedAPIKey]{})
	s.AddKnownTypeWithName(gv.WithKind("OAuthClient"), &cachedOAuthClient{})
	s.AddKnownTypeWithName(gv.WithKind("OAuthClientList"), &cachedList[cachedOAuthClient, *cachedOAuthClient]{})
	s.AddKnownTypeWithName(gv.WithKind("API"), &cachedAPI{})
	s.AddKnownTypeWithName(gv.WithKind("APIList"), &cachedList[cachedAPI, *cachedAPI]{})
	s.AddKnownTypeWithName(gv.WithKind("OAuthGrant"), &cachedOAuthGrant{})
	s.AddKnownTypeWithName(gv.WithKind("OAuthGrantList"), &cachedList[cachedOAuthGrant, *cachedOAuthGrant]{})
	metav1.AddToGroupVersion(s, gv)
	return s
}

// apiKey is the APIKey the index reads.
func (k *cachedAPIKey) apiKey() *latchkeyv1.APIKey {
	o := &latchkeyv1.APIKey{Spec: k.Spec}
	o.Namespace, o.Name, o.UID = k.Namespace, k.Name, k.UID
	o.Status.Credentials, o.Status.LastUsedAt, o.Status.Leaks = k.Status.Credentials, k.Status.LastUsedAt, k.Status.leaks()
	return o
}

// oauthClient is the OAuthClient the index reads.
func (c *cachedOAuthClient) oauthClient() *latchkeyv1.OAuthClient {
	o := &latchkeyv1.OAuthClient{Spec: c.Spec}
	o.Namespace, o.Name, o.UID = c.Namespace, c.Name, c.UID
	o.Status.ClientID, o.Status.Credentials, o.Status.LastUsedAt = c.Status.ClientID, c.Status.Credentials, c.Status.LastUsedAt
	o.Status.Leaks = c.Status.leaks()
	return o
}

// api is the API the index reads.
func (a *cachedAPI) api() *latchkeyv1.API {
	o := &latchkeyv1.API{Spec: a.Spec}
	o.Namespace, o.Name, o.UID, o.CreationTimestamp = a.Namespace, a.Name, a.UID, a.CreationTimestamp
	return o
}

// grant is the OAuthGrant the index reads.
func (g *cachedOAuthGrant) grant() *latchkeyv1.OAuthGrant {
	o := &latchkeyv1.OAuthGrant{Spec: g.Spec}
	o.Namespace, o.Name, o.UID, o.ResourceVersion = g.Namespace, g.Name, g.UID, g.ResourceVersion
	for _, f := range g.Status.RefreshFamilies {
		o.Status.RefreshFamilies = append(o.Status.RefreshFamilies, latchkeyv1.RefreshFamily{ID: f.ID})
	}
	o.Status.Consents = g.Status.Consents
	return o
}

// DeepCopyObject and DeepCopyInto make these runtime.Objects. They are written by
// hand: controller-gen generates deep copies only for API packages.

func (m *cachedMeta) DeepCopyInto(out *cachedMeta) {
	*out = *m
	m.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
}

func (s *cachedStatus) DeepCopyInto(out *cachedStatus) {
	*out = *s
	if s.Credentials != nil {
		out.Credentials = make([]latchkeyv1.CredentialHash, len(s.Credentials))
		for i := range s.Credentials {
			s.Credentials[i].DeepCopyInto(&out.Credentials[i])
		}
	}
	out.LastUsedAt = s.LastUsedAt.DeepCopy()
	out.Leaks = slices.Clone(s.Leaks)
}

func (k *cachedAPIKey) DeepCopyObject() runtime.Object {
	out := &cachedAPIKey{TypeMeta: k.TypeMeta}
	k.cachedMeta.DeepCopyInto(&out.cachedMeta)
	k.Spec.DeepCopyInto(&out.Spec)
	k.Status.DeepCopyInto(&out.Status)
	return out
}

func (c *cachedOAuthClient) DeepCopyObject() runtime.Object {
	out := &cachedOAuthClient{TypeMeta: c.TypeMeta}
	c.cachedMeta.DeepCopyInto(&out.cachedMeta)
	c.Spec.DeepCopyInto(&out.Spec)
	c.Status.DeepCopyInto(&out.Status)
	return out
}

func (a *cachedAPI) DeepCopyObject() runtime.Object {
	out := &cachedAPI{TypeMeta: a.TypeMeta}
	a.cachedMeta.DeepCopyInto(&out.cachedMeta)
	a.Spec.DeepCopyInto(&out.Spec)
	return out
}

func (g *cachedOAuthGrant) DeepCopyObject() runtime.Object {
	out := *g
	g.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	g.Spec.DeepCopyInto(&out.Spec)
	out.Status.RefreshFamilies = slices.Clone(g.Status.RefreshFamilies)
	out.Status.Consents = nil
	for i := range g.Status.Consents {
		out.Status.Consents = append(out.Status.Consents, *g.Status.Consents[i].DeepCopy())
	}
	return &out
}
