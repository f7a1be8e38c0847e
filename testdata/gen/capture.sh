#!/usr/bin/env bash
# Capture what real exporters send for testdata/traffic.pcap, and let tshark
# (an independent decoder) write the expected flow records.
#
# For each capture NAME below: replay testdata/traffic.pcap through the
# exporter to 127.0.0.1:PORT, record that port on lo with tcpdump (classic
# pcap), write collector/testdata/captures/NAME.pcap, then run
# testdata/gen/tshark_expected.py to write NAME.expected.json.
#
# Runs inside a network namespace it creates and deletes (needs root and
# iproute2), so no other traffic on the host can end up in a capture; with
# --host (or when not root) it uses the host's lo instead.
# Every process runs under `timeout`; daemons are stopped by PID.
#
# With --expected-only, only NAME.expected.json are rewritten from the
# committed captures (after a change to tshark_expected.py).
#
# Usage: testdata/gen/capture.sh [--host] [--expected-only] [NAME...]
#   NAME: netflow5 netflow9 ipfix ipfix_biflow ipfix_ether sflow5
#         pmacct_netflow9 pmacct_ipfix nfdump_netflow5 ovs_ipfix (default: all)
# Needs: softflowd pmacct nfdump openvswitch-switch tcpdump tshark socat iproute2 (scripts/deps.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
INPUT=$ROOT/testdata/traffic.pcap
TRUTH=$ROOT/testdata/traffic.truth.json
OUT=$ROOT/collector/testdata/captures
GEN=$ROOT/testdata/gen

# name -> "port kind exporter-args". kind: cflow (softflowd), sflow (pmacctd's
# sfprobe, args: sampling rate), nfprobe (pmacctd's nfprobe, args: version) or
# nfreplay (nfdump: nfpcapd turns the traffic into nfcapd files, one per
# 5 minutes, and one nfreplay process per file sends them, args: version; so
# the exporter restarts between files, and a flow that spans a file boundary
# is two records). nfreplay's v9 is not used: its data records do not
# follow its own templates (tshark reads the protocol, 17, as ENGINE_TYPE,
# and every port as 0), so a decoder can only agree on garbage. Or ovs
# (Open vSwitch's IPFIX exporter, fed by injected packets, see run_ovs,
# rather than by traffic.pcap).
declare -A SPEC=(
	[netflow5]="20555 cflow -v 5"
	[netflow9]="20559 cflow -v 9 -6"
	[ipfix]="24739 cflow -v 10 -6"
	[ipfix_biflow]="24740 cflow -v 10 -b -A milli -6"
	[ipfix_ether]="24741 cflow -v 10 -6 -T ether"
	[sflow5]="26343 sflow 1"
	[pmacct_netflow9]="20560 nfprobe 9"
	[pmacct_ipfix]="24742 nfprobe 10"
	[nfdump_netflow5]="20561 nfreplay 5"
	[ovs_ipfix]="24750 ovs"
)
ORDER=(netflow5 netflow9 ipfix ipfix_biflow ipfix_ether sflow5 pmacct_netflow9 pmacct_ipfix nfdump_netflow5 ovs_ipfix)

use_netns=1
expected_only=0
names=()
for a in "$@"; do
	case "$a" in
	--host) use_netns=0 ;;
	--expected-only) expected_only=1 ;;
	-h | --help)
		sed -n '2,19p' "$0"
		exit 0
		;;
	*)
		[[ -n "${SPEC[$a]:-}" ]] || {
			echo "capture.sh: unknown capture '$a' (known: ${ORDER[*]})" >&2
			exit 2
		}
		names+=("$a")
		;;
	esac
