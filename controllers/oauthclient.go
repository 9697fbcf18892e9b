package controllers

import (
	"io"

	corev1 "k8s.io/api/core/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// +kubebuilder:rbac:groups=latchkey.dev,resources=oauthclients,verbs=get;list;watch
// +kubebuilder:rbac:groups=latchkey.dev,resources=oauthclients/status,verbs=get;update;patch

// OAuthClientKind plugs the OAuth client format into the credential lifecycle:
// a stable 24-hex client_id and a rotating 64-hex client_secret.
type OAuthClientKind struct {
	// IssuerURL and TokenURL are written into the Secret (manager flags --issuer-url, --token-url).
	IssuerURL, TokenURL string
	// Random is the entropy source (crypto/rand.Reader in production).
	Random io.Reader
}

var _ CredentialKind[*latchkeyv1.OAuthClient] = OAuthClientKind{}

func (OAuthClientKind) Name() string                       { return "OAuth client secret" }
func (OAuthClientKind) NewObject() *latchkeyv1.OAuthClient { return &latchkeyv1.OAuthClient{} }

// Prepare assigns the client_id once. If an earlier reconcile wrote the Secret but
// died before recording the id, the id in the Secret we own is the one to keep.
func (k OAuthClientKind) Prepare(c *latchkeyv1.OAuthClient, owned *corev1.Secret) error {
	if c.Status.ClientID != "" {
		return nil
	}
	if owned != nil {
		if id := string(owned.Data[latchkeyv1.ClientIDSecretKey]); credential.ValidClientID(id) {
			c.Status.ClientID = id
			return nil
		}
	}
	id, err := credential.NewClientID(k.Random)
	if err != nil {
		return err
	}
	c.Status.ClientID = id
	return nil
}

func (k OAuthClientKind) Generate(*latchkeyv1.OAuthClient) (string, error) {
	return credential.NewClientSecret(k.Random)
}

// Plaintext accepts a well-formed client_secret for this client's id.
func (OAuthClientKind) Plaintext(c *latchkeyv1.OAuthClient, data map[string][]byte) (string, bool) {
	secret := string(data[latchkeyv1.ClientSecretSecretKey])
	if !credential.ValidClientSecret(secret) || string(data[latchkeyv1.ClientIDSecretKey]) != c.Status.ClientID {
		return "", false
	}
	return secret, true
}

func (k OAuthClientKind) SecretData(c *latchkeyv1.OAuthClient, plaintext string) map[string][]byte {
	return map[string][]byte{
		latchkeyv1.ClientIDSecretKey:     []byte(c.Status.ClientID),
		latchkeyv1.ClientSecretSecretKey: []byte(plaintext),
		latchkeyv1.TokenURLSecretKey:     []byte(k.TokenURL),
		latchkeyv1.IssuerSecretKey:       []byte(k.IssuerURL),
	}
}

func (OAuthClientKind) Issued(*latchkeyv1.OAuthClient, string) {}
