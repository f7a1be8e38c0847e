#!/usr/bin/env bash
# Installs the official ClickHouse JS client (npm @clickhouse/client, pinned)
# for the query endpoint's tests, which run it under node against a real
# endpoint (queryapi/clickhousejs_test.go).
#
#   scripts/clickhouse-js.sh install    install if needed; print the directory
#                                       whose node_modules holds the client
#
# Into ${XDG_CACHE_HOME:-$HOME/.cache}/flowhouse/clickhouse-js-VERSION, with
# install scripts off (the package has none, and no dependencies).
# Idempotent and quiet: does nothing when that version is installed there;
# npm's output is shown only if it fails. Needs node >= 20 and npm.
set -euo pipefail

PACKAGE=@clickhouse/client
VERSION=1.23.1 # needs node >= 20

die() {
	echo "clickhouse-js.sh: $*" >&2
	exit 1
}

[[ "${1:-}" == install && $# -eq 1 ]] || {
	echo "usage: $0 install" >&2
	exit 2
}

command -v node >/dev/null 2>&1 || die "node (>= 20) is needed to run $PACKAGE"
major=$(node -p 'process.versions.node.split(".")[0]')
[[ "$major" -ge 20 ]] || die "$PACKAGE@$VERSION needs node >= 20, this is $(node --version)"

dir=${XDG_CACHE_HOME:-$HOME/.cache}/flowhouse/clickhouse-js-$VERSION
installed() {
	[[ -f "$dir/node_modules/$PACKAGE/package.json" ]] &&
		[[ "$(node -p "require('$dir/node_modules/$PACKAGE/package.json').version")" == "$VERSION" ]]
}
if installed; then
	printf '%s\n' "$dir"
	exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is needed to install $PACKAGE@$VERSION"
mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
log=$tmp.log
trap 'rm -rf "$tmp" "$log"' EXIT
if ! npm install --prefix "$tmp" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error "$PACKAGE@$VERSION" >"$log" 2>&1; then
	cat "$log" >&2
	die "npm install $PACKAGE@$VERSION failed"
fi
# Another run may have finished first: either copy is the same version.
if ! installed; then
	rm -rf "$dir"
	mv "$tmp" "$dir"
fi
installed || die "$PACKAGE@$VERSION is not in $dir after installing it"
printf '%s\n' "$dir"
