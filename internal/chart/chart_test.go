package chart

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/testenv"
	"github.com/latchkey-dev/latchkey/tokenserver/leaks"
)

const (
	root      = "../.."
	release   = "latchkey"
	namespace = "latchkey-system"
)

// The labels Helm puts on every object besides those config/ has
// (templates/_helpers.tpl latchkey.helmLabels).
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}

// helmBin returns the helm CLI hack/helm.sh built; the test fails (never skips)
// without it.
func helmBin(t *testing.T) string {
	t.Helper()
	bin, err := testenv.BuiltTool("helm", "HELM_VERSION", "v4.3.1")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// helm runs the helm CLI on the chart and returns its output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := exec.Command(helmBin(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	err := cmd.Run()
	if err != nil {
		return out.String(), errors.New(strings.TrimSpace(stderr.String() + "\n" + out.String()))
	}
	return out.String(), nil
}

// render is `helm template` of the chart into latchkey-system, parsed.
func render(t *testing.T, args ...string) map[string]*unstructured.Unstructured {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, filepath.Join(root, Dir), "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return parse(t, out)
}

// kustomized is `kustomize build` of each dir, parsed, without the Namespace
// object (a chart installs into a namespace; helm install --create-namespace).
func kustomized(t *testing.T, dirs ...string) map[string]*unstructured.Unstructured {
	t.Helper()
	objects := map[string]*unstructured.Unstructured{}
	for _, dir := range dirs {
		resources, err := Kustomize(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resources {
			doc, err := r.AsYAML()
			if err != nil {
				t.Fatal(err)
			}
			for key, obj := range parse(t, string(doc)) {
				if obj.GetKind() != "Namespace" {
					objects[key] = obj
				}
			}
		}
	}
	return objects
}

func parse(t *testing.T, docs string) map[string]*unstructured.Unstructured {
	t.Helper()
	objects := map[string]*unstructured.Unstructured{}
	decoder := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(docs), 4096)
	for {
		obj := &unstructured.Unstructured{}
		err := decoder.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return objects
		}
		if err != nil {
			t.Fatalf("parsing rendered objects: %v", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		key := keyOf(obj)
		if _, dup := objects[key]; dup {
			t.Fatalf("%s is rendered twice", key)
		}
		objects[key] = obj
	}
}

func keyOf(obj *unstructured.Unstructured) string {
	return obj.GetKind() + " " + obj.GetNamespace() + "/" + obj.GetName()
}

// withoutHelmLabels is obj without the labels only Helm adds, and without the
// CRDs' keep annotation (TestCRDSwitches checks it).
func withoutHelmLabels(obj *unstructured.Unstructured) *unstructured.Unstructured {
	obj = obj.DeepCopy()
	labels := obj.GetLabels()
	for _, l := range helmLabels {
		delete(labels, l)
	}
	obj.SetLabels(labels)
	if annotations := obj.GetAnnotations(); annotations != nil {
		delete(annotations, "helm.sh/resource-policy")
		obj.SetAnnotations(annotations)
	}
	return obj
}

// sameObjects reports every difference between what kustomize and the chart render.
// Objects only the chart has are allowed by name in chartOnly.
func sameObjects(t *testing.T, kustomize, chart map[string]*unstructured.Unstructured, chartOnly ...string) {
	t.Helper()
	var keys []string
	for key := range kustomize {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		got, ok := chart[key]
		if !ok {
			t.Errorf("the chart does not render %s", key)
			continue
		}
		if want := kustomize[key]; !equality.Semantic.DeepEqual(withoutHelmLabels(got).Object, want.Object) {
			wantYAML, _ := yaml.Marshal(want.Object)
			gotYAML, _ := yaml.Marshal(withoutHelmLabels(got).Object)
			t.Errorf("%s differs from kustomize's\n--- kustomize\n%s\n--- chart (Helm's labels removed)\n%s", key, wantYAML, gotYAML)
		}
		if labels := got.GetLabels(); labels["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%s lacks the chart's labels: %v", key, labels)
		}
	}
	extra := map[string]bool{}
	for _, key := range chartOnly {
		extra[key] = true
	}
	for key := range chart {
		if _, ok := kustomize[key]; !ok && !extra[key] {
			t.Errorf("the chart renders %s, which kustomize does not", key)
		}
	}
}

