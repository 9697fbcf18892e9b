# Latchkey — the two commands of the README: `make demo` and `make test`.

K8S_VERSION ?= 1.37.2
ENVTEST_DIR ?= $(CURDIR)/bin/k8s/$(K8S_VERSION)
IMG ?= ghcr.io/latchkey-dev/latchkey:v0.1.0
CONTROLLER_GEN = go tool controller-gen
KUSTOMIZE = go tool kustomize

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRDs and the manager's ClusterRole from the markers, and the chart's parts that come from config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(MAKE) --no-print-directory chart

.PHONY: chart
chart: ## Write charts/latchkey/templates/generated and files/ from config/ (internal/chart).
	go run ./hack/chart

.PHONY: generate
generate: ## Generate the DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: verify-generated
verify-generated: ## Fail if the committed generated files are stale.
	hack/verify-generated.sh

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet (the e2e, chaos and cluster suites too).
	go vet ./...
	go vet -tags e2e ./test/...
	go vet -tags chaos ./test/...
	go vet -tags cluster ./test/...

.PHONY: envtest
envtest: ## Build kube-apiserver, etcd, kube-controller-manager and kubectl from Go modules into bin/k8s/<version> (once).
	K8S_VERSION=$(K8S_VERSION) ENVTEST_BIN_DIR=$(ENVTEST_DIR) hack/envtest.sh kube-apiserver etcd kube-controller-manager kubectl

CADDY_VERSION ?= v2.11.9

.PHONY: caddy
caddy: ## Build Caddy from its Go module into bin/caddy/<version> (once): the proxy of the e2e suite's edge specs.
	CADDY_VERSION=$(CADDY_VERSION) hack/caddy.sh

OIDC_PROVIDER_VERSION ?= v3.51.17

.PHONY: oidc-provider
oidc-provider: ## Build the example OpenID Provider of github.com/zitadel/oidc/v3 into bin/oidc-provider/<version> (once): the upstream IdP of the sign-in specs.
	OIDC_PROVIDER_VERSION=$(OIDC_PROVIDER_VERSION) hack/oidc-provider.sh

PROMETHEUS_VERSION ?= v0.315.0
HELM_VERSION ?= v4.3.1

.PHONY: helm
helm: ## Build the helm CLI from helm.sh/helm/v4 into bin/helm/<version> (once): the chart's lint, render and apply tests.
	HELM_VERSION=$(HELM_VERSION) hack/helm.sh

.PHONY: promtool
promtool: ## Build promtool from github.com/prometheus/prometheus into bin/promtool/<version> (once): the alerting rules' checker and unit-test runner.
	PROMETHEUS_VERSION=$(PROMETHEUS_VERSION) hack/promtool.sh

GITLEAKS_VERSION ?= v8.30.1

.PHONY: gitleaks
gitleaks: ## Build gitleaks from github.com/zricethezav/gitleaks/v8 into bin/gitleaks/<version> (once): the scanner config/scanning's rule is tested with.
	GITLEAKS_VERSION=$(GITLEAKS_VERSION) hack/gitleaks.sh

.PHONY: chromium
chromium: ## Ensure a headless Chromium for the browser specs (installs Debian's chromium package when CI=true; fails loudly otherwise).
	hack/chromium.sh

.PHONY: nginx
nginx: ## Ensure nginx (with auth_request) for the edge specs behind nginx (installs Debian's nginx-light when CI=true; fails loudly otherwise).
	hack/nginx.sh

.PHONY: openid-client
openid-client: ## Install Node's openid-client 6 (npm, from the lockfile) for the e2e spec that runs a third-party app written with it.
	@command -v node >/dev/null || { echo "Node.js is required for the openid-client e2e spec (apt-get install nodejs)" >&2; exit 1; }
	npm ci --prefix test/e2e/testdata/openid-client --no-audit --no-fund --loglevel=error

.PHONY: test
test: verify-generated vet test-envtest test-e2e test-chaos test-cluster ## Everything: unit tests, envtest suites, the end-to-end suite, the chaos suite, then the cluster suite.

