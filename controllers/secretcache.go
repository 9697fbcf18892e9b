package controllers

import (
	"crypto/sha256"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The manager caches the Secrets labelled managed-by=latchkey, and any tenant can
// put that label on any Secret of theirs. So the cache keeps, of each, only what the
// lifecycle decides on, in a size no tenant can grow:
//
//   - every data value is replaced by its SHA-256 (a credential's status hash is
//     exactly that digest, so the manager never holds a plaintext credential in
//     memory beyond the moment it generates one);
//   - with more than maxCachedDataKeys values, or labels, annotations, finalizers
//     and owner references over maxCachedMetadataBytes, the Secret is not ours in
//     any useful shape: its data and foreign metadata (all but our label and
//     annotations and the controller reference) are dropped and trimmedAnnotation
//     marks the cached copy as partial, so that any write to it starts from a live read;
//   - managedFields are dropped;
//   - in the cache itself, the digests are packed into one string under
//     packedDigestsAnnotation rather than held in a map of their own (a small Go
//     map costs ~400 bytes, a third of a cached Secret), and unpacked on every
//     read (getSecret).
//
// Everything the lifecycle reads — from the cache or live — is in this digest form
// (digestSecret). A cached copy is never written back as it is: writes are merge
// patches computed against it, or updates of a live read.
const (
	maxCachedDataKeys      = 8
	maxCachedMetadataBytes = 16 << 10
	// trimmedAnnotation marks a cached copy that lacks data or metadata. It exists
	// only in the manager's memory, never in the API server.
	trimmedAnnotation = "latchkey.dev/cache-trimmed"
	// packedDigestsAnnotation holds a cached Secret's data digests (packDigests).
	// Like trimmedAnnotation, it exists only in the manager's memory: one a tenant
	// writes on a Secret is replaced before the Secret is cached.
	packedDigestsAnnotation = "latchkey.dev/cache-digests"
)

// CacheByObject restricts the Secret cache to the Secrets the operator labelled,
// in digest form. Given the JWKS ConfigMap (optional: SigningKeyOptions.JWKSConfigMap
// in the signing keys' namespace), it restricts the ConfigMap cache to that one, so
// that the manager neither holds nor needs the right to list the cluster's ConfigMaps.
func CacheByObject(jwksConfigMap ...client.ObjectKey) map[client.Object]cache.ByObject {
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}: {
			Label:     labels.SelectorFromSet(labels.Set{ManagedByLabel: ManagedByValue}),
			Transform: digestSecretTransform,
		},
	}
	if len(jwksConfigMap) > 0 && jwksConfigMap[0].Name != "" {
		byObject[&corev1.ConfigMap{}] = jwksCacheByObject(jwksConfigMap[0])
	}
	return byObject
}

func digestSecretTransform(obj any) (any, error) {
	if secret, ok := obj.(*corev1.Secret); ok {
		packDigests(digestSecret(secret))
		internSecret(secret)
		return secret, nil
	}
	return obj, nil // a tombstone
}

// packDigests moves a digest-form Secret's data into packedDigestsAnnotation:
// each key, a NUL (no data key holds one) and its 32-byte digest, in key order.
func packDigests(secret *corev1.Secret) {
	delete(secret.Annotations, packedDigestsAnnotation)
	if len(secret.Data) == 0 {
		secret.Data = nil
		return
	}
	var packed strings.Builder
	for _, k := range slices.Sorted(maps.Keys(secret.Data)) {
		packed.WriteString(k)
		packed.WriteByte(0)
		packed.Write(secret.Data[k])
	}
	if secret.Annotations == nil {
		secret.Annotations = make(map[string]string, 1)
	}
	secret.Annotations[packedDigestsAnnotation] = packed.String()
	secret.Data = nil
}

// unpackDigests undoes packDigests on a copy read from the cache. A Secret
// with data was not packed: its annotation, if any, is a tenant's, and is not read.
func unpackDigests(secret *corev1.Secret) {
	packed, ok := secret.Annotations[packedDigestsAnnotation]
	if !ok || secret.Data != nil {
		return
	}
	delete(secret.Annotations, packedDigestsAnnotation)
	if len(secret.Annotations) == 0 {
		secret.Annotations = nil
	}
	secret.Data = map[string][]byte{}
	for packed != "" {
		k, rest, _ := strings.Cut(packed, "\x00")
		if len(rest) < sha256.Size {
			return // cannot happen: packDigests wrote it
		}
		secret.Data[k] = []byte(rest[:sha256.Size])
		packed = rest[sha256.Size:]
	}
}

// digestSecret turns secret, in place, into the form the lifecycle works on.
func digestSecret(secret *corev1.Secret) *corev1.Secret {
	secret.ManagedFields = nil
	secret.StringData = nil
	trimmed := len(secret.Data) > maxCachedDataKeys || metadataBytes(secret) > maxCachedMetadataBytes
	if len(secret.Data) > maxCachedDataKeys {
		secret.Data = nil
	}
	for k, v := range secret.Data {
		secret.Data[k] = digestOf(v)
	}
	if !trimmed {
		return secret
	}
	keptLabels := map[string]string{}
	if v, ok := secret.Labels[ManagedByLabel]; ok {
		keptLabels[ManagedByLabel] = v
	}
	keptAnnotations := map[string]string{trimmedAnnotation: "true"}
	for k, v := range secret.Annotations {
		if strings.HasPrefix(k, "latchkey.dev/") && len(v) <= 1024 {
			keptAnnotations[k] = v
		}
	}
	secret.Labels, secret.Annotations = keptLabels, keptAnnotations
	secret.Finalizers = nil
	var keptOwners []metav1.OwnerReference
	if owner := metav1.GetControllerOfNoCopy(secret); owner != nil {
		keptOwners = []metav1.OwnerReference{*owner}
	}
	secret.OwnerReferences = keptOwners
	return secret
}

// trimmed reports whether a digest-form Secret is partial (see trimmedAnnotation).
func trimmed(secret *corev1.Secret) bool {
	_, ok := secret.Annotations[trimmedAnnotation]
	return ok
}

// metadataBytes is the size of the metadata a tenant can grow: labels,
// annotations, finalizers and owner references.
func metadataBytes(secret *corev1.Secret) int {
	n := len(secret.GenerateName)
	for _, f := range secret.Finalizers {
		n += len(f)
	}
	for _, o := range secret.OwnerReferences {
		n += len(o.APIVersion) + len(o.Kind) + len(o.Name) + len(o.UID) + 16
	}
	for k, v := range secret.Labels {
		n += len(k) + len(v)
	}
	for k, v := range secret.Annotations {
		n += len(k) + len(v)
	}
	return n
}

// digestOf is what digestSecret makes of a value.
func digestOf(value []byte) []byte {
	sum := sha256.Sum256(value)
	return sum[:]
}
