package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Environment separates production keys from sandbox keys; it is part of the key itself.
// +kubebuilder:validation:Enum=live;test
type Environment string

const (
	EnvironmentLive Environment = "live"
	EnvironmentTest Environment = "test"
)

// APIKeySecretKey is the data key of the Secret that holds the plaintext API key.
const APIKeySecretKey = "api-key"

// APIKeySpec is the desired state of an APIKey.
// +kubebuilder:validation:XValidation:rule="has(self.secretName) == has(oldSelf.secretName) && (!has(self.secretName) || self.secretName == oldSelf.secretName)",message="secretName is immutable; create a new APIKey to use another Secret"
// +kubebuilder:validation:XValidation:rule="has(self.prefix) == has(oldSelf.prefix) && (!has(self.prefix) || self.prefix == oldSelf.prefix)",message="prefix is immutable; it is part of the issued key"
type APIKeySpec struct {
	// DisplayName is a human-readable name for the key.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// Environment is "live" (production) or "test" (sandbox); the key reads
	// <prefix>_live_… or <prefix>_test_…. Immutable.
	// +kubebuilder:default=live
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="environment is immutable; it is part of the issued key"
	// +optional
	Environment Environment `json:"environment,omitempty"`

	// Prefix starts the key: 1 to 12 lowercase letters or digits, starting with a letter.
	// Defaults to the manager's --default-key-prefix (lk). Immutable.
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9]{0,11}$`
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// Scopes the key grants, each "resource:action" (leads:read, leads:write).
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z][a-z0-9_.-]{0,62}:[a-z*][a-z0-9_.-]{0,62}$`
	// +kubebuilder:validation:items:MaxLength=127
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	CredentialSpec `json:",inline"`
}

// APIKeyStatus is the observed state of an APIKey. It holds hashes, never the key.
type APIKeyStatus struct {
	// KeyID identifies the current key publicly: the first 12 hex digits of its hash.
	// Safe to log and to show.
	// +optional
	KeyID string `json:"keyID,omitempty"`

	// Prefix the current key was issued with.
	// +optional
	Prefix string `json:"prefix,omitempty"`

	CredentialStatus `json:",inline"`
}

// APIKey is a hashed API key: the operator generates the key, writes it to a
// Secret for workloads to mount, and keeps only its SHA-256 hash in status.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ak,categories=latchkey
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 246",message="metadata.name must be at most 246 characters (the Secret is named <name>-apikey)"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,description="the Ready condition's reason: Issued, Rotating, Revoked, Expired, or what stops it"
// +kubebuilder:printcolumn:name="Environment",type=string,JSONPath=`.spec.environment`
// +kubebuilder:printcolumn:name="Scopes",type=string,JSONPath=`.spec.scopes`
// +kubebuilder:printcolumn:name="Key ID",type=string,JSONPath=`.status.keyID`,priority=1
// +kubebuilder:printcolumn:name="Rate Cap",type=integer,JSONPath=`.spec.rateLimit.requests`,priority=1,description="spec.rateLimit.requests: this key's own cap per spec.rateLimit.per on every API (kubectl latchkey status shows what applies on each API)"
// +kubebuilder:printcolumn:name="Per",type=string,JSONPath=`.spec.rateLimit.per`,priority=1
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.spec.expiresAt`,description="when the key stops working (a date column would print <invalid> for a time in the future)"
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type APIKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec APIKeySpec `json:"spec,omitempty"`

	// Status is the observed state of the key, written by the operator. It defaults
	// to observedGeneration 0 until first written, so that kstatus (Flux, cli-utils)
	// reads a brand-new object as InProgress, not Current.
	// +kubebuilder:default={observedGeneration: 0}
	Status APIKeyStatus `json:"status,omitempty"`
}

// APIKeyList is a list of APIKeys.
// +kubebuilder:object:root=true
type APIKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIKey `json:"items"`
}

func init() {
	SchemeBuilder.Register(&APIKey{}, &APIKeyList{})
}

// SecretName is the name of the Secret that holds the key.
func (k *APIKey) SecretName() string {
	if k.Spec.SecretName != "" {
		return k.Spec.SecretName
	}
	return k.Name + "-apikey"
}

// Lifecycle returns the lifecycle settings shared by every credential kind.
func (k *APIKey) Lifecycle() *CredentialSpec { return &k.Spec.CredentialSpec }

// CredentialStatus returns the status shared by every credential kind.
func (k *APIKey) CredentialStatus() *CredentialStatus { return &k.Status.CredentialStatus }