func TestGeneratedTemplatesAreUpToDate(t *testing.T) {
	files, err := Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	if stale := Stale(root, files); len(stale) > 0 {
		t.Fatalf("the chart's generated files are out of date; run `make chart`: %v", stale)
	}
}

const managerMetrics = "Service " + namespace + "/latchkey-manager-metrics"

// The chart with its defaults installs what config/default does, object for
// object; the manager's metrics Service (config/monitoring) comes with it.
func TestDefaultsMatchKustomize(t *testing.T) {
	sameObjects(t, kustomized(t, "config/default"), render(t), managerMetrics)
}

// With the prometheus-operator API present, the monitoring pack is what
// config/monitoring holds.
func TestMonitoringMatchesKustomize(t *testing.T) {
	chart := render(t, "--api-versions", "monitoring.coreos.com/v1", "--set", "monitoring.dashboard.enabled=true")
	sameObjects(t, kustomized(t, "config/default", "config/monitoring"), chart)

	auto := render(t)
	for key := range auto {
		if strings.HasPrefix(key, "ServiceMonitor") || strings.HasPrefix(key, "PrometheusRule") {
			t.Errorf("renderMode auto renders %s where the prometheus-operator API is absent", key)
		}
	}
	always := render(t, "--set", "monitoring.renderMode=always")
	if _, ok := always["PrometheusRule "+namespace+"/latchkey-alerts"]; !ok {
		t.Error("renderMode always does not render the PrometheusRule")
	}
	never := render(t, "--api-versions", "monitoring.coreos.com/v1", "--set", "monitoring.renderMode=never")
	if _, ok := never[managerMetrics]; ok {
		t.Error("renderMode never renders the manager's metrics Service")
	}
}

// values.namespaces confines the install as config/namespaced does.
func TestNamespacesMatchKustomize(t *testing.T) {
	chart := render(t, "--set", "namespaces={tenant-a,tenant-b}")
	sameObjects(t, kustomized(t, "config/namespaced"), chart, managerMetrics)
}

func TestCRDSwitches(t *testing.T) {
	crds := func(objects map[string]*unstructured.Unstructured) []*unstructured.Unstructured {
		var out []*unstructured.Unstructured
		for _, obj := range objects {
			if obj.GetKind() == "CustomResourceDefinition" {
				out = append(out, obj)
			}
		}
		return out
	}
	kept := crds(render(t))
	if len(kept) != 4 {
		t.Fatalf("the chart renders %d CRDs, want 4", len(kept))
	}
	for _, crd := range kept {
		if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s is not kept on uninstall by default", crd.GetName())
		}
	}
	for _, crd := range crds(render(t, "--set", "crds.keep=false")) {
		if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
			t.Errorf("%s is kept although crds.keep=false", crd.GetName())
		}
	}
	if n := len(crds(render(t, "--set", "crds.enabled=false"))); n != 0 {
		t.Errorf("crds.enabled=false renders %d CRDs", n)
	}
}

// scannerKeyPEM is a secret scanner's public key (ECDSA P-256, PEM), for
// tokenserver.secretScanning's inline key list.
var scannerKeyPEM = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}()

// featureValues sets a value of every kind; TestValues checks what each renders,
// and TestServerSideApply that the API server accepts it.
var featureValues = `
image: {repository: registry.example/latchkey, digest: "sha256:` + strings.Repeat("ab", 32) + `", pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
issuerURL: https://auth.example.com
signing: {algorithms: [RS256, ES256], tokenAlgorithm: ES256, keyRotation: 168h}
tokenserver:
  replicas: 5
  tls: {secretName: tokenserver-tls}
  extraArgs: [--oidc-issuer-url=https://login.example.com, --oidc-client-id=latchkey]
  nodeSelector: {pool: edge}
  tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]
  priorityClassName: system-cluster-critical
  resources: {requests: {cpu: 500m, memory: 256Mi}, limits: {memory: 1Gi}}
  podDisruptionBudget: {maxUnavailable: 1}
  secretScanning:
    reporters:
    - {name: github, keysURL: "https://api.github.com/meta/public_keys/secret_scanning", headerPrefix: Github-Public-Key}
    - name: inhouse
      feedback: true
      publicKeys:
        public_keys:
        - key_identifier: k1
          is_current: true
          key: |
            ` + strings.ReplaceAll(strings.TrimSpace(scannerKeyPEM), "\n", "\n            ") + `
authz: {enabled: false}
manager: {podAnnotations: {example.com/team: platform}, extraArgs: [--concurrency=16]}
podSecurityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
`

