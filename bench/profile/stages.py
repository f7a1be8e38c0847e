#!/usr/bin/env python3
"""Breaks a flowhouse serve CPU profile down by pipeline stage.

    bench/profile/stages.py BINARY CPU.pprof

Each stage is the cumulative time of the function that does it (from
`go tool pprof -top -cum`); enrichment and send are differences. GC
"background" is the mark workers; "inline" is write barriers and assists
paid inside the stages (already counted in them, shown for scale).
"""
import re, subprocess, sys

out = subprocess.run(["go", "tool", "pprof", "-top", "-cum", "-nodecount=100000", sys.argv[1], sys.argv[2]],
                     capture_output=True, text=True, check=True).stdout
total = float(re.search(r"Total samples = ([\d.]+)(m?s)", out).group(1))
if re.search(r"Total samples = [\d.]+ms", out):
    total /= 1000
cum = {}
for line in out.splitlines():
    f = line.split()
    # flat flat% sum% cum cum% name [(inline)]
    if len(f) >= 6 and f[3].endswith("s") and f[4].endswith("%"):
        v, name = f[3], " ".join(f[5:]).removesuffix(" (inline)")
        cum[name] = float(v[:-2]) / 1000 if v.endswith("ms") else float(v[:-1])
c = lambda name: cum.get(name, 0.0)
stages = [
    ("receive (recvmmsg, batch reader)", c("github.com/flowhouse/flowhouse/collector.(*Collector).read")),
    ("decode", c("github.com/flowhouse/flowhouse/collector.(*Decoder).decodeFrom")),
    ("enrich (excluding batch append)", c("github.com/flowhouse/flowhouse/enrich.(*Enricher).Write") - c("github.com/flowhouse/flowhouse/store.(*Batcher).Write")),
    ("batch append (schema.Batch)", c("github.com/flowhouse/flowhouse/store.(*Batcher).Write")),
    ("server: copy batch into clickhouse-go columns", c("github.com/flowhouse/flowhouse/schema.(*Batch).InsertRows") or c("github.com/flowhouse/flowhouse/schema.(*Batch).InsertValues")),
    ("server: Native encode (clickhouse-go)", c("github.com/ClickHouse/clickhouse-go/v2/lib/proto.(*Block).EncodeColumn")),
    ("server: LZ4 compress", c("github.com/ClickHouse/clickhouse-go/v2.(*connect).compressBuffer")),
    ("server: send (socket writes, protocol)", c("github.com/ClickHouse/clickhouse-go/v2.(*connect).sendData") - c("github.com/ClickHouse/clickhouse-go/v2/lib/proto.(*Block).EncodeColumn") - c("github.com/ClickHouse/clickhouse-go/v2.(*connect).compressBuffer")),
    ("server: Native encode (ch-go proto.Block.EncodeBlock)", c("github.com/ClickHouse/ch-go/proto.Block.EncodeBlock")),
    ("server: compress (ch-go compress.Writer, native insert)", c("github.com/flowhouse/flowhouse/store.(*nativeConn).encodeBlock") - c("github.com/ClickHouse/ch-go/proto.Block.EncodeBlock")),
    ("server: rest of the native insert (InsertBlock, send, answers)", c("github.com/flowhouse/flowhouse/store.(*nativeConn).insertFlows") - c("github.com/flowhouse/flowhouse/store.(*nativeConn).encodeBlock")),
    ("embedded: Native block + engine call (Go side)", c("github.com/flowhouse/flowhouse/store.(*Embedded).InsertFlows")),
    ("embedded: engine threads ([libchdb.so], libc)", c("runtime._ExternalCode")),
    ("GC background mark workers", c("runtime.gcBgMarkWorker")),
]
known = sum(v for _, v in stages)
print(f"| stage | CPU s | share |\n| --- | ---: | ---: |")
for name, v in stages:
    if v > 0:
        print(f"| {name} | {v:.2f} | {v / total:.1%} |")
print(f"| other (scheduler, timers, metrics, rest) | {total - known:.2f} | {(total - known) / total:.1%} |")
print(f"| **total sampled** | **{total:.2f}** | 100% |")
inline = c("gcWriteBarrier") + c("runtime.gcAssistAlloc")
print(f"\nGC paid inline within the stages (write barriers, assists): {inline:.2f} s ({inline / total:.1%}); "
      f"growslice: {c('runtime.growslice'):.2f} s ({c('runtime.growslice') / total:.1%}).")
