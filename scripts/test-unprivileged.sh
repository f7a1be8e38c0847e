#!/usr/bin/env bash
# Run the tests that need no root as an unprivileged user, to show that
# flowhouse needs none (README, "Capabilities"). Run as root:
#
#   scripts/test-unprivileged.sh [PACKAGE...]   (default: every package but ROOT_PACKAGES)
#
# Creates the system user flowhouse-test if missing, gives it a GOCACHE,
# GOPATH and a read-only copy of root's module download cache (served as
# GOPROXY=file://, so nothing is fetched) under $STATE, copies the files
# git tracks there (the checkout may be in a directory that user cannot
# enter, such as /root), and runs go test on that copy with runuser.
# Quiet unless a test fails: go test's summary and one line of timing.
set -euo pipefail

USER_NAME=flowhouse-test
STATE=${STATE:-/var/tmp/flowhouse-unprivileged}
# Packages whose tests create network namespaces (internal/peers
# RequireNetns, NewNetns, StartSnmpd) or run Open vSwitch (StartOVS): they
# need root and fail without it, by design.
ROOT_PACKAGES=(
	./analytics/rules
	./collector
	./enrich
	./internal/peers
	./inventoryapi
)

[[ $(id -u) -eq 0 ]] || { echo "test-unprivileged.sh: run as root (it creates $USER_NAME)" >&2; exit 2; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

id "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
mkdir -p "$STATE/proxy"
src=$("$GO" env GOMODCACHE)/cache/download
cp -a -u "$src/." "$STATE/proxy/"
rm -rf "$STATE/src" && mkdir -p "$STATE/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$STATE/src" -xf -
else
	tar --exclude=./var --exclude=./bin -cf - . | tar -C "$STATE/src" -xf -
fi
chown -R "$USER_NAME:" "$STATE"

if [[ $# -gt 0 ]]; then
	pkgs=("$@")
else
	mapfile -t pkgs < <("$GO" list ./... | sed "s|^$("$GO" list -m)|.|" | grep -vxF -f <(printf '%s\n' "${ROOT_PACKAGES[@]}"))
fi

start=$(date +%s)
cd "$STATE/src"
runuser -u "$USER_NAME" -- env -i PATH="$(dirname "$GO"):/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" HOME="$STATE" \
	GOCACHE="$STATE/cache" GOPATH="$STATE/gopath" GOPROXY="file://$STATE/proxy" GOSUMDB=off GOFLAGS=-mod=readonly \
	TMPDIR="$STATE" "$GO" test -count=1 "${pkgs[@]}"
echo "test-unprivileged: ${#pkgs[@]} packages passed as $USER_NAME (uid $(id -u "$USER_NAME")) in $(( $(date +%s) - start )) s"
