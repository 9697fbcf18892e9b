#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool) from its Go module,
# for the monitoring pack's tests: `promtool check rules` and `promtool test rules`
# run against config/monitoring's PrometheusRule, with Prometheus' own rule parser
# and evaluation engine. Built in a throwaway module, like hack/caddy.sh, leaving
# the project's go.mod untouched.
#
# Usage: hack/promtool.sh
# Output: bin/promtool/<version>/promtool; prints that path on the last line.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.315.0}" # v0.316.0 needs a hashicorp/nomad/api version the module proxy refuses
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/bin/promtool/$PROMETHEUS_VERSION"
bin="$out/promtool"
log() { printf '[promtool] %s\n' "$*" >&2; }
die() { printf '[promtool] ERROR: %s\n' "$*" >&2; exit 1; }
command -v go >/dev/null || die "go is not on PATH"

if [ -x "$bin" ] && [ -f "$out/.built" ]; then
	log "promtool $PROMETHEUS_VERSION: up to date"
	echo "$bin"
	exit 0
fi
mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-promtool.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "resolving github.com/prometheus/prometheus $PROMETHEUS_VERSION"
(
	cd "$work"
	export GOFLAGS=-mod=mod
	go mod init latchkey.dev/hack/promtool >&2
	go get "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
) || die "could not resolve github.com/prometheus/prometheus $PROMETHEUS_VERSION from the module proxy"
log "building promtool $PROMETHEUS_VERSION (a few minutes the first time)"
(cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/prometheus/prometheus/cmd/promtool) ||
	die "building promtool failed (see the compiler output above)"
mv "$bin.tmp" "$bin"
"$bin" --version >/dev/null 2>&1 || die "$bin does not run"
touch "$out/.built"
log "built $bin"
echo "$bin"