.PHONY: test-envtest
test-envtest: envtest oidc-provider promtool helm gitleaks ## The unit tests and the envtest suites against a real API server (and a real upstream OpenID Provider).
	OIDC_PROVIDER_VERSION=$(OIDC_PROVIDER_VERSION) PROMETHEUS_VERSION=$(PROMETHEUS_VERSION) HELM_VERSION=$(HELM_VERSION) GITLEAKS_VERSION=$(GITLEAKS_VERSION) KUBEBUILDER_ASSETS=$(ENVTEST_DIR) go test ./... -count=1 -timeout 20m

# A suite that fails ends with its failures' messages (hack/failures): Ginkgo's own
# summary names only where, and the end of a log is what CI keeps. Ginkgo's timeout
# is under go test's, so that a suite that hangs is interrupted and still reports.
REPORTS = $(CURDIR)/bin/reports
FAILURES = go run ./hack/failures

.PHONY: test-e2e
test-e2e: build envtest caddy oidc-provider chromium openid-client nginx ## The end-to-end suite: the real binaries as processes, a local control plane, kubectl, Caddy, the upstream OpenID Provider, headless Chromium.
	rm -f $(REPORTS)/e2e.json
	CADDY_VERSION=$(CADDY_VERSION) OIDC_PROVIDER_VERSION=$(OIDC_PROVIDER_VERSION) KUBEBUILDER_ASSETS=$(ENVTEST_DIR) go test -tags e2e ./test/e2e/ -count=1 -timeout 20m -v -args -ginkgo.v -ginkgo.timeout=19m -ginkgo.json-report=$(REPORTS)/e2e.json || { $(FAILURES) $(REPORTS)/e2e.json; exit 1; }

.PHONY: test-chaos
test-chaos: build envtest oidc-provider ## The fault suite: kube-apiserver and etcd restarted under load, the token server overloaded (under 4 min).
	rm -f $(REPORTS)/chaos.json
	OIDC_PROVIDER_VERSION=$(OIDC_PROVIDER_VERSION) KUBEBUILDER_ASSETS=$(ENVTEST_DIR) go test -tags chaos ./test/chaos/ -count=1 -timeout 15m -v -args -ginkgo.v -ginkgo.timeout=14m -ginkgo.json-report=$(REPORTS)/chaos.json || { $(FAILURES) $(REPORTS)/chaos.json; exit 1; }

.PHONY: test-cluster
test-cluster: image cluster-tools helm ## The cluster suite on a real one-node cluster (needs root): helm install from the offline image, traffic through Services, rolling upgrade and failover under load, uninstall and reinstall, dist/install.yaml.
	rm -f $(REPORTS)/cluster.json
	K8S_VERSION=$(K8S_VERSION) COREDNS_VERSION=$(COREDNS_VERSION) HELM_VERSION=$(HELM_VERSION) go test -tags cluster ./test/cluster/ -count=1 -timeout 30m -v -args -ginkgo.v -ginkgo.timeout=29m -ginkgo.json-report=$(REPORTS)/cluster.json || { $(FAILURES) $(REPORTS)/cluster.json; exit 1; }

REPEAT ?= 5

.PHONY: repeat-tests
repeat-tests: build envtest caddy oidc-provider chromium openid-client nginx ## Run the envtest, e2e and chaos suites REPEAT times (default 5) from a clean test cache; stops at the first failure.
	hack/repeat-tests.sh $(REPEAT)

.PHONY: bench
bench: build envtest ## The system benchmark (as root: CPU cgroups, priorities): control plane, manager, pinned token server, load; writes BENCHMARKS.md.
	go build -o bin/latchkey-bench ./test/bench
	BENCH_COMMAND="make bench$(if $(BENCH_FLAGS), BENCH_FLAGS='$(BENCH_FLAGS)')" bin/latchkey-bench -size full $(BENCH_FLAGS)

.PHONY: bench-quick
bench-quick: build envtest ## The same benchmark at quick sizes (a few minutes, as root); writes bin/BENCHMARKS.quick.md.
	go build -o bin/latchkey-bench ./test/bench
	BENCH_COMMAND="make bench-quick$(if $(BENCH_FLAGS), BENCH_FLAGS='$(BENCH_FLAGS)')" bin/latchkey-bench -size quick $(BENCH_FLAGS)

