#!/usr/bin/env bash
# Builds gitleaks (github.com/zricethezav/gitleaks/v8) from its Go module, for the
# secret-scanning pack's test: config/scanning/gitleaks.toml run by the real
# scanner over a git repository and a directory, its report then filtered by
# `kubectl latchkey check-leaks` (internal/leakscan).
#
# Usage: hack/gitleaks.sh
# Output: bin/gitleaks/<version>/gitleaks; prints that path on the last line.
set -euo pipefail

GITLEAKS_VERSION="${GITLEAKS_VERSION:-v8.30.1}"
# shellcheck source=hack/lib/gomodule.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/gomodule.sh"
# The version variable is what gitleaks' release build sets (.goreleaser.yml); without
# it `gitleaks version` prints "version is set by build process".
build_go_module gitleaks github.com/zricethezav/gitleaks/v8 github.com/zricethezav/gitleaks/v8 "$GITLEAKS_VERSION" version \
	"-X=github.com/zricethezav/gitleaks/v8/version.Version=${GITLEAKS_VERSION#v}"
