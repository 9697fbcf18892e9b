#!/usr/bin/env bash
# Builds the example OpenID Provider of github.com/zitadel/oidc/v3 (package example/server) from its
# published Go module: the upstream identity provider of the test suites' sign-in specs (issue #13).
# It is a real OpenID Provider (discovery, JWKS, authorization-code flow, a login form) that keeps
# everything in memory, so a suite starts one per run in well under a second. Upstream publishes no
# binary of it, so it is compiled from the module proxy in a throwaway module in a temporary
# directory, leaving the project's go.mod untouched.
#
# The example has no version flag, so is_current reads the version from the binary's build info
# (`go version -m`): the module of a main package built from a dependency is recorded on the "mod"
# line with its version (a "dep" line for any other dependency).
#
# The binary is configured by environment (see example/server/config): PORT (issuer
# http://localhost:$PORT/), REDIRECT_URI (comma-separated, for the clients "web"/"secret" with basic
# auth, "api"/"secret" and "native"), USERS_FILE (a JSON object of users keyed by ID, fields as in
# example/server/storage/user.go). internal/testenv.StartOIDCProvider runs it.
#
# Usage: hack/oidc-provider.sh
# Output: bin/oidc-provider/<version>/oidc-provider; prints that path on the last line.
# Idempotent: a binary already built for the pinned version is reused.
set -euo pipefail

OIDC_PROVIDER_VERSION="${OIDC_PROVIDER_VERSION:-v3.51.17}"
module=github.com/zitadel/oidc/v3

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OIDC_PROVIDER_BIN_DIR:-$root/bin/oidc-provider/$OIDC_PROVIDER_VERSION}"
bin="$out/oidc-provider"

log() { printf '[oidc-provider] %s\n' "$*" >&2; }
die() { printf '[oidc-provider] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH; install Go 1.26 or newer"

# is_current: the binary exists and its build info records the pinned version of the module.
is_current() {
	[ -x "$bin" ] || return 1
	local info # captured first: grep -q exiting early would SIGPIPE go version and fail the pipeline
	info="$(go version -m "$bin" 2>/dev/null)" || return 1
	grep -qE -- "^[[:space:]]+(mod|dep)[[:space:]]+$module[[:space:]]+$OIDC_PROVIDER_VERSION([[:space:]]|\$)" <<<"$info"
}

if is_current; then
	log "oidc-provider $OIDC_PROVIDER_VERSION: up to date"
	echo "$bin"
	exit 0
fi

mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-oidc-provider.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "resolving $module $OIDC_PROVIDER_VERSION"
(
	cd "$work"
	export GOFLAGS=-mod=mod
	go mod init latchkey.dev/hack/oidc-provider >&2
	go get "$module@$OIDC_PROVIDER_VERSION" >&2
) || die "could not resolve $module $OIDC_PROVIDER_VERSION from the module proxy"

log "building oidc-provider $OIDC_PROVIDER_VERSION (first time takes a minute or two on 2 cores)"
(cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin.tmp" "$module/example/server") ||
	die "building $module/example/server failed (see the compiler output above)"
mv "$bin.tmp" "$bin"
is_current || die "$bin does not record $module $OIDC_PROVIDER_VERSION in its build info (go version -m says: $(go version -m "$bin" 2>&1 | grep -F "$module" || true))"
log "built $bin"
echo "$bin"
