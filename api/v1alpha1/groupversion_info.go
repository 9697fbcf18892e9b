// Package v1alpha1 contains the latchkey.dev/v1alpha1 API: APIKey and OAuthClient
// (credentials the manager issues), API (what the authorizer protects, and its
// scope catalogue) and OAuthGrant (a workspace's consent to a third-party app).
// +kubebuilder:object:generate=true
// +groupName=latchkey.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "latchkey.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