done
[[ ${#names[@]} -gt 0 ]] || names=("${ORDER[@]}")
[[ $(id -u) -eq 0 ]] || use_netns=0

for bin in softflowd pmacctd nfpcapd nfreplay ovs-vswitchd ovsdb-server tcpdump tshark socat ip; do
	command -v "$bin" >/dev/null 2>&1 || {
		echo "capture.sh: $bin not found: run scripts/deps.sh (nfpcapd and nfreplay: apt-get install nfdump, which only this script uses)" >&2
		exit 1
	}
done
[[ -f "$INPUT" ]] || {
	echo "capture.sh: $INPUT missing: run testdata/gen/gen_traffic.py first" >&2
	exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flowhouse-capture.XXXXXX")
NS=""
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
	if [[ -n "$NS" ]]; then
		ip netns del "$NS" 2>/dev/null || true
		NS=""
		NSX=()
	fi
}
trap 'cleanup; rm -rf "$WORK"' EXIT

# NSX prefixes commands that run in the capture namespace (empty on the host).
# Background jobs are simple commands (no functions, no subshells), so $! is
# the PID of `timeout`, which passes on the signal it gets to its command.
NSX=()

capture_one() {
	local name=$1 port kind args
	read -r port kind args <<<"${SPEC[$name]}"
	local dir=$WORK/$name
	mkdir -p "$dir"
	local cap=$dir/$name.pcap

	if [[ $use_netns -eq 1 ]]; then
		NS=fh-cap-$$-$name
		ip netns add "$NS"
		ip -n "$NS" link set lo up
		NSX=(ip netns exec "$NS")
	fi

	# A receiver on the port, so the exporter's connected UDP socket does not
	# get ICMP port-unreachable (ECONNREFUSED) back.
	"${NSX[@]}" timeout 120 socat -u "UDP4-RECV:$port,bind=127.0.0.1" OPEN:/dev/null &
	PIDS+=($!)

	# tcpdump: classic pcap, packet-buffered; wait until it listens.
	"${NSX[@]}" timeout 120 tcpdump -i lo -n -U --immediate-mode -B 16384 -s 0 -w "$cap" "udp and dst host 127.0.0.1 and dst port $port" \
		2>"$dir/tcpdump.log" &
	local td=$!
	PIDS+=($td)
	local i
	for i in $(seq 1 100); do
		grep -q "listening on" "$dir/tcpdump.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -q "listening on" "$dir/tcpdump.log" || {
		cat "$dir/tcpdump.log" >&2
		echo "capture.sh: tcpdump did not start" >&2
		return 1
	}

	local rc=0
	if [[ $kind == ovs ]]; then
		run_ovs "$dir" "$port" >"$dir/exporter.log" 2>&1 || rc=$?
	elif [[ $kind == nfreplay ]]; then
		mkdir -p "$dir/nfcapd"
		"${NSX[@]}" timeout 60 nfpcapd -r "$INPUT" -w "$dir/nfcapd" >"$dir/exporter.log" 2>&1 || rc=$?
		local f
		for f in "$dir"/nfcapd/nfcapd.*; do
			[[ $rc -eq 0 ]] || break
			"${NSX[@]}" timeout 60 nfreplay -v "$args" -H 127.0.0.1 -p "$port" -r "$f" >>"$dir/exporter.log" 2>&1 || rc=$?
		done
	elif [[ $kind == cflow ]]; then
		# Run from testdata/ with a relative -r: softflowd exports the file
		# name (first 16 bytes) as IF_NAME in its options data, so an absolute
		# path would put the checkout's location into the capture.
		# shellcheck disable=SC2086 # args is a word list on purpose
		(cd "$(dirname "$INPUT")" && "${NSX[@]}" timeout 60 softflowd -d -a -r "$(basename "$INPUT")" \
			-n "127.0.0.1:$port" $args -p "$dir/softflowd.pid") >"$dir/exporter.log" 2>&1 || rc=$?
	else
		cat >"$dir/pmacctd.conf" <<-EOF
			daemonize: false
			pidfile: $dir/pmacctd.pid
			logfile: $dir/pmacctd.log
			pcap_savefile: $INPUT
			pcap_savefile_wait: false
		EOF
		if [[ $kind == sflow ]]; then
			cat >>"$dir/pmacctd.conf" <<-EOF
				plugins: sfprobe[sf]
				sfprobe_receiver[sf]: 127.0.0.1:$port
				sfprobe_agentip[sf]: 127.0.0.1
				sfprobe_agentsubid[sf]: 7
				sampling_rate[sf]: $args
			EOF
		else
			cat >>"$dir/pmacctd.conf" <<-EOF
				plugins: nfprobe[nf]
				nfprobe_receiver[nf]: 127.0.0.1:$port
				nfprobe_version[nf]: $args
			EOF
		fi
		"${NSX[@]}" timeout 60 pmacctd -f "$dir/pmacctd.conf" >"$dir/exporter.log" 2>&1 || rc=$?
		# pmacctd 1.7 exits with 1 at the end of a savefile when its core sees
		# the plugin's (requested) exit first; everything was sent then.
		if [[ $rc -eq 1 ]] && grep -q "Shutting down on user request" "$dir/pmacctd.log" &&
			grep -q "no more plugins active. Shutting down." "$dir/pmacctd.log" &&
			! grep -q ERROR "$dir/pmacctd.log"; then
			rc=0
		fi
	fi
	sleep 1 # let the last datagrams reach tcpdump
	kill -INT "$td" 2>/dev/null || true
	wait "$td" 2>/dev/null || true
	cleanup
	if [[ $rc -ne 0 ]]; then
		cat "$dir/exporter.log" "$dir"/pmacctd.log >&2 2>/dev/null || true
		echo "capture.sh: $name: exporter exited with $rc" >&2
		return 1
	fi
	local n
	n=$(tcpdump -n -r "$cap" 2>/dev/null | wc -l)
	[[ $n -gt 0 ]] || {
		echo "capture.sh: $name: nothing captured" >&2
		return 1
	}
	# The exporter's own count of datagrams sent must be what was captured:
	# softflowd reports "Flows exported: F (R records) in N packets", the
	# OVS bridge's IPFIX statistics "tx pkts=N".
	local sent="" from=""
	if [[ $kind == cflow ]]; then
		from=$dir/exporter.log
		sent=$(sed -n 's/.* in \([0-9]*\) packets.*/\1/p' "$from" | tail -1)
	elif [[ $kind == ovs ]]; then
		from=$dir/ipfix-stats.txt
		sent=$(sed -n 's/.*tx pkts=\([0-9]*\).*/\1/p' "$from" | head -1)
	fi
	if [[ -n "$from" && "$sent" != "$n" ]]; then
		cat "$from" >&2
		echo "capture.sh: $name: the exporter sent ${sent:-?} datagrams, tcpdump captured $n" >&2
		return 1
	fi
	cp "$cap" "$OUT/$name.pcap"
	expected "$name" "$dir"
	# sFlow datagrams are numbered from 1: a gap means the capture lost some.
	if [[ $kind == sflow ]]; then
		/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
seqs = [g["sequence"] for g in d["datagrams"]]
if seqs != list(range(1, len(seqs) + 1)):
    sys.exit("capture.sh: sflow datagram sequence numbers have gaps: the capture lost datagrams")
' "$dir/$name.expected.json" || {
			cat "$dir/tcpdump.log" >&2
			return 1
		}
	fi
	mv "$dir/$name.expected.json" "$OUT/$name.expected.json"
	echo "$name: $n datagrams on udp/$port -> $OUT/$name.pcap, $name.expected.json"
}

# expected NAME DIR: let tshark decode OUT/NAME.pcap into DIR/NAME.expected.json.
expected() {
	local name=$1 dir=$2 port kind args
	read -r port kind args <<<"${SPEC[$name]}"
	local dissector=cflow truth=(--truth "$TRUTH")
	[[ $kind == sflow ]] && dissector=sflow
	if [[ $kind == ovs ]]; then
		# What was injected is the truth; kept beside the capture so that
		# --expected-only can use it again.
		[[ -f "$dir/injected.json" ]] && cp "$dir/injected.json" "$OUT/$name.injected.json"
		truth=(--injected "$OUT/$name.injected.json")
	fi
	/usr/bin/python3 "$GEN/tshark_expected.py" --name "$name" --port "$port" --proto "$dissector" \
		--exporter "$(exporter_desc "$kind" "$args")" "${truth[@]}" \
		"$OUT/$name.pcap" >"$dir/$name.expected.json"
}

exporter_desc() {
	if [[ $1 == ovs ]]; then
		echo "$(ovs-vswitchd --version | head -1 | sed 's/ (Open vSwitch)//'), bridge IPFIX, datapath dummy, sampling 1, cache_active_timeout $OVS_ACTIVE_TIMEOUT s, obs_domain_id $OVS_DOMAIN"
	elif [[ $1 == cflow ]]; then
		echo "softflowd $(softflowd -h 2>&1 | sed -n 's/.*softflowd version \([0-9.]*[0-9]\).*/\1/p') -d -a -r traffic.pcap $2"
	elif [[ $1 == nfreplay ]]; then
		echo "nfdump $(nfdump -V 2>&1 | sed -n 's/.*Version: *\([^ ]*\).*/\1/p' | head -1): nfpcapd -r traffic.pcap, then nfreplay -v $2 per file"
	elif [[ $1 == sflow ]]; then
		echo "pmacctd $(pmacctd -V 2>&1 | sed -n '1s/.*pmacctd \([^ ]*\).*/\1/p') sfprobe sampling_rate $2"
	else
		echo "pmacctd $(pmacctd -V 2>&1 | sed -n '1s/.*pmacctd \([^ ]*\).*/\1/p') nfprobe version $2"
	fi
}

# ---------------------------------------------------------------- Open vSwitch
#
# ovs-vswitchd runs without the kernel module, as OVS's own test suite runs
# it: a database of its own (ovsdb-tool create from vswitch.ovsschema), a
# bridge on the dummy datapath with two dummy ports, p1 -> p2, and packets
# injected into p1 with `ovs-appctl netdev-dummy/receive`. Every file is in
# the capture's work directory (OVS_RUNDIR/DBDIR/LOGDIR), nothing touches
# the system's /var/run/openvswitch; both daemons run in the foreground
# under timeout and are stopped by PID.
#
# The bridge's IPFIX exporter samples every packet (sampling=1) at input
# and at output, so each flow is two records (flowDirection ingress, at p1,
# and egress, at p2). Three rounds of packets, each round waited out past
# the cache's active timeout, make each flow reported up to three times
# with growing totals: OVS sends delta counters (IE 1/2) and totals
# (IE 85/86) in the same record, and its totals are the exporter's, summed
# over all flows and both directions, not the flow's.
OVS_ACTIVE_TIMEOUT=2
OVS_DOMAIN=42

# One injected flow per line: name, odp flow (no in_port), frame length,
# packets in rounds 1 2 3. OVS counts octets as the frame less its 14-byte
# Ethernet header.
OVS_FLOWS=$(
	cat <<-'EOF'
		tcp4 eth(src=00:00:5e:00:53:01,dst=00:00:5e:00:53:02),eth_type(0x0800),ipv4(src=192.0.2.10,dst=198.51.100.20,proto=6,tos=0,ttl=64,frag=no),tcp(src=40001,dst=443) 200 5 3 4
		udp4 eth(src=00:00:5e:00:53:01,dst=00:00:5e:00:53:02),eth_type(0x0800),ipv4(src=192.0.2.11,dst=198.51.100.21,proto=17,tos=0,ttl=64,frag=no),udp(src=5353,dst=53) 100 2 0 6
		icmp4 eth(src=00:00:5e:00:53:01,dst=00:00:5e:00:53:02),eth_type(0x0800),ipv4(src=192.0.2.12,dst=198.51.100.22,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0) 98 1 1 1
		udp4_ef eth(src=00:00:5e:00:53:01,dst=00:00:5e:00:53:02),eth_type(0x0800),ipv4(src=192.0.2.13,dst=198.51.100.23,proto=17,tos=0xb8,ttl=64,frag=no),udp(src=16384,dst=16386) 1014 3 3 3
		tcp6 eth(src=00:00:5e:00:53:01,dst=00:00:5e:00:53:02),eth_type(0x86dd),ipv6(src=2001:db8::10,dst=2001:db8::20,label=0,proto=6,tclass=0,hlimit=64,frag=no),tcp(src=40002,dst=80) 300 4 4 0
	EOF
)

run_ovs() {
	local dir=$1 port=$2 d
	d=$dir/ovs
	mkdir -p "$d"
	export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d OVS_SYSCONFDIR=$d OVS_PKGDATADIR=/usr/share/openvswitch
	ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
	"${NSX[@]}" timeout 120 ovsdb-server --no-chdir --log-file="$d/ovsdb-server.log" --remote="punix:$d/db.sock" \
		--unixctl="$d/ovsdb-server.ctl" "$d/conf.db" &
	PIDS+=($!)
	local vsctl=(ovs-vsctl --db="unix:$d/db.sock" --timeout=30)
	local i
	for i in $(seq 1 100); do
		[[ -S "$d/db.sock" ]] && break
		sleep 0.1
	done
	"${vsctl[@]}" --no-wait init
	"${NSX[@]}" timeout 120 ovs-vswitchd --enable-dummy=override --disable-system --disable-system-route --no-chdir \
		--log-file="$d/ovs-vswitchd.log" --unixctl="$d/ovs-vswitchd.ctl" "unix:$d/db.sock" &
	PIDS+=($!)
	# Without --no-wait, ovs-vsctl returns once ovs-vswitchd applied it.
	"${vsctl[@]}" add-br br0 -- set bridge br0 datapath_type=dummy fail-mode=secure \
		-- add-port br0 p1 -- set Interface p1 type=dummy ofport_request=1 \
		-- add-port br0 p2 -- set Interface p2 type=dummy ofport_request=2
	ovs-ofctl add-flow "unix:$d/br0.mgmt" "in_port=1,actions=output:2"
	"${vsctl[@]}" -- set Bridge br0 ipfix=@i -- --id=@i create IPFIX "targets=\"127.0.0.1:$port\"" \
		sampling=1 obs_domain_id=$OVS_DOMAIN cache_active_timeout=$OVS_ACTIVE_TIMEOUT cache_max_flows=1024
	local appctl=(ovs-appctl -t "$d/ovs-vswitchd.ctl")
	local round name odp len c1 c2 c3 n count
	for round in 1 2 3; do
		while read -r name odp len c1 c2 c3; do
			count=c$round
			n=${!count}
			for ((i = 0; i < n; i++)); do
				"${appctl[@]}" netdev-dummy/receive p1 "in_port(1),$odp" --len "$len"
			done
		done <<<"$OVS_FLOWS"
		# Every flow's cache entry is exported once its active timeout is over.
		sleep $((OVS_ACTIVE_TIMEOUT * 2))
	done
	ovs-ofctl dump-ipfix-bridge "unix:$d/br0.mgmt" >"$dir/ipfix-stats.txt"
	/usr/bin/python3 - "$dir/injected.json" <<-PYEOF
		import json, re, sys
		flows = []
		for line in """$OVS_FLOWS""".strip().splitlines():
		    name, odp, length, *rounds = line.split()
		    rounds = [int(r) for r in rounds]
		    key = dict(re.findall(r"\b(src|dst|proto)=([^,]+)", re.search(r"ipv[46]\(([^)]*)\)", odp)[1]))
		    ports = re.search(r"(?:tcp|udp)\(src=(\d+),dst=(\d+)\)", odp)
		    flows.append({"name": name, "flow": odp, "src": key["src"], "dst": key["dst"], "proto": int(key["proto"]),
		                  "sport": int(ports[1]) if ports else 0, "dport": int(ports[2]) if ports else 0,
		                  "frame_length": int(length), "rounds": rounds,
		                  "packets": sum(rounds), "octets": sum(rounds) * (int(length) - 14)})
		json.dump({"note": "packets injected into p1 per round; each is counted once at input (p1) and once at output (p2); octets = frame length - 14",
		           "flows": flows}, open(sys.argv[1], "w"), indent=1)
	PYEOF
}

mkdir -p "$OUT"
for name in "${names[@]}"; do
	if [[ $expected_only -eq 1 ]]; then
		expected "$name" "$WORK"
		mv "$WORK/$name.expected.json" "$OUT/$name.expected.json"
		echo "$name: $OUT/$name.expected.json"
	else
		capture_one "$name"
	fi
done
