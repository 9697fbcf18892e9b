#!/usr/bin/env bash
# Ensures nginx for the edge specs that put the authorizer behind nginx's auth_request, as the
# README's nginx configuration does. nginx is not a Go module: it comes from Debian's packages
# (hack/lib/debian.sh installs it when CI=true and fails loudly anywhere else). Debian's nginx has
# the auth_request module built in; the specs run their own nginx process on loopback ports, so
# the package's own service is neither needed nor started.
#
# Usage: hack/nginx.sh
# Output: prints the path of the nginx binary on the last line.
set -euo pipefail
# shellcheck source=lib/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"

# Debian starts the service on install when it can; the package is kept, its service stopped,
# so that port 80 is not taken on a CI machine.
had=""
command -v nginx >/dev/null 2>&1 && had=yes
bin="$(ensure_debian_package nginx nginx-light "${NGINX:-nginx}")"
if [ -z "$had" ] && [ "${CI:-}" = "true" ] && command -v service >/dev/null 2>&1; then
	service nginx stop >/dev/null 2>&1 || true
fi
"$bin" -V 2>&1 | grep -q -- 'http_auth_request_module' ||
	{ printf '[nginx] ERROR: %s lacks the auth_request module\n' "$bin" >&2; exit 1; }
printf '[nginx] %s\n' "$("$bin" -v 2>&1)" >&2
echo "$bin"
