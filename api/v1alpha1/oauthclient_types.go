package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GrantType is an OAuth 2.0 grant a client may use.
// +kubebuilder:validation:Enum=client_credentials;authorization_code;refresh_token
type GrantType string

const (
	GrantClientCredentials GrantType = "client_credentials"
	GrantAuthorizationCode GrantType = "authorization_code"
	GrantRefreshToken      GrantType = "refresh_token"
)

// TokenEndpointAuthMethod is how a client authenticates at the token endpoint (RFC 7591 names).
// +kubebuilder:validation:Enum=client_secret_basic;client_secret_post;none
type TokenEndpointAuthMethod string

const (
	AuthClientSecretBasic TokenEndpointAuthMethod = "client_secret_basic"
	AuthClientSecretPost  TokenEndpointAuthMethod = "client_secret_post"
	// AuthNone is a public client's: it has no secret (RFC 7591 §2) and proves
	// itself with PKCE alone.
	AuthNone TokenEndpointAuthMethod = "none"
)

// ClientType is confidential (it keeps a secret: a server-side app) or public (it
// cannot: a browser or mobile app), RFC 6749 §2.1.
// +kubebuilder:validation:Enum=confidential;public
type ClientType string

const (
	ClientConfidential ClientType = "confidential"
	ClientPublic       ClientType = "public"
)

// ReasonRegistered is a public client's Ready reason: it has a client_id and no
// secret to issue.
const ReasonRegistered = "Registered"

// Data keys of the Secret that holds an OAuthClient's credentials: a workload that
// mounts it needs nothing else to get a token.
const (
	ClientIDSecretKey     = "client_id"
	ClientSecretSecretKey = "client_secret"
	TokenURLSecretKey     = "token_url"
	IssuerSecretKey       = "issuer"
)

// MaxAccessTokenTTL bounds spec.accessTokenTTL (the schema enforces it); signing
// keys are kept this long after they retire.
const MaxAccessTokenTTL = 24 * time.Hour

