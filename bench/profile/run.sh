#!/usr/bin/env bash
# Profiles flowhouse serve under a fixed flowgen load on one engine and
# prints collector-side CPU seconds per million flows stored and RSS.
#
#   bench/profile/run.sh server|embedded OUTDIR [RATE] [SECONDS]
#
# Needs bin/flowhouse and bin/flowgen (go build -o bin/ ./cmd/flowhouse
# ./cmd/flowgen), var/lib/libchdb.so (make deps) or $CHDB_LIBRARY for embedded,
# Debian's clickhouse-server for server. Every process it starts, it stops; all
# traffic is on 127.0.0.1. The pprof listener is http.pprof_listen.
set -euo pipefail
engine=$1 out=$2 rate=${3:-200000} secs=${4:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
# PROFILE_BIN: the flowhouse binary measured (not FLOWHOUSE_: flowhouse
# rejects unknown FLOWHOUSE_ variables).
bin=${PROFILE_BIN:-$root/bin/flowhouse}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d /tmp/fhprof.XXXXXX)
free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket,sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
udp=$(free_port SOCK_DGRAM) http=$(free_port SOCK_STREAM) pprof=$(free_port SOCK_STREAM) q=$(free_port SOCK_STREAM) ch=$(free_port SOCK_STREAM)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	[[ "$engine" == server ]] && "$root/scripts/clickhouse-server.sh" stop "$tmp/ch" "$ch" || true
	rm -rf "$tmp"
}
trap cleanup EXIT
env=(FLOWHOUSE_SPOOL_DIR="$tmp/spool" FLOWHOUSE_COLLECTOR_STATE_FILE="$tmp/collector.state"
	FLOWHOUSE_CLICKHOUSE_DATABASE=prof FLOWHOUSE_COLLECTOR_LISTENERS=127.0.0.1:$udp
	FLOWHOUSE_HTTP_LISTEN=127.0.0.1:$http FLOWHOUSE_HTTP_PPROF_LISTEN=127.0.0.1:$pprof
	FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN=127.0.0.1:$q FLOWHOUSE_LOG_LEVEL=warn)
for r in $(FLOWHOUSE_LOG_LEVEL=error "$bin" check-config 2>/dev/null | awk '/^  builtin:/{b=1;next} b&&/^    [a-z_]+:$/{gsub(/[ :]/,"");print} b&&/^  [a-z]/{b=0}'); do
	env+=("FLOWHOUSE_RULES_BUILTIN_${r^^}_ENABLED=false")
done
if [[ "$engine" == server ]]; then
	"$root/scripts/clickhouse-server.sh" start "$tmp/ch" "$ch"
	env+=(FLOWHOUSE_CLICKHOUSE_ADDR=127.0.0.1:$ch)
else
	env+=(FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY="${CHDB_LIBRARY:-$root/var/lib/libchdb.so}" FLOWHOUSE_CLICKHOUSE_EMBEDDED_PATH="$tmp/data")