.PHONY: bench-micro
bench-micro: ## Microbenchmarks of the token server's and the authorizer's hot paths, of the manager's cache entries and of the index's entries (in process, no network).
	go test ./tokenserver/ ./authz/ ./controllers/ ./internal/index/ -run '^$$' -bench . -benchmem -count 1

FUZZTIME ?= 30s
FUZZ_PACKAGES = ./internal/credential ./internal/accesstoken ./tokenserver ./authz

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 30s); `make test` runs their seed corpora.
	@set -e; for pkg in $(FUZZ_PACKAGES); do \
		list=$$(go test $$pkg -run '^$$' -list '^Fuzz'); \
		for name in $$(printf '%s\n' "$$list" | grep '^Fuzz'); do \
			echo "go test $$pkg -run '^\$$' -fuzz '^$$name\$$' -fuzztime $(FUZZTIME)"; \
			go test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

##@ Cluster

COREDNS_VERSION ?= v1.15.0

.PHONY: cluster-tools
cluster-tools: ## Build what `make cluster` runs: kubelet, kube-scheduler and kube-proxy beside the control plane (hack/envtest.sh), CoreDNS (hack/coredns.sh), the pause binary, bin/latchkey-cluster; and Debian's containerd, runc, CNI plugins and nft (hack/node-packages.sh, installed when CI=true).
	K8S_VERSION=$(K8S_VERSION) ENVTEST_BIN_DIR=$(ENVTEST_DIR) hack/envtest.sh kube-apiserver etcd kube-controller-manager kubectl kubelet kube-scheduler kube-proxy
	COREDNS_VERSION=$(COREDNS_VERSION) hack/coredns.sh
	hack/node-packages.sh
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/cluster/pause ./hack/cluster/pause
	go build -o bin/latchkey-cluster ./hack/cluster

.PHONY: cluster
cluster: image cluster-tools ## A real one-node cluster on this machine (root): kubelet, containerd, kube-proxy, CoreDNS, the image imported; prints the kubeconfig; Ctrl-C stops it and undoes everything.
	bin/latchkey-cluster --k8s-bin $(ENVTEST_DIR) --coredns bin/coredns/$(COREDNS_VERSION)/coredns --pause bin/cluster/pause --import bin/image/latchkey.tar $(CLUSTER_FLAGS)

##@ Demo

.PHONY: demo
demo: build envtest caddy oidc-provider ## The whole product on this machine: control plane, manager, token server, authorizer behind Caddy, an upstream OpenID Provider and a third-party app, samples, curl. Ctrl-C stops it.
	CADDY_VERSION=$(CADDY_VERSION) OIDC_PROVIDER_VERSION=$(OIDC_PROVIDER_VERSION) hack/demo.sh

##@ Build

.PHONY: build
build: ## Build bin/latchkey (manager, tokenserver), bin/kubectl-latchkey and bin/latchkey-controlplane.
	CGO_ENABLED=0 go build -trimpath -o bin/latchkey ./cmd
	CGO_ENABLED=0 go build -trimpath -o bin/kubectl-latchkey ./cmd/kubectl-latchkey
	go build -o bin/latchkey-controlplane ./hack/controlplane

.PHONY: run
run: manifests generate ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd manager --metrics-bind-address=0 --health-probe-bind-address=:8081

.PHONY: docker-build
docker-build: ## Build the image (needs a Docker engine).
	docker build -t $(IMG) .

IMAGE_VERSION ?= dev

.PHONY: image
image: build ## Build the image FROM scratch without Docker (internal/image): bin/image/oci (OCI layout) and bin/image/latchkey.tar.
	go run ./hack/image --binary bin/latchkey --version $(IMAGE_VERSION) --revision "$$(git rev-parse HEAD 2>/dev/null)" --tag $(IMG)

.PHONY: build-installer
build-installer: manifests ## The release artefacts for IMG: dist/install.yaml (kustomize) and dist/latchkey-<version>.tgz (the Helm chart: hack/package-chart.sh).
	mkdir -p dist
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	cd config/tokenserver && $(KUSTOMIZE) edit set image controller=$(IMG)
	cd config/authz && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default > dist/install.yaml
	HELM_VERSION=$(HELM_VERSION) hack/package-chart.sh $(IMG) dist
