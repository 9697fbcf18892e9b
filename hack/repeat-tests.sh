#!/usr/bin/env bash
# Runs the unit and envtest suites, the end-to-end suite and the chaos suite N times in a row,
# each time from a clean state, to catch flaky tests: a test that passes once but
# not N times in a row is a bug to fix, not to retry.
#
# Usage: hack/repeat-tests.sh N        (make repeat-tests REPEAT=5 builds the binaries first)
# Prints each run's duration and result; stops at the first failure, prints the
# path of its log and exits 1. Needs bin/ built (make build envtest).
set -euo pipefail

n="${1:-}"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 N (a positive number of runs)" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$root/bin/k8s/${K8S_VERSION:-1.37.2}}"
logs="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-repeat.XXXXXX")"

for i in $(seq 1 "$n"); do
	# -count=1 already bypasses cached results; cleaning the cache as well keeps
	# any earlier result out even if a flag below is lost. Each suite makes its own
	# temporary directories and control plane, so nothing else carries over.
	go clean -testcache
	log="$logs/run-$i.log"
	start=$SECONDS
	# The same commands as make test-envtest, test-e2e and test-chaos, one after the other:
	# both start control planes, and the machine may have only a few cores.
	if go test ./... -count=1 -timeout 20m >"$log" 2>&1 &&
		go test -tags e2e ./test/e2e/ -count=1 -timeout 20m -v -args -ginkgo.v >>"$log" 2>&1 &&
		go test -tags chaos ./test/chaos/ -count=1 -timeout 10m -v -args -ginkgo.v >>"$log" 2>&1; then
		echo "run $i/$n: PASS in $((SECONDS - start))s"
	else
		echo "run $i/$n: FAIL after $((SECONDS - start))s; log: $log"
		exit 1
	fi
done
rm -rf "$logs" # every run passed: the logs say nothing a failure would need
echo "all $n runs passed"
