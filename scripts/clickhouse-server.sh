#!/usr/bin/env bash
# Runs a local ClickHouse server for `make run`, with its data in DIR and
# its native protocol on 127.0.0.1:PORT only (no HTTP, no interserver
# port), so it never clashes with a system ClickHouse on 9000/8123.
#
#   scripts/clickhouse-server.sh start  [DIR] [PORT]   start unless running; wait until it answers
#   scripts/clickhouse-server.sh stop   [DIR] [PORT]   stop if running
#   scripts/clickhouse-server.sh status [DIR] [PORT]   exit 0 if running, 3 if not
#
# DIR defaults to ./var/clickhouse, PORT to 19000. Quiet unless something
# fails. FLOWHOUSE_CLICKHOUSE_SERVER may name the server binary.
set -euo pipefail

cmd=${1:-}
dir=${2:-./var/clickhouse}
port=${3:-19000}

usage() {
	echo "usage: $0 start|stop|status [DIR] [PORT]" >&2
	exit 2
}

case "$cmd" in start | stop | status) ;; *) usage ;; esac
[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || {
	echo "clickhouse-server.sh: PORT $port is not 1..65535" >&2
	exit 2
}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pidfile="$dir/clickhouse-server.pid"

server_cmd() {
	local p=${FLOWHOUSE_CLICKHOUSE_SERVER:-}
	if [[ -n "$p" ]]; then
		if [[ "$(basename "$p")" == clickhouse ]]; then echo "$p server"; else echo "$p"; fi
		return
	fi
	for p in "$(command -v clickhouse-server || true)" /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
		[[ -n "$p" && -x "$p" ]] && { echo "$p"; return; }
	done
	if p=$(command -v clickhouse); then echo "$p server"; return; fi
	echo "clickhouse-server.sh: no ClickHouse server binary found; run \`make test-deps\` (or scripts/deps.sh)" >&2
	return 1
}

client_cmd() {
	if command -v clickhouse-client >/dev/null; then echo clickhouse-client; return; fi
	if command -v clickhouse >/dev/null; then echo "clickhouse client"; return; fi
	echo "clickhouse-server.sh: no clickhouse-client found; run \`make test-deps\` (or scripts/deps.sh)" >&2
	return 1
}

# running prints the server's pid if the pid file names a live server.
running() {
	[[ -f "$pidfile" ]] || return 1
	local pid
	pid=$(<"$pidfile")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# A reused pid is not our server.
	grep -q clickhouse "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

answers() {
	$client --host 127.0.0.1 --port "$port" --query 'SELECT 1' >/dev/null 2>&1
}

write_config() {
	mkdir -p "$dir/data" "$dir/tmp" "$dir/log" "$dir/user_files" "$dir/format_schemas"
	cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/clickhouse-server.sh; rewritten at every start. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/server.log</log>
        <errorlog>$dir/log/server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$port</tcp_port>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>536870912</mark_cache_size>
    <uncompressed_cache_size>536870912</uncompressed_cache_size>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF
	cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>8000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

fail_with_logs() {
	echo "clickhouse-server.sh: $*" >&2
	for f in "$dir/log/stdout.log" "$dir/log/server.err.log"; do
		[[ -s "$f" ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
	done
	exit 1
}

case "$cmd" in
status)
	if pid=$(running); then
		echo "running: pid $pid, 127.0.0.1:$port, data $dir"
		exit 0
	fi
	echo "stopped"
	exit 3
	;;

stop)
	pid=$(running) || { rm -f "$pidfile"; exit 0; }
	kill -TERM "$pid"
	for _ in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; exit 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$pidfile"
	;;

start)
	client=$(client_cmd)
	if pid=$(running); then
		answers || fail_with_logs "server pid $pid is running but does not answer on port $port (started with another port? stop it first)"
		exit 0
	fi
	if answers; then
		fail_with_logs "something else already answers on 127.0.0.1:$port"
	fi
	server=$(server_cmd)
	write_config
	# setsid: the server outlives this script and the make that ran it.
	# shellcheck disable=SC2086 # server may be "clickhouse server"
	setsid $server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$pidfile"
	for _ in $(seq 1 300); do
		if answers; then exit 0; fi
		kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; fail_with_logs "server exited during startup"; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$pidfile"
	fail_with_logs "server did not answer on 127.0.0.1:$port within 30s"
	;;
esac
