#!/usr/bin/env bash
# Install the Debian packages that flowhouse's tests and `make run` need.
#
# Idempotent and quiet: prints nothing and touches nothing when every package
# is already installed (checked with dpkg-query); otherwise runs
# `apt-get update` + `apt-get install` with their output captured to a log,
# which is printed only if something fails.
#
# While installing, a temporary /usr/sbin/policy-rc.d that exits 101 keeps
# the packages' services (clickhouse-server, snmpd, pmacct, openvswitch-switch,
# prometheus-alertmanager, fastnetmon) from starting;
# it is removed afterwards only if this script created it.
#
# Usage: scripts/deps.sh            (as root, or as a user with sudo)
#        scripts/deps.sh --list     (print the package list and exit)
#        scripts/deps.sh --bench    (also what make bench needs)
set -euo pipefail

PACKAGES=(
	clickhouse-server
	clickhouse-client
	softflowd
	pmacct
	openvswitch-switch
	tshark
	tcpdump
	socat
	python3-scapy
	snmpd
	snmp
	iproute2
	ieee-data
	prometheus-alertmanager
	python3-aiosmtpd
	zookeeper
	docker-compose
	nftables
	lldpd
	snmpsim
)
# --bench adds what only `make bench` uses: FastNetMon CE, the detector
# the bench compares detection with (its service stays stopped; the
# bench runs it with a configuration of its own, usage reports off), and
# nfdump, whose nfcapd the replay stage compares ingest with.
list=0
for arg in "$@"; do
	case "$arg" in
	--bench) PACKAGES+=(fastnetmon nfdump) ;;
	--list) list=1 ;;
	*) echo "deps.sh: unknown argument $arg" >&2; exit 2 ;;
	esac
done

if [[ $list -eq 1 ]]; then
	printf '%s\n' "${PACKAGES[@]}"
	exit 0
fi

# missing prints the packages that are not fully installed.
missing() {
	local p status
	for p in "${PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
		# "ii " = desired install, installed, no error.
		if [[ "${status:0:2}" != "ii" ]]; then
			printf '%s\n' "$p"
		fi
	done
}

mapfile -t todo < <(missing)
if [[ ${#todo[@]} -eq 0 ]]; then
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		# -n (never prompt) when there is no terminal to prompt on.
		sudo_opts=()
		[[ -t 0 ]] || sudo_opts=(-n)
		exec sudo "${sudo_opts[@]}" -- "$0" "$@"
	fi
	echo "deps.sh: needs root to install: ${todo[*]} (run as root, or install sudo)" >&2
	exit 1
fi

log=$(mktemp "${TMPDIR:-/tmp}/flowhouse-deps.XXXXXX.log")
policy=/usr/sbin/policy-rc.d
created_policy=0

cleanup() {
	if [[ $created_policy -eq 1 ]]; then
		rm -f "$policy"
		created_policy=0
	fi
}
fail() {
	cleanup
	echo "deps.sh: $1 failed; missing packages were: ${todo[*]}" >&2
	echo "----- log ($log) -----" >&2
	cat "$log" >&2
	exit 1
}
trap cleanup EXIT

if [[ ! -e "$policy" ]]; then
	printf '#!/bin/sh\n# temporary, from flowhouse scripts/deps.sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

apt-get "${apt_opts[@]}" update >>"$log" 2>&1 || fail "apt-get update"
apt-get "${apt_opts[@]}" install --no-install-recommends "${todo[@]}" >>"$log" 2>&1 ||
	fail "apt-get install"

# Verify: a package can end up unpacked but not configured.
mapfile -t still < <(missing)
if [[ ${#still[@]} -gt 0 ]]; then
	todo=("${still[@]}")
	fail "installation check (still missing: ${still[*]})"
fi

rm -f "$log"
exit 0
