#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool) from its Go module,
# for the monitoring pack's tests: `promtool check rules` and `promtool test rules`
# run against config/monitoring's PrometheusRule, with Prometheus' own rule parser
# and evaluation engine.
#
# Usage: hack/promtool.sh
# Output: bin/promtool/<version>/promtool; prints that path on the last line.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.315.0}" # v0.316.0 needs a hashicorp/nomad/api version the module proxy refuses
# shellcheck source=hack/lib/gomodule.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/gomodule.sh"
build_go_module promtool github.com/prometheus/prometheus github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION" --version