// OAuthClientSpec is the desired state of an OAuthClient.
// +kubebuilder:validation:XValidation:rule="has(self.secretName) == has(oldSelf.secretName) && (!has(self.secretName) || self.secretName == oldSelf.secretName)",message="secretName is immutable; create a new OAuthClient to use another Secret"
// +kubebuilder:validation:XValidation:rule="!('authorization_code' in self.grantTypes) || (has(self.redirectURIs) && size(self.redirectURIs) > 0)",message="redirectURIs is required when grantTypes includes authorization_code"
// +kubebuilder:validation:XValidation:rule="!('refresh_token' in self.grantTypes) || 'authorization_code' in self.grantTypes",message="refresh_token is only issued together with authorization_code"
// +kubebuilder:validation:XValidation:rule="self.clientType != 'public' || self.tokenEndpointAuthMethods == ['none']",message="a public client authenticates with tokenEndpointAuthMethods: [none] only"
// +kubebuilder:validation:XValidation:rule="self.clientType == 'public' || !('none' in self.tokenEndpointAuthMethods)",message="tokenEndpointAuthMethods none is for public clients (clientType: public)"
// +kubebuilder:validation:XValidation:rule="self.clientType != 'public' || !('client_credentials' in self.grantTypes)",message="a public client cannot use client_credentials: it has no secret"
// +kubebuilder:validation:XValidation:rule="self.clientType != 'public' || !has(self.requirePKCE) || self.requirePKCE",message="PKCE is mandatory for public clients"
// +kubebuilder:validation:XValidation:rule="self.clientType == oldSelf.clientType",message="clientType is immutable"
type OAuthClientSpec struct {
	// DisplayName is the app's name as users see it on the consent page.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// ClientType is confidential (default: the operator issues a client_secret) or
	// public (no secret is issued; PKCE is mandatory). Immutable.
	// +kubebuilder:default=confidential
	// +optional
	ClientType ClientType `json:"clientType,omitempty"`

	// RequirePKCE makes the authorization_code grant require PKCE (S256). It is
	// true unless set to false, which only a confidential client may do, for an
	// integration written before PKCE.
	// +optional
	RequirePKCE *bool `json:"requirePKCE,omitempty"`

	// GrantTypes the client may use: client_credentials (a machine acting for
	// itself), authorization_code (a third-party app acting in a workspace whose
	// users approved it) and refresh_token (with authorization_code).
	// +kubebuilder:default={"client_credentials"}
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	// +optional
	GrantTypes []GrantType `json:"grantTypes,omitempty"`

	// Scopes the client may request ("resource:action"); a token request without
	// a scope gets all of them.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z][a-z0-9_.-]{0,62}:[a-z*][a-z0-9_.-]{0,62}$`
	// +kubebuilder:validation:items:MaxLength=127
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// Audiences the client may request tokens for (RFC 8707 resource or audience
	// parameter). The first one is the audience of a token request that names none.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Audiences []string `json:"audiences"`

	// AccessTokenTTL is the lifetime of the access tokens issued to this client.
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="accessTokenTTL must be between 1m and 24h"
	// +optional
	AccessTokenTTL *metav1.Duration `json:"accessTokenTTL,omitempty"`

	// RedirectURIs for the authorization_code grant: https, or http on a loopback address only.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=2048
	// Each is compared exactly (RFC 9700 §2.1): no fragments, wildcards or user information.
	// +kubebuilder:validation:items:XValidation:rule="isURL(self) && url(self).getHostname() != ''",message="a redirect URI must be an absolute URL with a host"
	// +kubebuilder:validation:items:XValidation:rule="!isURL(self) || url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['localhost', '127.0.0.1', '::1'])",message="redirect URIs must be https, or http on localhost, 127.0.0.1 or [::1]"
	// +kubebuilder:validation:items:XValidation:rule="!self.contains('#')",message="a redirect URI must not contain a fragment (RFC 6749 section 3.1.2)"
	// +kubebuilder:validation:items:XValidation:rule="!self.contains('*')",message="a redirect URI is compared exactly: no wildcards"
	// +kubebuilder:validation:items:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",message="a redirect URI must not contain user information"
	// +kubebuilder:validation:items:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*:(0[0-9]*|[0-9]{6,}|6553[6-9]|655[4-9][0-9]|65[6-9][0-9][0-9]|6[6-9][0-9][0-9][0-9]|[7-9][0-9][0-9][0-9][0-9])?([/?#].*)?$')",message="a redirect URI's port must be between 1 and 65535"
	// +listType=set
	// +optional
	RedirectURIs []string `json:"redirectURIs,omitempty"`

	// Introspection makes this client a resource server: it may call the token
	// server's introspection endpoint, and the answers are limited to the
	// credentials meant for it. Without it, introspection is refused (403).
	// +optional
	Introspection *IntrospectionPolicy `json:"introspection,omitempty"`

	// TokenEndpointAuthMethods the client may authenticate with.
	// +kubebuilder:default={"client_secret_basic","client_secret_post"}
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	// +optional
	TokenEndpointAuthMethods []TokenEndpointAuthMethod `json:"tokenEndpointAuthMethods,omitempty"`

	CredentialSpec `json:",inline"`
}

