package controllers

import (
	"context"
	"fmt"
	"io"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/issuanceproof"
)

// +kubebuilder:rbac:groups=latchkey.dev,resources=oauthclients,verbs=get;list;watch
// +kubebuilder:rbac:groups=latchkey.dev,resources=oauthclients/status,verbs=get;update;patch

// ClientIDField indexes the manager's OAuthClient cache by status.clientID.
const ClientIDField = "status.clientID"

// OAuthClientKind plugs the OAuth client format into the credential lifecycle:
// a stable 24-hex client_id and a rotating 64-hex client_secret.
type OAuthClientKind struct {
	// IssuerURL and TokenURL are written into the Secret (manager flags --issuer-url, --token-url).
	IssuerURL, TokenURL string
	// Random is the entropy source (crypto/rand.Reader in production).
	Random io.Reader
	// Keys derives client_ids; Clients finds other holders of one (indexed by ClientIDField).
	Keys    *IssuanceKeySource
	Clients client.Reader
}

var _ CredentialKind[*latchkeyv1.OAuthClient] = OAuthClientKind{}

func (OAuthClientKind) Name() string                              { return "OAuth client secret" }
func (OAuthClientKind) NewObject() *latchkeyv1.OAuthClient        { return &latchkeyv1.OAuthClient{} }
func (OAuthClientKind) NewList() client.ObjectList                { return &latchkeyv1.OAuthClientList{} }
func (OAuthClientKind) Scopes(c *latchkeyv1.OAuthClient) []string { return c.Spec.Scopes }
func (OAuthClientKind) SecretKey() string                         { return latchkeyv1.ClientSecretSecretKey }
func (OAuthClientKind) Status(c *latchkeyv1.OAuthClient) any      { return c.Status }
func (OAuthClientKind) Issued(*latchkeyv1.OAuthClient, string)    {}
func (OAuthClientKind) Secretless(c *latchkeyv1.OAuthClient) bool { return c.Public() }

// Prepare assigns the client_id once: derived from the object's UID with the
// issuance key, so it is the manager's choice, the same after a crash, and never
// read from a Secret (which the tenant can write). A client_id that another
// OAuthClient has a better claim to is refused: the token server answers for
// neither while both can authenticate with it.
func (k OAuthClientKind) Prepare(ctx context.Context, c *latchkeyv1.OAuthClient) error {
	key, err := k.Keys.Get(ctx)
	if err != nil {
		return err
	}
	id := c.Status.ClientID
	if id == "" {
		id = key.ClientID(c.UID)
	}
	var holders latchkeyv1.OAuthClientList
	if err := k.Clients.List(ctx, &holders, client.MatchingFields{ClientIDField: id}); err != nil {
		return fmt.Errorf("looking up client_id %s: %w", id, err)
	}
	for i := range holders.Items {
		if other := &holders.Items[i]; other.UID != c.UID && betterClaim(key, id, other, c) {
			// The condition and Event are read in this object's namespace: they do not
			// name the other object, which may be another tenant's. The log does.
			ctrl.LoggerFrom(ctx).Info("client_id refused: another OAuthClient holds it by right",
				"clientID", id, "holder", other.Namespace+"/"+other.Name)
			return &Refusal{Reason: latchkeyv1.ReasonClientIDConflict, Message: fmt.Sprintf(
				"client_id %s is already held by another OAuthClient; this client gets no secret until that one is gone (an administrator can find it in the manager's log)", id)}
		}
	}
	c.Status.ClientID = id
	return nil
}

// betterClaim reports whether a's claim to id beats b's, the same way whichever of
// the two is reconciled: the object the id was derived for wins (a status restored
// onto another object cannot be); between two that are not (ids from before
// derivation, or from an earlier issuance key), the older, then the lower UID.
func betterClaim(key *issuanceproof.Key, id string, a, b *latchkeyv1.OAuthClient) bool {
	aDerived, bDerived := key.ClientID(a.UID) == id, key.ClientID(b.UID) == id
	if aDerived != bDerived {
		return aDerived
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.UID < b.UID
}

// ClientIDIndex is the index function of ClientIDField.
func ClientIDIndex(obj client.Object) []string {
	if c, ok := obj.(*latchkeyv1.OAuthClient); ok && c.Status.ClientID != "" {
		return []string{c.Status.ClientID}
	}
	return nil
}

func (k OAuthClientKind) Generate(*latchkeyv1.OAuthClient) (string, error) {
	return credential.NewClientSecret(k.Random)
}

func (k OAuthClientKind) PublicData(c *latchkeyv1.OAuthClient) map[string][]byte {
	return map[string][]byte{
		latchkeyv1.ClientIDSecretKey: []byte(c.Status.ClientID),
		latchkeyv1.TokenURLSecretKey: []byte(k.TokenURL),
		latchkeyv1.IssuerSecretKey:   []byte(k.IssuerURL),
	}
}