// Every value does what values.yaml says, in the objects it renders.
func TestValues(t *testing.T) {
	objects := render(t, "-f", writeValues(t, featureValues))
	ts := deployment(t, objects, "latchkey-tokenserver")
	pod := ts.Spec.Template.Spec
	c := pod.Containers[0]
	expect(t, "image by digest", c.Image, "registry.example/latchkey@sha256:"+strings.Repeat("ab", 32))
	expect(t, "pull policy", string(c.ImagePullPolicy), "Always")
	expect(t, "pull secret", pod.ImagePullSecrets[0].Name, "regcred")
	expect(t, "replicas", *ts.Spec.Replicas, int32(5))
	expect(t, "node selector", pod.NodeSelector["pool"], "edge")
	expect(t, "toleration", pod.Tolerations[0].Key, "dedicated")
	expect(t, "priority class", pod.PriorityClassName, "system-cluster-critical")
	expect(t, "run as user", *pod.SecurityContext.RunAsUser, int64(10001))
	expect(t, "memory limit", c.Resources.Limits.Memory().String(), "1Gi")
	for _, arg := range []string{"--issuer-url=https://auth.example.com", "--signing-algorithm=ES256",
		"--tls-cert-file=/etc/latchkey/tls/tls.crt", "--tls-key-file=/etc/latchkey/tls/tls.key", "--oidc-client-id=latchkey"} {
		expectArg(t, "token server", c.Args, arg)
	}
	expect(t, "TLS volume", pod.Volumes[0].Secret.SecretName, "tokenserver-tls")
	expect(t, "TLS mount", c.VolumeMounts[0].MountPath, "/etc/latchkey/tls")
	expectSecretScanning(t, objects, ts)
	expect(t, "probe scheme", string(c.ReadinessProbe.HTTPGet.Scheme), "HTTPS")
	svc := &corev1.Service{}
	convert(t, objects["Service "+namespace+"/latchkey-tokenserver"], svc)
	expect(t, "HTTPS port", svc.Spec.Ports[0].Port, int32(443))
	pdb := &policyv1.PodDisruptionBudget{}
	convert(t, objects["PodDisruptionBudget "+namespace+"/latchkey-tokenserver"], pdb)
	expect(t, "PDB", pdb.Spec.MaxUnavailable.String(), "1")
	expect(t, "PDB minAvailable dropped for maxUnavailable", pdb.Spec.MinAvailable == nil, true)

	m := deployment(t, objects, "latchkey-manager")
	for _, arg := range []string{"--signing-algorithms=RS256,ES256", "--signing-key-rotation=168h", "--issuer-url=https://auth.example.com", "--concurrency=16"} {
		expectArg(t, "manager", m.Spec.Template.Spec.Containers[0].Args, arg)
	}
	expect(t, "pod annotation", m.Spec.Template.Annotations["example.com/team"], "platform")

	for key := range objects {
		if strings.Contains(key, "latchkey-authz") {
			t.Errorf("authz.enabled=false still renders %s", key)
		}
	}
}