// IntrospectionPolicy says which credentials a resource server may learn about.
// A credential outside it introspects as {"active": false}, exactly like an unknown one.
// +kubebuilder:validation:XValidation:rule="(has(self.audiences) && size(self.audiences) > 0) || (has(self.scopes) && size(self.scopes) > 0)",message="introspection needs audiences (for access tokens), scopes (for API keys), or both"
type IntrospectionPolicy struct {
	// Audiences this resource server serves: an access token is active to it only
	// if its aud contains one of them (and only those are returned in aud).
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	Audiences []string `json:"audiences,omitempty"`

	// Scopes this resource server serves: an API key is active to it only if it
	// carries one of them, and the answer's scope lists only those. "orders:*"
	// stands for every scope of the orders resource.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z][a-z0-9_.-]{0,62}:[a-z*][a-z0-9_.-]{0,62}$`
	// +kubebuilder:validation:items:MaxLength=127
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// Namespaces whose credentials this resource server may introspect. Empty
	// means its own namespace only; "*" means every namespace the token server serves.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$`
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`
}

// OAuthClientStatus is the observed state of an OAuthClient. It holds the client_id
// and hashes of the client_secret, never the secret.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.clientID) || (has(self.clientID) && self.clientID == oldSelf.clientID)",message="clientID never changes once assigned"
type OAuthClientStatus struct {
	// ClientID is the public client identifier: 24 lowercase hex digits, assigned
	// once and stable for the life of the resource (rotation changes only the secret).
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{24}$`
	// +optional
	ClientID string `json:"clientID,omitempty"`

	CredentialStatus `json:",inline"`
}

// OAuthClient is an OAuth 2.0 client: the operator assigns its client_id and, for a
// confidential client, generates its client_secret into a Secret and keeps only the
// secret's hash in status. A public client gets a client_id and no secret.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=oc,categories=latchkey
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 241",message="metadata.name must be at most 241 characters (the Secret is named <name>-oauthclient)"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,description="the Ready condition's reason: Issued, Rotating, Registered (public client), Revoked, Expired, or what stops it"
// +kubebuilder:printcolumn:name="Client ID",type=string,JSONPath=`.status.clientID`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.clientType`,priority=1
// +kubebuilder:printcolumn:name="Grant Types",type=string,JSONPath=`.spec.grantTypes`
// +kubebuilder:printcolumn:name="Scopes",type=string,JSONPath=`.spec.scopes`
// +kubebuilder:printcolumn:name="Audiences",type=string,JSONPath=`.spec.audiences`,priority=1
// +kubebuilder:printcolumn:name="Rate Cap",type=integer,JSONPath=`.spec.rateLimit.requests`,priority=1,description="spec.rateLimit.requests: the client's own cap per spec.rateLimit.per on every API"
// +kubebuilder:printcolumn:name="Per",type=string,JSONPath=`.spec.rateLimit.per`,priority=1
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type OAuthClient struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec OAuthClientSpec `json:"spec,omitempty"`

	// Status is the observed state of the client, written by the operator. It defaults
	// to observedGeneration 0 until first written, so that kstatus (Flux, cli-utils)
	// reads a brand-new object as InProgress, not Current.
	// +kubebuilder:default={observedGeneration: 0}
	Status OAuthClientStatus `json:"status,omitempty"`
}

// OAuthClientList is a list of OAuthClients.
// +kubebuilder:object:root=true
type OAuthClientList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OAuthClient `json:"items"`
}

func init() {
	SchemeBuilder.Register(&OAuthClient{}, &OAuthClientList{})
}

// SecretName is the name of the Secret that holds the credentials.
func (c *OAuthClient) SecretName() string {
	if c.Spec.SecretName != "" {
		return c.Spec.SecretName
	}
	return c.Name + "-oauthclient"
}

// Lifecycle returns the lifecycle settings shared by every credential kind.
func (c *OAuthClient) Lifecycle() *CredentialSpec { return &c.Spec.CredentialSpec }

// Public reports whether the client is public (no secret).
func (c *OAuthClient) Public() bool { return c.Spec.ClientType == ClientPublic }

// PKCERequired reports whether authorization codes of this client need PKCE.
func (c *OAuthClient) PKCERequired() bool {
	return c.Public() || c.Spec.RequirePKCE == nil || *c.Spec.RequirePKCE
}

// CredentialStatus returns the status shared by every credential kind.
func (c *OAuthClient) CredentialStatus() *CredentialStatus { return &c.Status.CredentialStatus }
