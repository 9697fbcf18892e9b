#!/usr/bin/env bash
# Builds the helm CLI (helm.sh/helm/v4/cmd/helm) from its Go module, for the chart's
# tests: `helm lint`, and `helm template` whose output is compared with kustomize's
# and server-side applied to the envtest API server (internal/chart).
#
# Usage: hack/helm.sh
# Output: bin/helm/<version>/helm; prints that path on the last line.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
# shellcheck source=hack/lib/gomodule.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/gomodule.sh"
build_go_module helm helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm "$HELM_VERSION" version
