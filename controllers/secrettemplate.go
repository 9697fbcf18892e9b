package controllers

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// templateKeys are the label and annotation keys spec.secretTemplate put on a
// Secret, as its SecretTemplateKeysAnnotation records them.
type templateKeys struct {
	Labels      []string `json:"labels,omitempty"`
	Annotations []string `json:"annotations,omitempty"`
}

// applySecretTemplate makes secret carry template's labels and annotations (nil:
// none), merged over what others put there, and removes those a previous
// template put there that this one no longer has: the spec says what the Secret
// carries, and a label dropped from it (say, one that told another controller to
// copy the Secret elsewhere) must not stay behind. Which keys were the
// template's is recorded on the Secret itself, so a key the template never set
// is never removed. A Secret whose record is missing or
// unreadable (written before the record existed, or edited by hand) loses
// nothing; its template's keys are recorded from now on.
func applySecretTemplate(secret *corev1.Secret, template *latchkeyv1.SecretTemplate) {
	var previous templateKeys
	if v, ok := secret.Annotations[latchkeyv1.SecretTemplateKeysAnnotation]; ok {
		if json.Unmarshal([]byte(v), &previous) != nil {
			previous = templateKeys{}
		}
	}
	var labels, annotations map[string]string
	if template != nil {
		labels, annotations = template.Labels, template.Annotations
	}
	removeDropped(secret.Labels, previous.Labels, labels)
	removeDropped(secret.Annotations, previous.Annotations, annotations)
	maps.Copy(secret.Labels, labels)
	maps.Copy(secret.Annotations, annotations)

	current := templateKeys{Labels: slices.Sorted(maps.Keys(labels)), Annotations: slices.Sorted(maps.Keys(annotations))}
	if len(current.Labels)+len(current.Annotations) == 0 {
		delete(secret.Annotations, latchkeyv1.SecretTemplateKeysAnnotation) // nothing to record: no bytes on every Secret
		return
	}
	record, _ := json.Marshal(current) // sorted strings: cannot fail
	secret.Annotations[latchkeyv1.SecretTemplateKeysAnnotation] = string(record)
}

// removeDropped deletes from m each key of previous that now is not in, except
// the operator's own (under OperatorKeyPrefix, which the CRD keeps out of a
// template, and the managed-by label; the lifecycle writes them after this),
// whatever a record edited by hand lists.
func removeDropped(m map[string]string, previous []string, now map[string]string) {
	for _, k := range previous {
		if _, kept := now[k]; !kept && !strings.HasPrefix(k, latchkeyv1.OperatorKeyPrefix) && k != ManagedByLabel {
			delete(m, k)
		}
	}
}
