package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RateLimit is a budget of requests for one credential: Requests per Per, in
// bursts of up to Burst. The edge authorizer enforces it (a generic cell rate
// algorithm: Requests spread evenly over Per, Burst of them at once).
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || self.burst <= self.requests",message="burst must be at most requests: a burst is part of the period's budget"
type RateLimit struct {
	// Requests allowed per period.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Requests int32 `json:"requests"`

	// Per is the period, 1s to 24h ("1m").
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="per must be between 1s and 24h"
	Per metav1.Duration `json:"per"`

	// Burst is how many requests may come at once; requests by default (the whole
	// period's budget at once).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	// +optional
	Burst *int32 `json:"burst,omitempty"`
}

// Kinds of credential a rate limit override names.
// +kubebuilder:validation:Enum=APIKey;OAuthClient;OAuthGrant
type CredentialKindName string

const (
	KindAPIKey      CredentialKindName = "APIKey"
	KindOAuthClient CredentialKindName = "OAuthClient"
	KindOAuthGrant  CredentialKindName = "OAuthGrant"
)

// RateLimitOverride is the API owner's limit for one credential: a partner tier.
type RateLimitOverride struct {
	// Kind of the credential: APIKey, OAuthClient (its own tokens), or OAuthGrant
	// (a third-party app installed in a workspace).
	Kind CredentialKindName `json:"kind"`
	// Namespace of the credential.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`
	// Name of the credential.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	RateLimit `json:",inline"`
}

// APIRateLimit is an API's default budget per credential, and the credentials its
// owner allows more (or less).
type APIRateLimit struct {
	RateLimit `json:",inline"`

	// Overrides replace the default for the credentials they name. A credential's
	// own spec.rateLimit can only lower what applies to it: the default, or its
	// override here. Only the API's owner can raise a credential's limit.
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=namespace
	// +listMapKey=name
	// +optional
	Overrides []RateLimitOverride `json:"overrides,omitempty"`
}