// expectSecretScanning checks what tokenserver.secretScanning renders: a
// ConfigMap whose files the token server accepts as it does at start
// (--secret-scanning-config read strictly into leaks.Options, then leaks.New,
// which reads each inline key list where its reporter's keysFile says), and a pod
// annotation that changes with the configuration, which is read only at start.
func expectSecretScanning(t *testing.T, objects map[string]*unstructured.Unstructured, ts *appsv1.Deployment) {
	t.Helper()
	const dir = "/etc/latchkey/secret-scanning/"
	pod := ts.Spec.Template.Spec
	c := pod.Containers[0]
	expectArg(t, "token server", c.Args, "--secret-scanning-config="+dir+"config.yaml")
	expect(t, "secret-scanning mount", c.VolumeMounts[1].MountPath, strings.TrimSuffix(dir, "/"))
	expect(t, "secret-scanning volume", pod.Volumes[1].ConfigMap.Name, "latchkey-tokenserver-secret-scanning")
	cm := &corev1.ConfigMap{}
	convert(t, objects["ConfigMap "+namespace+"/latchkey-tokenserver-secret-scanning"], cm)
	var config leaks.Options
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &config); err != nil {
		t.Fatalf("config.yaml is not what --secret-scanning-config reads: %v\n%s", err, cm.Data["config.yaml"])
	}
	want := []leaks.Reporter{
		{Name: "github", KeysURL: "https://api.github.com/meta/public_keys/secret_scanning", HeaderPrefix: "Github-Public-Key"},
		{Name: "inhouse", KeysFile: dir + "keys-inhouse.json", Feedback: true},
	}
	if !equality.Semantic.DeepEqual(config.Reporters, want) {
		t.Errorf("reporters: got %+v, want %+v", config.Reporters, want)
	}
	// The ConfigMap's files where the pod would see them (a directory of the
	// test's), and the token server's own check of them.
	mounted := t.TempDir()
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(mounted, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range config.Reporters {
		if f := config.Reporters[i].KeysFile; f != "" {
			config.Reporters[i].KeysFile = filepath.Join(mounted, strings.TrimPrefix(f, dir))
		}
	}
	host := leaks.Host{Index: index.NewIndex(logr.Discard()), Clock: clock.RealClock{}, Log: logr.Discard()}
	if _, err := leaks.New(host, config); err != nil {
		t.Errorf("the token server would not start with the rendered configuration: %v", err)
	}
	if ts.Spec.Template.Annotations["checksum/secret-scanning"] == "" {
		t.Error("no checksum/secret-scanning annotation: a changed configuration would not roll the pods")
	}
}

// values.schema.json turns a typo into an error at install.
func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct{ set, says string }{
		{"manger.replicas=3", "additional properties 'manger' not allowed"},
		{"tokenserver.replica=3", "additional properties 'replica' not allowed"},
		{"signing.algorithms={HS256}", "value must be one of"},
		{"tokenserver.replicas=two", "got string, want integer"},
		{"issuerURL=https://auth.example.com/?x=1", "does not match pattern"},
		{"monitoring.renderMode=sometimes", "value must be one of"},
		{"manager.extraArgs={concurrency=16}", "does not match pattern"},
		{"signing.tokenAlgorithm=EdDSA", "signing.tokenAlgorithm EdDSA is not one of signing.algorithms"},
		{"tokenserver.secretScanning.reporters[0].name=inhouse", "missing property 'keysURL'"},                  // no key list
		{"tokenserver.secretScanning.reporters[0].keysFile=/x", "additional properties 'keysFile' not allowed"}, // nothing mounts it
		{"tokenserver.secretScanning.reporters[0].name=Git/Hub", "does not match pattern"},
	} {
		_, err := helm(t, "template", release, filepath.Join(root, Dir), "--set", tc.set)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("--set %s: got %v, want an error saying %q", tc.set, err, tc.says)
		}
	}
	// What the token server would refuse at start fails the install instead.
	for _, tc := range []struct{ reporters, says string }{
		{`[{"name":"inhouse","publicKeys":{"public_keys":[]}}]`, "minItems"},
		{`[{"name":"inhouse","publicKeys":{"public_keys":[{"key_identifier":"k1","key":"not a PEM key"}]}}]`, "does not match pattern"},
		{`[{"name":"a","keysURL":"https://a.example"},{"name":"a","keysURL":"https://b.example"}]`, "a is listed twice"},
	} {
		_, err := helm(t, "template", release, filepath.Join(root, Dir), "--set-json", "tokenserver.secretScanning.reporters="+tc.reporters)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("reporters %s: got %v, want an error saying %q", tc.reporters, err, tc.says)
		}
	}
}

