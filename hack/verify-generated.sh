#!/usr/bin/env bash
# Fails when the generated files in the tree (deepcopy, CRDs, ClusterRole, the chart's
# generated parts, dist/install.yaml) differ from
# what the markers produce now. It regenerates them in place, so after a failure the
# tree holds the fresh files, ready to commit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

generated=(api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml charts/latchkey/templates/generated charts/latchkey/files dist/install.yaml)
before="$(mktemp -d)"
trap 'rm -rf "$before"' EXIT
for path in "${generated[@]}"; do
	mkdir -p "$before/$(dirname "$path")"
	cp -r "$path" "$before/$path"
done

make --no-print-directory -s generate manifests >/dev/null
# The release manifest, as `make build-installer` renders it with the default image.
go tool kustomize build config/default >dist/install.yaml

stale=0
for path in "${generated[@]}"; do
	if ! diff -ruN "$before/$path" "$path"; then
		stale=1
	fi
done
if [ "$stale" -ne 0 ]; then
	echo "generated files were stale (diff above); they are regenerated now: review and commit them" >&2
	exit 1
fi
echo "generated files are up to date"
