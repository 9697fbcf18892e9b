package controllers

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// TestSecretTemplateRemovesOnlyWhatItPutThere: a key dropped from
// spec.secretTemplate leaves the Secret; what anyone else put there, and the
// operator's own keys, stay whatever the record says.
func TestSecretTemplateRemovesOnlyWhatItPutThere(t *testing.T) {
	const record = latchkeyv1.SecretTemplateKeysAnnotation
	for _, c := range []struct {
		name                        string
		labels, annotations         map[string]string // on the Secret before
		template                    *latchkeyv1.SecretTemplate
		wantLabels, wantAnnotations map[string]string
	}{
		{name: "first template: applied and recorded",
			labels: map[string]string{"backup": "daily"}, annotations: map[string]string{},
			template:        &latchkeyv1.SecretTemplate{Labels: map[string]string{"team": "billing"}, Annotations: map[string]string{"note": "x"}},
			wantLabels:      map[string]string{"backup": "daily", "team": "billing"},
			wantAnnotations: map[string]string{"note": "x", record: `{"labels":["team"],"annotations":["note"]}`}},
		{name: "a label and an annotation dropped",
			labels:          map[string]string{"backup": "daily", "team": "billing", "replicate": "all"},
			annotations:     map[string]string{"seen-by": "scanner", "note": "x", record: `{"labels":["replicate","team"],"annotations":["note"]}`},
			template:        &latchkeyv1.SecretTemplate{Labels: map[string]string{"team": "payments"}},
			wantLabels:      map[string]string{"backup": "daily", "team": "payments"},
			wantAnnotations: map[string]string{"seen-by": "scanner", record: `{"labels":["team"]}`}},
		{name: "the template removed: its keys and the record go",
			labels:          map[string]string{"backup": "daily", "team": "billing"},
			annotations:     map[string]string{record: `{"labels":["team"]}`},
			wantLabels:      map[string]string{"backup": "daily"},
			wantAnnotations: map[string]string{}},
		{name: "no record (written before it existed): nothing removed",
			labels:          map[string]string{"team": "billing", "replicate": "all"},
			annotations:     map[string]string{},
			template:        &latchkeyv1.SecretTemplate{Labels: map[string]string{"team": "billing"}},
			wantLabels:      map[string]string{"team": "billing", "replicate": "all"},
			wantAnnotations: map[string]string{record: `{"labels":["team"]}`}},
		{name: "an unreadable record: nothing removed",
			labels:          map[string]string{"team": "billing", "replicate": "all"},
			annotations:     map[string]string{record: `labels=replicate`},
			template:        &latchkeyv1.SecretTemplate{Labels: map[string]string{"team": "billing"}},
			wantLabels:      map[string]string{"team": "billing", "replicate": "all"},
			wantAnnotations: map[string]string{record: `{"labels":["team"]}`}},
		{name: "a record edited to list the operator's own keys: they stay",
			labels:          map[string]string{ManagedByLabel: ManagedByValue, "latchkey.dev/x": "y"},
			annotations:     map[string]string{latchkeyv1.SerialAnnotation: "3", record: `{"labels":["` + ManagedByLabel + `","latchkey.dev/x"],"annotations":["` + latchkeyv1.SerialAnnotation + `"]}`},
			wantLabels:      map[string]string{ManagedByLabel: ManagedByValue, "latchkey.dev/x": "y"},
			wantAnnotations: map[string]string{latchkeyv1.SerialAnnotation: "3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(c.labels), Annotations: maps.Clone(c.annotations)}}
			applySecretTemplate(secret, c.template)
			if !maps.Equal(secret.Labels, c.wantLabels) || !maps.Equal(secret.Annotations, c.wantAnnotations) {
				t.Errorf("got labels %v annotations %v, want %v and %v", secret.Labels, secret.Annotations, c.wantLabels, c.wantAnnotations)
			}
		})
	}
}