// make build-installer packages the chart for IMG (hack/package-chart.sh), as it
// renders dist/install.yaml for it.
func TestPackageForIMG(t *testing.T) {
	digest := "sha256:" + strings.Repeat("cd", 32)
	for _, tc := range []struct{ img, file, image string }{
		{"registry.example:5000/team/latchkey:v1.2.3", "latchkey-1.2.3.tgz", "registry.example:5000/team/latchkey:v1.2.3"},
		{"registry.example:5000/latchkey@" + digest, "latchkey-0.1.0.tgz", "registry.example:5000/latchkey@" + digest},
	} {
		dest := t.TempDir()
		cmd := exec.Command(filepath.Join(root, "hack", "package-chart.sh"), tc.img, dest)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hack/package-chart.sh %s: %v\n%s", tc.img, err, out)
		}
		out, err := helm(t, "template", release, filepath.Join(dest, tc.file), "--namespace", namespace)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		for _, name := range []string{"latchkey-manager", "latchkey-tokenserver", "latchkey-authz"} {
			expect(t, tc.img+": "+name, deployment(t, parse(t, out), name).Spec.Template.Spec.Containers[0].Image, tc.image)
		}
	}
}

func TestLint(t *testing.T) {
	for _, args := range [][]string{nil, {"--set", "namespaces={a,b}", "--set", "tokenserver.tls.secretName=tls"}} {
		if out, err := helm(t, append([]string{"lint", "--strict", filepath.Join(root, Dir)}, args...)...); err != nil {
			t.Errorf("helm lint --strict %v: %v\n%s", args, err, out)
		}
	}
}

// The rendered chart is accepted by a real API server: server-side applied as
// Helm 4 does, CRDs first.
func TestServerSideApply(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test-envtest` (hack/envtest.sh)")
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	if err := apiextensionsv1.AddToScheme(scheme.Scheme); err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ns := range []string{namespace, "tenant-a", "tenant-b"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metaName(ns)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, values := range [][]string{
		nil,
		{"--set", "namespaces={tenant-a,tenant-b}", "--set", "tokenserver.tls.secretName=tls", "--set", "monitoring.dashboard.enabled=true"},
		{"-f", writeValues(t, featureValues)},
		{"-f", writeValues(t, `
authz: {tls: {secretName: authz-tls}, podDisruptionBudget: {maxUnavailable: 50%}, resources: {requests: {cpu: 1, memory: 128Mi}}}
tokenserver: {topologySpreadConstraints: [{maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app.kubernetes.io/component: tokenserver}}}]}
`)},
	} {
		objects := render(t, values...)
		var crds, rest []*unstructured.Unstructured
		for _, obj := range objects {
			if obj.GetKind() == "CustomResourceDefinition" {
				crds = append(crds, obj)
			} else {
				rest = append(rest, obj)
			}
		}
		apply(ctx, t, k8s, crds)
		for _, crd := range crds {
			waitEstablished(ctx, t, k8s, crd.GetName())
		}
		apply(ctx, t, k8s, rest)
	}
}

func apply(ctx context.Context, t *testing.T, k8s client.Client, objects []*unstructured.Unstructured) {
	t.Helper()
	for _, obj := range objects {
		if err := k8s.Patch(ctx, obj, client.Apply, client.FieldOwner("helm"), client.ForceOwnership); err != nil {
			t.Errorf("server-side apply of %s: %v", keyOf(obj), err)
		}
	}
}

func waitEstablished(ctx context.Context, t *testing.T, k8s client.Client, name string) {
	t.Helper()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, err
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CRD %s is not established: %v", name, err)
	}
}

func writeValues(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func deployment(t *testing.T, objects map[string]*unstructured.Unstructured, name string) *appsv1.Deployment {
	t.Helper()
	obj, ok := objects["Deployment "+namespace+"/"+name]
	if !ok {
		t.Fatalf("no Deployment %s", name)
	}
	d := &appsv1.Deployment{}
	convert(t, obj, d)
	return d
}

func convert(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	if obj == nil {
		t.Fatal("no such object")
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
		t.Fatal(err)
	}
}

func expect[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func expectArg(t *testing.T, what string, args []string, want string) {
	t.Helper()
	for _, a := range args {
		if a == want {
			return
		}
	}
	t.Errorf("%s: %s is not among the arguments %v", what, want, args)
}

func metaName(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }
