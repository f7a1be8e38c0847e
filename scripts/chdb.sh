#!/usr/bin/env bash
# Installs libchdb.so, the embedded ClickHouse engine (chDB 26.7) that
# flowhouse loads when clickhouse.addr is empty.
#
#   scripts/chdb.sh install [DEST]   install to DEST (default ./var/lib/libchdb.so)
#
# The library ships in the npm package @chdb/lib-linux-x64-gnu; `npm pack`
# fetches its tarball (about 178 MB) without running any of its code. The
# tarball is kept in ${XDG_CACHE_HOME:-$HOME/.cache}/flowhouse/ and checked
# against scripts/libchdb.sha256 before use, and so is the extracted
# library. Idempotent: when DEST already holds the checked library (a
# stamp file DEST.sha256 records it), it does nothing. Quiet unless it fails.
set -euo pipefail

PACKAGE=@chdb/lib-linux-x64-gnu
VERSION=26.7.3-stable.1
TARBALL=chdb-lib-linux-x64-gnu-$VERSION.tgz

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sums=$here/libchdb.sha256

die() {
	echo "chdb.sh: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 install [DEST]" >&2
	exit 2
}

# expected NAME prints the checksum recorded for NAME.
expected() {
	local sum
	sum=$(awk -v name="$1" '!/^#/ && $2 == name { print $1 }' "$sums")
	[[ "$sum" =~ ^[0-9a-f]{64}$ ]] || die "no SHA-256 for $1 in $sums"
	printf '%s\n' "$sum"
}

sha256() { sha256sum "$1" | awk '{ print $1 }'; }

install() {
	local dest=${1:-./var/lib/libchdb.so}
	[[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] ||
		die "the pinned package is for Linux x86-64, this is $(uname -s)/$(uname -m)"
	local want_tgz want_so
	want_tgz=$(expected "$TARBALL")
	want_so=$(expected libchdb.so)

	# Installed already: the stamp says which library DEST is.
	if [[ -f "$dest" && -f "$dest.sha256" && "$(cat "$dest.sha256")" == "$want_so" ]]; then
		return 0
	fi

	local cache=${XDG_CACHE_HOME:-$HOME/.cache}/flowhouse
	local tgz=$cache/$TARBALL
	mkdir -p "$cache"
	if [[ ! -f "$tgz" || "$(sha256 "$tgz")" != "$want_tgz" ]]; then
		rm -f "$tgz"
		command -v npm >/dev/null 2>&1 || die "npm is needed to fetch $PACKAGE@$VERSION (apt-get install npm)"
		local log
		log=$(mktemp "${TMPDIR:-/tmp}/flowhouse-chdb.XXXXXX.log")
		if ! (cd "$cache" && npm pack --silent "$PACKAGE@$VERSION") >"$log" 2>&1; then
			cat "$log" >&2
			rm -f "$log"
			die "npm pack $PACKAGE@$VERSION failed"
		fi
		rm -f "$log"
		[[ -f "$tgz" ]] || die "npm pack did not write $tgz"
		local got
		got=$(sha256 "$tgz")
		if [[ "$got" != "$want_tgz" ]]; then
			rm -f "$tgz"
			die "$TARBALL has SHA-256 $got, want $want_tgz (from $sums); removed it"
		fi
	fi

	# Extract next to DEST and rename, so DEST is never half written.
	local dir
	dir=$(dirname "$dest")
	mkdir -p "$dir"
	# Global, for the EXIT trap.
	tmp=$(mktemp -d "$dir/.libchdb.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	tar -xzf "$tgz" -C "$tmp" package/libchdb.so || die "cannot extract libchdb.so from $tgz"
	local got
	got=$(sha256 "$tmp/package/libchdb.so")
	[[ "$got" == "$want_so" ]] || die "libchdb.so from $TARBALL has SHA-256 $got, want $want_so"
	chmod 0644 "$tmp/package/libchdb.so"
	mv -f "$tmp/package/libchdb.so" "$dest"
	printf '%s\n' "$want_so" >"$dest.sha256"
}

case "${1:-}" in
install)
	shift
	[[ $# -le 1 ]] || usage
	install "$@"
	;;
*) usage ;;
esac