fi
env "${env[@]}" ${GOGC:+GOGC=$GOGC} "$bin" serve >"$out/flowhouse.log" 2>&1 &
fh=$!
pids+=($fh)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$http/readyz" >/dev/null || { echo "flowhouse did not become ready:" >&2; tail -5 "$out/flowhouse.log" >&2; exit 1; }
metric() { curl -s "http://127.0.0.1:$http/metrics" | awk -v m="$1" '$1==m || index($1, m"{")==1 {s+=$NF} END {printf "%.0f\n", s}'; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; } # clock ticks, USER_HZ 100
# CPU ticks per thread name: the embedded engine's threads are named by
# their pool (MergeMutate, QueryPipelineEx, ...), Go's all "flowhouse".
threads() { for t in /proc/$1/task/*; do sed -E 's/^[0-9]+ \((.*)\) (.*)$/\1\t\2/' "$t/stat" 2>/dev/null; done |
	awk -F'\t' '{split($2, f, " "); c[$1] += f[12] + f[13]} END {for (n in c) print n "\t" c[n]}'; }
# Kernel drops: UDP receive buffer overflows, system-wide (other
# processes' sockets count too), over the whole run.
rcvbuf() { awk '/^Udp:/ {if (!h) {for (i=1;i<=NF;i++) if ($i=="RcvbufErrors") c=i; h=1} else print $c}' /proc/net/snmp; }
# Active parts per table, every 5 s (embedded only: through its query endpoint).
parts() { curl -s "http://127.0.0.1:$q/" --data-binary "SELECT table, count() FROM system.parts WHERE active AND database = 'prof' AND table LIKE 'flows%' GROUP BY table ORDER BY table FORMAT TSV" | paste -sd' '; }
kd0=$(rcvbuf)
# Warm up 5 s (templates, first batches), then measure over the window.
"$root/bin/flowgen" -target 127.0.0.1:$udp -rate "$rate" -duration $((secs + 10))s -quiet -report "$out/flowgen.json" >"$out/flowgen.log" 2>&1 &
gen=$!
pids+=($gen)
if [[ "$engine" == embedded ]]; then
	(while sleep 5; do echo "$(date +%T) $(parts)"; done >"$out/parts.txt") &
	pids+=($!)
fi
sleep 5
threads $fh >"$tmp/threads0"
dec0=$(metric flowhouse_collector_flows_total) rows0=$(metric flowhouse_store_rows_inserted_total) c0=$(cpu $fh) g0=$(cpu $gen) t0=$(date +%s.%N)
curl -s -o "$out/cpu.pprof" "http://127.0.0.1:$pprof/debug/pprof/profile?seconds=$secs"
dec1=$(metric flowhouse_collector_flows_total) rows1=$(metric flowhouse_store_rows_inserted_total) c1=$(cpu $fh) g1=$(cpu $gen) t1=$(date +%s.%N)
threads $fh >"$tmp/threads1"
# Nice value per thread name (the engine's merges may run at a lower priority).
for t in /proc/$fh/task/*; do sed -E 's/^[0-9]+ \((.*)\) (.*)$/\1\t\2/' "$t/stat" 2>/dev/null; done |
	awk -F'\t' '{split($2, f, " "); n[$1 "\tnice " f[17]]++} END {for (k in n) print k "\t" n[k] " threads"}' | sort >"$out/nice.txt"
# Threads that ended in the window are missing from threads1: their CPU
# is in the process total, not in this table.
awk -F'\t' 'NR==FNR {a[$1]=$2; next} {d=$2-a[$1]; if (d > 0) printf "%s\t%.2f\n", $1, d/100}' "$tmp/threads0" "$tmp/threads1" | sort -t$'\t' -k2 -rn >"$out/threads.tsv"
curl -s -o "$out/heap.pprof" "http://127.0.0.1:$pprof/debug/pprof/heap"
curl -s -o "$out/allocs.pprof" "http://127.0.0.1:$pprof/debug/pprof/allocs"
rss=$(awk '/VmRSS/{print $2}' /proc/$fh/status) hwm=$(awk '/VmHWM/{print $2}' /proc/$fh/status)
wait $gen || true
# The last batches: wait until the stored count stops moving.
last=-1
same=0
for _ in $(seq 90); do n=$(metric flowhouse_store_rows_inserted_total); if [[ "$n" == "$last" ]]; then same=$((same + 1)); [[ $same -ge 6 ]] && break; else same=0; fi; last=$n; sleep 1; done
kd1=$(rcvbuf)
curl -s "http://127.0.0.1:$http/metrics" >"$out/metrics.txt"
dropped=$(grep -E '^flowhouse_(store_rows_dropped|collector_queue_drops|spool_rows_dropped)_total' "$out/metrics.txt" | awk '{s+=$NF} END {printf "%.0f\n", s}')
sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["flows"])' "$out/flowgen.json")
stored=$(metric flowhouse_store_rows_inserted_total)
sum() { grep -E "^$1(\{| )" "$out/metrics.txt" | awk '{s+=$NF} END {printf "%.0f\n", s}'; }
# Flows sent and not stored: lost, or (spilled) in the spool, replayed later.
# Kernel drops and the collector's drops are datagrams, not flows.
echo "whole run: sent=$sent stored=$stored not_stored=$(python3 -c "print(f'{1-$stored/$sent:.4%}')") spilled=$(sum flowhouse_store_rows_spilled_total)" \
	"kernel_rcvbuf_errors_datagrams=$((kd1 - kd0)) collector_drops_datagrams=$(sum flowhouse_collector_drops_total)" \
	"collector_queue_drops=$(sum flowhouse_collector_queue_drops_total) store_rows_dropped=$(sum flowhouse_store_rows_dropped_total)" \
	"parts_at_end=[$([[ "$engine" == embedded ]] && parts)]" >"$out/loss.txt"
python3 - "$engine" "$rate" "$rows0" "$rows1" "$c0" "$c1" "$g0" "$g1" "$t0" "$t1" "$rss" "$hwm" "$dec0" "$dec1" "$dropped" <<'PY' | tee "$out/summary.txt"
import sys
e, rate, r0, r1, c0, c1, g0, g1, t0, t1, rss, hwm, d0, d1, dropped = sys.argv[1:]
rows = int(r1) - int(r0); cpu = (float(c1) - float(c0)) / 100; gcpu = (float(g1) - float(g0)) / 100
dec = int(d1) - int(d0); wall = float(t1) - float(t0)
# Per flow stored is the figure asked for; per flow decoded does not
# depend on where the batches are when the window closes. Both are
# meaningful only when nothing was dropped (dropped= below).
print(f"engine={e} offered={rate}/s window={wall:.1f}s stored={rows} ({rows/wall:.0f}/s) decoded={dec} dropped_total={dropped} "
      f"flowhouse_cpu={cpu:.2f}s ({cpu/wall:.2f} cores) s_per_Mflows_stored={cpu/rows*1e6:.2f} s_per_Mflows_decoded={cpu/dec*1e6:.2f} "
      f"flowgen_cpu={gcpu:.2f}s ({gcpu/wall:.2f} cores) rss={int(rss)/1024:.0f}MiB peak_rss={int(hwm)/1024:.0f}MiB")
PY
cat "$out/loss.txt" | tee -a "$out/summary.txt"
uptime | tee -a "$out/summary.txt"
