#!/usr/bin/env bash
# Packages charts/latchkey for the image IMG, as `make build-installer` does for
# dist/install.yaml: the chart's image.repository, and image.tag or image.digest,
# say IMG; its appVersion is IMG's tag, and its version that tag without a leading
# "v" when it is a semantic version (else Chart.yaml's). The chart in the tree is
# left as it is: a copy is packaged.
#
# Usage: hack/package-chart.sh IMG DESTINATION
#   IMG: registry/repository:tag or registry/repository@sha256:…
# Output: DESTINATION/latchkey-<version>.tgz; prints its path on the last line.
set -euo pipefail

img="${1:?usage: hack/package-chart.sh IMG DESTINATION}"
dest="${2:?usage: hack/package-chart.sh IMG DESTINATION}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf '[package-chart] ERROR: %s\n' "$*" >&2; exit 1; }

helm="$(HELM_VERSION="${HELM_VERSION:-v4.3.1}" "$root/hack/helm.sh" | tail -1)"
repository="" tag="" digest=""
case "$img" in
*@*) repository="${img%@*}" digest="${img#*@}" ;;
*)
	last="${img##*/}" # a registry's :port is before the last slash, a tag after it
	if [[ "$last" == *:* ]]; then
		repository="${img%:*}" tag="${img##*:}"
	else
		repository="$img"
	fi
	;;
esac
[ -n "$repository" ] || die "no repository in IMG=$img"
[[ -z "$digest" || "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "IMG=$img: the digest is not sha256:<64 hex>"

work="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-chart.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$root/charts/latchkey" "$work/latchkey"
values="$work/latchkey/values.yaml"
sed -i -e "s|^  repository: .*|  repository: $repository|" -e "s|^  tag: .*|  tag: \"$tag\"|" -e "s|^  digest: .*|  digest: \"$digest\"|" "$values"

args=()
if [ -n "$tag" ]; then
	args+=(--app-version "$tag")
	if [[ "$tag" =~ ^v?([0-9]+\.[0-9]+\.[0-9]+([-+].*)?)$ ]]; then
		args+=(--version "${BASH_REMATCH[1]}")
	fi
fi
mkdir -p "$dest"
"$helm" lint --strict "$work/latchkey" >&2 || die "helm lint failed on the packaged chart"
out="$("$helm" package "$work/latchkey" --destination "$dest" "${args[@]}")" || die "helm package failed"
echo "$out" >&2
echo "${out##*: }"
