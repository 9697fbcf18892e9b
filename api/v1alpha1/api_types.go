package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultAction is what the authorizer does with a request no rule matches.
// +kubebuilder:validation:Enum=deny;authenticate
type DefaultAction string

const (
	// DefaultActionDeny refuses an unmatched route (403) whatever the credential.
	DefaultActionDeny DefaultAction = "deny"
	// DefaultActionAuthenticate lets any valid credential through an unmatched route.
	DefaultActionAuthenticate DefaultAction = "authenticate"
)

// Reasons of an API's Ready condition, and of a credential's ScopesKnown condition.
const (
	ReasonAccepted = "Accepted" // API Ready=True: the authorizer serves it
	// API Ready=False: an older API holds the same identifier or one of the same hosts.
	ReasonIdentifierConflict = "IdentifierConflict"

	// ConditionScopesKnown is False on an APIKey or OAuthClient with a scope that no
	// API's catalogue lists (when at least one API exists): usually a typo.
	ConditionScopesKnown = "ScopesKnown"
	ReasonUnknownScope   = "UnknownScope"
	ReasonAllScopesKnown = "AllScopesKnown"
	ReasonNoCatalogue    = "NoCatalogue" // True: no API exists, so nothing to check against
)

// APIScope is one entry of an API's scope catalogue.
type APIScope struct {
	// Name of the scope, "resource:action" (leads:read).
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9_.-]{0,62}:[a-z][a-z0-9_.-]{0,62}$`
	// +kubebuilder:validation:MaxLength=127
	Name string `json:"name"`

	// Description says what the scope allows, in words a customer understands
	// ("List and get leads"); shown on consent pages and in the API documentation.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Description string `json:"description,omitempty"`
}

// APIRule says which scopes a route needs.
type APIRule struct {
	// Methods the rule applies to; empty means every method.
	// +kubebuilder:validation:MaxItems=9
	// +kubebuilder:validation:items:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS;CONNECT;TRACE
	// +listType=set
	// +optional
	Methods []string `json:"methods,omitempty"`

	// PathPrefix the request path must start with, on a segment boundary:
	// "/v1/leads" matches /v1/leads and /v1/leads/42 but not /v1/leadsx.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="pathPrefix must start with /"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#') && !self.contains('%') && !self.contains('//') && !self.contains('/./') && !self.contains('/../') && !self.endsWith('/.') && !self.endsWith('/..')",message="pathPrefix must be a plain path: no query, fragment, percent-encoding, empty, . or .. segments"
	PathPrefix string `json:"pathPrefix"`

	// Scopes a credential must all carry for the route; empty means any valid credential.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=127
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// RateLimit is a budget per credential for the requests this rule matches,
	// counted apart from the API's own (spec.rateLimit), which they also spend: a
	// write route may be stricter than the API.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
}

// APISpec is the desired state of an API.
// +kubebuilder:validation:XValidation:rule="has(self.hosts) == has(oldSelf.hosts) && (!has(self.hosts) || self.hosts == oldSelf.hosts)",message="hosts are immutable: a claim dates from the API's creation, so create a new API to serve other hosts"
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || self.rules.all(r, !has(r.scopes) || r.scopes.all(s, has(self.scopes) && self.scopes.exists(c, c.name == s)))",message="every scope a rule requires must be in the scopes catalogue"
type APISpec struct {
	// DisplayName is a human-readable name for the API.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// Identifier is the audience that access tokens for this API carry
	// (https://api.example.com/leads). Unique across the cluster: the oldest API
	// holds it, any other gets Ready=False (IdentifierConflict). Immutable, as are
	// hosts: an API's claims date from its creation, so an old API edited to claim
	// another's identifier would otherwise win it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="identifier is immutable: a claim dates from the API's creation, so create a new API for another identifier"
	Identifier string `json:"identifier"`

	// Hosts are the host names the API is served on (api.example.com, without a
	// port: a request's Host is matched without its port, so that api.example.com:443
	// is never a second claim to api.example.com); the authorizer picks the API by
	// Host when the proxy does not name it. Each host belongs to the oldest API that
	// lists it. Immutable.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +listType=set
	// +optional
	Hosts []string `json:"hosts,omitempty"`

	// Scopes is the catalogue of the scopes the API understands.
	// +kubebuilder:validation:MaxItems=128
	// +listType=map
	// +listMapKey=name
	// +optional
	Scopes []APIScope `json:"scopes,omitempty"`

	// Rules say which scopes each route needs; the most specific match wins (the
	// longest pathPrefix; at equal length, a rule that names the method).
	// +kubebuilder:validation:MaxItems=128
	// +listType=atomic
	// +optional
	Rules []APIRule `json:"rules,omitempty"`

	// DefaultAction for a route no rule matches: deny (403), or authenticate (any
	// valid credential).
	// +kubebuilder:default=deny
	// +optional
	DefaultAction DefaultAction `json:"defaultAction,omitempty"`

	// Environments of API keys the API accepts; a key of another environment is
	// refused with 401. Access tokens have no environment.
	// +kubebuilder:default={"live","test"}
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	// +optional
	Environments []Environment `json:"environments,omitempty"`

	// Namespaces (workspaces) whose credentials the API accepts. Empty means the
	// API's own namespace only; "*" means every namespace. A credential from any
	// other namespace is refused with 401, whatever scopes it declares: scopes
	// are written by the credential's own namespace, so they mean something only
	// to an API that trusts that namespace.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$`
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// RateLimit is the budget of each credential on this API, enforced by the edge
	// authorizer (429 with Retry-After beyond it). None: no limit but the rules'.
	// +optional
	RateLimit *APIRateLimit `json:"rateLimit,omitempty"`
}

// APIStatus is the observed state of an API.
type APIStatus struct {
	// Conditions: Ready (Accepted, or IdentifierConflict), and Stalled while True.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// ScopeCount is the number of scopes in the catalogue.
	// +optional
	ScopeCount int32 `json:"scopeCount,omitempty"`

	// RuleCount is the number of route rules.
	// +optional
	RuleCount int32 `json:"ruleCount,omitempty"`
}

// API is a protected API: its audience, hosts, scope catalogue and route rules.
// The edge authorizer (latchkey authz) enforces it in front of the service.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lkapi,categories=latchkey
// +kubebuilder:printcolumn:name="Identifier",type=string,JSONPath=`.spec.identifier`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,description="the Ready condition's reason: Accepted, or IdentifierConflict"
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.hosts`,priority=1
// +kubebuilder:printcolumn:name="Scopes",type=integer,JSONPath=`.status.scopeCount`
// +kubebuilder:printcolumn:name="Rules",type=integer,JSONPath=`.status.ruleCount`
// +kubebuilder:printcolumn:name="Default",type=string,JSONPath=`.spec.defaultAction`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type API struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec APISpec `json:"spec,omitempty"`

	// Status is the observed state of the API, written by the operator. It defaults
	// to observedGeneration 0 until first written, so that kstatus (Flux, cli-utils)
	// reads a brand-new object as InProgress, not Current.
	// +kubebuilder:default={observedGeneration: 0}
	Status APIStatus `json:"status,omitempty"`
}

// APIList is a list of APIs.
// +kubebuilder:object:root=true
type APIList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []API `json:"items"`
}

func init() {
	SchemeBuilder.Register(&API{}, &APIList{})
}
