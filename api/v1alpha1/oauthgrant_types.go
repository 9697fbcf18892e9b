package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkspaceLabel marks a namespace as a workspace: a place where users may install
// third-party apps (OAuthClients of any namespace) through the consent page. The
// user also needs RBAC to create oauthgrants in it.
const (
	WorkspaceLabel      = "latchkey.dev/workspace"
	WorkspaceLabelValue = "true"
)

// GrantNamePrefix begins the name of every OAuthGrant the token server writes:
// "app-<client_id>", one per app per workspace.
const GrantNamePrefix = "app-"

// Reasons of an OAuthGrant's Ready condition.
const (
	ReasonGranted       = "Granted"       // True: the app may act in the workspace
	ReasonGrantRevoked  = "Revoked"       // True: spec.revoked is true, as declared; its tokens are refused
	ReasonClientChanged = "ClientChanged" // Event: the OAuthClient is gone or is another object now; the grant is deleted
)

// Limits of an OAuthGrant's status, so that one busy app cannot grow the object
// past what etcd stores: the least recently used family and the oldest redeemed
// code give way first.
const (
	MaxRefreshFamilies = 64
	MaxRedeemedCodes   = 64
	MaxConsents        = 64
)

// GrantClientReference names the OAuthClient a grant was given to. The UID pins the
// object: a client deleted and created again under the same name is another app.
type GrantClientReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{24}$`
	ClientID string `json:"clientID"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`
}

// OAuthGrantSpec is the desired state of an OAuthGrant: which app may act in this
// workspace, with which scopes, and who said so.
// +kubebuilder:validation:XValidation:rule="self.client == oldSelf.client",message="client is immutable; a grant belongs to one app"
// +kubebuilder:validation:XValidation:rule="!(has(oldSelf.revoked) && oldSelf.revoked) || (has(self.revoked) && self.revoked)",message="a revoked grant stays revoked: approving the app again creates a new grant, so no token of the old one ever works again"
type OAuthGrantSpec struct {
	Client GrantClientReference `json:"client"`

	// Scopes the users of this workspace granted the app. Tokens carry at most
	// these, and at most what the OAuthClient still has.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z][a-z0-9_.-]{0,62}:[a-z*][a-z0-9_.-]{0,62}$`
	// +kubebuilder:validation:items:MaxLength=127
	// +listType=set
	Scopes []string `json:"scopes"`

	// Audiences (API identifiers) the app's tokens may be issued for.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Audiences []string `json:"audiences"`

	// GrantedBy is the user (as RBAC names them) who last approved the app here.
	// +kubebuilder:validation:MaxLength=512
	GrantedBy string `json:"grantedBy"`

	// GrantedAt is when they approved it. RFC 3339 as Go reads it (see TimestampPattern).
	// +kubebuilder:validation:XValidation:rule="self >= timestamp('1970-01-01T00:00:00Z') && self < timestamp('9000-01-01T00:00:00Z')",message="must be between 1970 and 9000 (UTC)"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`
	GrantedAt metav1.Time `json:"grantedAt"`

	// Revoked uninstalls the app without deleting the record: its refresh tokens and
	// access tokens stop working at once, for good (it cannot be set back to false;
	// approving the app again replaces the grant). Deleting the grant does the same.
	// +optional
	Revoked bool `json:"revoked,omitempty"`
}

