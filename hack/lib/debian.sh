# Sourced by the hack/ scripts that need a program from Debian's packages (chromium, nginx,
# containerd, ...): what is not a Go module cannot be built from the module proxy, so it comes
# from the system. One policy for all of them: use what is installed; when CI=true, install the
# package with apt-get (through sudo unless root); anywhere else fail loudly and say how to install
# it, never skip the tests that need it in silence.
#
# ensure_debian_package TAG PACKAGE COMMAND [MORE_PACKAGES...]
#   TAG      the log prefix ("nginx")
#   PACKAGE  the Debian package that provides COMMAND
#   COMMAND  a command name or absolute path that must exist afterwards
#   MORE_PACKAGES further packages installed with it (e.g. runc beside containerd)
# Prints the command's path on the last line of stdout. Idempotent.
ensure_debian_package() {
	local tag="$1" package="$2" command="$3"
	shift 3
	local more=("$@") path
	_deb_log() { printf '[%s] %s\n' "$tag" "$*" >&2; }
	_deb_die() { printf '[%s] ERROR: %s\n' "$tag" "$*" >&2; exit 1; }
	_deb_found() { command -v -- "$command" 2>/dev/null || { [ -x "$command" ] && echo "$command"; } || true; }

	path="$(_deb_found)"
	if [ -n "$path" ]; then
		echo "$path"
		return 0
	fi
	if [ "${CI:-}" != "true" ]; then
		_deb_die "$command is not installed; the tests that need it fail without it. Install it with
    sudo apt-get install $package ${more[*]}
  (Debian/Ubuntu), or run with CI=true to have the project's scripts install it."
	fi
	command -v apt-get >/dev/null || _deb_die "CI=true but apt-get is not available: install $package by hand"
	local sudo=()
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || _deb_die "CI=true, not root, and sudo is not available: cannot install $package"
		sudo=(sudo)
	fi
	_deb_log "CI=true: installing the Debian package(s) $package ${more[*]}"
	# apt-get update once per run: a second script in the same run reuses the lists.
	local stamp="${TMPDIR:-/tmp}/latchkey-apt-updated"
	if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +60 2>/dev/null)" ]; then
		"${sudo[@]}" apt-get update >&2 || _deb_die "apt-get update failed (see above)"
		touch "$stamp"
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package" "${more[@]}" >&2 ||
		_deb_die "apt-get install $package ${more[*]} failed (see above)"
	path="$(_deb_found)"
	[ -n "$path" ] || _deb_die "installed $package, but $command is still not found"
	echo "$path"
}
