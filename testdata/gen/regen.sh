#!/usr/bin/env bash
# Regenerate all of flowhouse's traffic fixtures:
#   1. testdata/traffic.pcap + traffic.truth.json (gen_traffic.py, scapy), run
#      inside an empty network namespace when root, so that scapy cannot
#      reach any network even by mistake;
#   2. collector/testdata/captures/*.pcap + *.expected.json (capture.sh).
# Usage: testdata/gen/regen.sh [capture.sh arguments]
# Needs the packages of scripts/deps.sh. Takes about 30 s.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GEN=$ROOT/testdata/gen

if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null 2>&1; then
	ns=fh-gen-$$
	ip netns add "$ns"
	trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
	timeout 120 ip netns exec "$ns" /usr/bin/python3 "$GEN/gen_traffic.py" "$ROOT/testdata"
	ip netns del "$ns"
	trap - EXIT
else
	timeout 120 /usr/bin/python3 "$GEN/gen_traffic.py" "$ROOT/testdata"
fi
"$GEN/capture.sh" "$@"