// RefreshFamily is one chain of refresh tokens, started by one authorization code.
// Each refresh replaces the token; presenting a replaced one again kills the family
// (RFC 9700 §4.14.2).
type RefreshFamily struct {
	// ID is the SHA-256 (hex, truncated) of the family's secret identifier; the
	// identifier itself is only inside the refresh tokens.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{32}$`
	ID string `json:"id"`

	// Code is the SHA-256 (hex, truncated) of the authorization code's identifier
	// that started the family: a second redemption of that code kills the family.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{32}$`
	Code string `json:"code"`

	// Generation counts the refreshes; the current token carries it.
	Generation int64 `json:"generation"`

	// TokenHash is the hash of the current refresh token, "sha256:<64 hex>".
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	TokenHash string `json:"tokenHash"`

	// Subject is the user who authorized the app; Groups are theirs. Every refresh
	// asks RBAC again whether they may still install apps in the workspace.
	// +kubebuilder:validation:MaxLength=512
	Subject string `json:"subject"`
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	// +optional
	Groups []string `json:"groups,omitempty"`

	// Scope is the family's scope, space-separated; a refresh may only narrow it.
	// +kubebuilder:validation:MaxLength=8192
	Scope string `json:"scope"`

	// Audiences of the family's access tokens.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Audiences []string `json:"audiences"`

	// IssuedAt is when the code was redeemed; RefreshedAt when the token last rotated.
	IssuedAt    metav1.Time `json:"issuedAt"`
	RefreshedAt metav1.Time `json:"refreshedAt"`

	// UpstreamSession is the upstream provider's refresh token for the user's
	// sign-in, encrypted under a key that only the family's refresh token yields
	// (status holds the family's hash alone): the token server asks the provider
	// with it, at most once per --upstream-revalidation-interval, whether the user
	// is still who they were, and ends the family when the provider refuses.
	// +kubebuilder:validation:MaxLength=8192
	// +optional
	UpstreamSession string `json:"upstreamSession,omitempty"`

	// ValidatedAt is when the upstream provider last confirmed the user (the
	// sign-in, or a revalidation).
	// +optional
	ValidatedAt *metav1.Time `json:"validatedAt,omitempty"`
}

// Consent records that a user approved the app on the consent page, for this
// workspace: the page is skipped for that user only, and only for a request that
// asks at most what they approved. Only the token server writes it.
type Consent struct {
	// User is who approved, as RBAC names them.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	User string `json:"user"`

	// Scopes and Audiences they approved, over every approval of theirs.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=127
	// +listType=set
	Scopes []string `json:"scopes"`
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Audiences []string `json:"audiences"`

	// ApprovedAt is when they last approved.
	ApprovedAt metav1.Time `json:"approvedAt"`
}

// RedeemedCode remembers an authorization code until it has expired, so that it is
// redeemed once across every token-server replica.
type RedeemedCode struct {
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{32}$`
	ID        string      `json:"id"`
	ExpiresAt metav1.Time `json:"expiresAt"`
}

// OAuthGrantStatus is the observed state of an OAuthGrant; only the token server
// and the manager write it.
type OAuthGrantStatus struct {
	// Conditions: Ready (Granted, or Revoked as declared).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// RefreshFamilies are the live refresh-token chains, by hash only.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=id
	// +optional
	RefreshFamilies []RefreshFamily `json:"refreshFamilies,omitempty"`

	// RedeemedCodes are the authorization codes redeemed and not yet expired.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=id
	// +optional
	RedeemedCodes []RedeemedCode `json:"redeemedCodes,omitempty"`

	// Consents are the users who approved the app here on the consent page, and
	// what they approved: the page is skipped only for them. Tenants may edit a
	// grant's spec, never its status, so a grant created by hand has none and
	// skips the page for no one. The least recently approved give way past the limit.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=user
	// +optional
	Consents []Consent `json:"consents,omitempty"`

	// LastUsedAt is when a code or refresh token of this grant was last redeemed.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`
}

// OAuthGrant records that users of this workspace (namespace) installed a
// third-party app: an OAuthClient, of any namespace, may act here with the granted
// scopes. The token server creates it on consent; deleting it (or spec.revoked)
// uninstalls the app at once.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=og,categories=latchkey
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.client.name`
// +kubebuilder:printcolumn:name="Publisher",type=string,JSONPath=`.spec.client.namespace`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,description="the Ready condition's reason: Granted or Revoked"
// +kubebuilder:printcolumn:name="Scopes",type=string,JSONPath=`.spec.scopes`
// +kubebuilder:printcolumn:name="Granted By",type=string,JSONPath=`.spec.grantedBy`
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type OAuthGrant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec OAuthGrantSpec `json:"spec,omitempty"`

	// Status is the observed state of the grant, written by the operator. It defaults
	// to observedGeneration 0 until first written, so that kstatus (Flux, cli-utils)
	// reads a brand-new object as InProgress, not Current.
	// +kubebuilder:default={observedGeneration: 0}
	Status OAuthGrantStatus `json:"status,omitempty"`
}

// OAuthGrantList is a list of OAuthGrants.
// +kubebuilder:object:root=true
type OAuthGrantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OAuthGrant `json:"items"`
}

func init() {
	SchemeBuilder.Register(&OAuthGrant{}, &OAuthGrantList{})
}

// GrantName is the name of the grant of the app with clientID in any workspace.
func GrantName(clientID string) string { return GrantNamePrefix + clientID }
