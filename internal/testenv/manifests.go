package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReadManifests decodes every document of a multi-document YAML file (or of
// kustomize's output, with path "-" and raw given) into typed objects of the
// Kubernetes API (RBAC, admission policies, core). Kinds it does not know, such as
// CRDs and the project's own, are skipped: the suites install those otherwise.
func ReadManifests(path string, raw []byte) ([]client.Object, error) {
	if raw == nil {
		var err error
		if raw, err = os.ReadFile(path); err != nil {
			return nil, err
		}
	}
	decode := clientgoscheme.Codecs.UniversalDeserializer().Decode
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var objs []client.Object
	for {
		var doc runtime.RawExtension
		if err := decoder.Decode(&doc); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc.Raw)) == 0 || string(doc.Raw) == "null" {
			continue
		}
		obj, _, err := decode(doc.Raw, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if o, ok := obj.(client.Object); ok {
			objs = append(objs, o)
		}
	}
}
