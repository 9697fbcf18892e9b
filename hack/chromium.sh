#!/usr/bin/env bash
# Ensures a Chromium the browser specs can drive headless (issue #13): the sign-in flow is exercised
# the way a person does it, through a real browser. Chromium is not a Go module, so unlike the other
# tools it cannot be built from the module proxy; it comes from the system's Debian packages.
#
# Resolution order: $CHROMIUM (a path or a command name), else `chromium` on PATH; if neither is
# found and CI=true, the Debian package is installed (apt-get, through sudo unless root); otherwise
# this fails loudly with how to install it, rather than silently skipping the browser specs.
#
# Usage: hack/chromium.sh
# Output: prints the path of the Chromium binary on the last line.
# Idempotent: an installed Chromium is reused.
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }
die() { printf '[chromium] ERROR: %s\n' "$*" >&2; exit 1; }

# found: the path of $CHROMIUM or of chromium on PATH, or nothing.
found() {
	if [ -n "${CHROMIUM:-}" ]; then
		command -v -- "$CHROMIUM" 2>/dev/null || true
	else
		command -v chromium 2>/dev/null || true
	fi
}

# report: prints the version (a binary that cannot even say its version is broken) and the path.
report() {
	local version
	# stderr only when it fails: Debian's launcher script prints noise there on some machines
	# (its /etc/chromium.d/dev-shm check) even when Chromium itself is fine.
	version="$("$1" --version 2>/dev/null)" || die "$1 does not run: $("$1" --version 2>&1 || true)"
	log "$version"
	echo "$1"
}

path="$(found)"
if [ -n "$path" ]; then
	report "$path"
	exit 0
fi
[ -z "${CHROMIUM:-}" ] || die "CHROMIUM=$CHROMIUM is neither an executable path nor a command on PATH"

if [ "${CI:-}" != "true" ]; then
	die "chromium is not on PATH; the browser specs need it. Install it with
    sudo apt-get install chromium
  (Debian/Ubuntu), or run with CI=true (\`CI=true make test\`) to have this script install it,
  or point CHROMIUM at an existing Chromium or Chrome binary."
fi

command -v apt-get >/dev/null || die "CI=true but apt-get is not available: install Chromium by hand and set CHROMIUM"
sudo=()
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "CI=true, not root, and sudo is not available: cannot install chromium"
	sudo=(sudo)
fi
log "CI=true: installing the Debian package chromium (a minute or two)"
"${sudo[@]}" apt-get update >&2 || die "apt-get update failed (see above)"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2 ||
	die "apt-get install chromium failed (see above)"
path="$(found)"
[ -n "$path" ] || die "installed the package chromium, but chromium is still not on PATH"
report "$path"
