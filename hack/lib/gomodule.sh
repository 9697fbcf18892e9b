# Sourced by the hack/ scripts that build a tool from its published Go module
# (promtool.sh, helm.sh, gitleaks.sh): one way to resolve it in a throwaway module
# (so that the project's go.mod is untouched) and cache the binary under
# bin/<name>/<version>/.
#
# build_go_module NAME MODULE PACKAGE VERSION CHECK_ARG [LDFLAGS]
#   MODULE   the module path to `go get` at VERSION
#   PACKAGE  the main package to build from it
#   CHECK_ARG an argument the built binary must accept with exit status 0 (--version)
#   LDFLAGS  optional linker flags added to "-s -w" (such as -X of a version variable
#            that the tool's release build sets)
# Prints the binary's path on the last line of stdout. Idempotent.
build_go_module() {
	local name="$1" module="$2" package="$3" version="$4" check="$5" ldflags="${6:-}"
	local root out bin work
	root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
	out="$root/bin/$name/$version"
	bin="$out/$name"
	log() { printf '[%s] %s\n' "$name" "$*" >&2; }
	die() { printf '[%s] ERROR: %s\n' "$name" "$*" >&2; exit 1; }
	command -v go >/dev/null || die "go is not on PATH"
	if [ -x "$bin" ] && [ -f "$out/.built" ]; then
		log "$name $version: up to date"
		echo "$bin"
		return 0
	fi
	mkdir -p "$out"
	work="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-$name.XXXXXX")"
	# shellcheck disable=SC2064 # expand now: work is local
	trap "rm -rf '$work'" EXIT
	log "resolving $module $version"
	(
		cd "$work"
		export GOFLAGS=-mod=mod
		go mod init "latchkey.dev/hack/$name" >&2
		go get "$package@$version" >&2
	) || die "could not resolve $module $version from the module proxy"
	log "building $name $version (a few minutes the first time)"
	(cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w${ldflags:+ $ldflags}" -o "$bin.tmp" "$package") ||
		die "building $name failed (see the compiler output above)"
	mv "$bin.tmp" "$bin"
	"$bin" "$check" >/dev/null 2>&1 || die "$bin does not run"
	touch "$out/.built"
	log "built $bin"
	echo "$bin"
}
