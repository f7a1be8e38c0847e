#!/usr/bin/python3
"""Flatten tshark's decoding of a flow-export capture into expected flow records.

tshark is the independent decoder: this script only reshapes what tshark says
(plus the arithmetic tshark leaves undone, see "time" below) into one JSON
document per capture, for flowhouse's decoder tests to compare against.

usage: tshark_expected.py --name NAME --port PORT --proto cflow|sflow
                          [--exporter TEXT] [--truth traffic.truth.json]
                          [--injected NAME.injected.json] CAPTURE

Runs `tshark -r CAPTURE -d udp.port==PORT,PROTO -T json -J PROTO` and prints JSON:
  capture, udp_port, protocol, exporter, decoder, notes[],
  datagrams[]   one object per UDP datagram (header fields, sets seen)
  records[]     NetFlow/IPFIX: one object per flow data record
  samples[]     sFlow: one object per flow sample (decoded sampled header)
  totals        record/sample counts, packets and bytes per IP family
  truth         comparison with traffic.truth.json (when --truth is given), or
                with the packets injected (--injected, the Open vSwitch capture)

tshark quirks handled here (details in testdata/gen/README.md):
  * JSON objects from tshark may repeat a key. RFC 5103 reverse fields
    (biflow) use the same names as the forward ones ("cflow.octets" twice);
    json.load() would keep only the last, i.e. the reverse value. Objects are
    therefore read as ordered pair lists: first occurrence = forward,
    second = reverse.
  * NetFlow v5/v9 FIRST/LAST_SWITCHED (and IPFIX IE 22/21) are shown as
    sysUpTime-relative seconds ("cflow.timestart"), except that a value of
    exactly 0 is shown as an absolute time at the Unix epoch
    ("cflow.abstimestart": "Jan  1, 1970 00:00:00"). Absolute times are
    computed here: v5 from unix_secs+unix_nsecs-sysUptime, v9 from
    unix_secs-sysUptime (v9 has no sub-second export time), IPFIX from
    systemInitTimeMilliseconds (IE 160) in the exporter's options data.
  * tshark makes one pass: a data set before its template is shown without
    records ("no template found"); such sets are counted, not decoded.
"""
import argparse
import collections
import datetime
import json
import re
import subprocess
import sys
from decimal import Decimal


class Node:
    """A JSON object that keeps duplicate keys, in order."""

    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items

    def get(self, key, default=None):
        for k, v in self.items:
            if k == key:
                return v
        return default

    def getall(self, key):
        return [v for k, v in self.items if k == key]

    def __contains__(self, key):
        return any(k == key for k, _ in self.items)

    def keys(self):
        return [k for k, _ in self.items]


def load_tshark(args):
    cmd = ["tshark", "-n", "-r", args.capture, "-d", f"udp.port=={args.port},{args.proto}",
           "-T", "json", "-J", args.proto]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"tshark failed ({p.returncode}): {p.stderr}")
    return json.loads(p.stdout or "[]", object_pairs_hook=Node), " ".join(cmd)


def tshark_version():
    out = subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "tshark"


def walk(o, fn):
    if isinstance(o, Node):
        fn(o)
        for _, v in o.items:
            walk(v, fn)
    elif isinstance(o, list):
        for v in o:
            walk(v, fn)


def num(s):
    """tshark prints integers in decimal or 0x-hex."""
    if s is None:
        return None
    return int(s, 0)


def sec_ms(s):
    """'330.260000000' (seconds) -> 330260 (ms)."""
    return int(Decimal(s) * 1000)


_ABS = re.compile(r"^([A-Z][a-z]{2}) +(\d+), (\d{4}) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? UTC$")


def abs_ms(s):
    """'Jan  1, 2024 00:00:03.010000000 UTC' -> Unix ms."""
    m = _ABS.match(s)
    if not m:
        raise ValueError(f"unparsed tshark time {s!r}")
    mon, day, year, hh, mm, ss, frac = m.groups()
    dt = datetime.datetime.strptime(f"{mon} {day} {year} {hh}:{mm}:{ss}", "%b %d %Y %H:%M:%S")
    dt = dt.replace(tzinfo=datetime.timezone.utc)
    ms = int(dt.timestamp()) * 1000
    if frac:
        ms += int((frac + "000")[:3])
    return ms


def frame_layers(frame):
    return frame.get("_source").get("layers")


# ---------------------------------------------------------------- NetFlow/IPFIX

FWD_REV = {  # output name -> tshark field; the 2nd occurrence in a record is the reverse value
    "bytes": ("cflow.octets", "cflow.octets64"),
    "packets": ("cflow.packets", "cflow.packets64"),
    # octetTotalCount / packetTotalCount (IE 85/86), cumulative counters
    "total_bytes": ("cflow.permanent_octets", "cflow.permanent_octets64"),
    "total_packets": ("cflow.permanent_packets", "cflow.permanent_packets64"),
    "tos": ("cflow.tos",),
    "tcp_flags": ("cflow.tcpflags",),
    "icmp_type_code": ("cflow.icmp_type_code_ipv4",),
    "icmp_type": ("cflow.icmp_ipv6_type", "cflow.icmp_type", "cflow.icmp_ipv4_type"),
    "icmp_code": ("cflow.icmp_ipv6_code", "cflow.icmp_code", "cflow.icmp_ipv4_code"),
}
SINGLE = {
    "sport": "cflow.srcport",
    "dport": "cflow.dstport",
    "proto": "cflow.protocol",
    "ip_version": "cflow.ip_version",
    "in_if": "cflow.inputint",
    "out_if": "cflow.outputint",
    "direction": "cflow.direction",
    "end_reason": "cflow.flow_end_reason",
    "vlan": "cflow.vlanid",
    "post_vlan": "cflow.post_vlanid",
    "src_as": "cflow.srcas",
    "dst_as": "cflow.dstas",
    "src_mask": "cflow.srcmask",
    "dst_mask": "cflow.dstmask",
}
STRINGS = {
    "nexthop": "cflow.nexthop",
    "src_mac": "cflow.srcmac",
    "dst_mac": "cflow.dstmac",
    "post_dst_mac": "cflow.post_dstmac",
    "post_src_mac": "cflow.post_srcmac",
}


def fwd_rev(rec, fields):
    vals = []
    for f in fields:
        vals += rec.getall(f)
    return vals


def flow_times(rec):
    """-> (start, end, kind): kind 'abs' (Unix ms) or 'rel' (ms since the uptime base)."""
    tt = rec.get("cflow.timedelta_tree")
    if tt is None:
        return None, None, None
    out = []
    kinds = []
    for rel_key, abs_key in (("cflow.timestart", "cflow.abstimestart"), ("cflow.timeend", "cflow.abstimeend")):
        if rel_key in tt:
            out.append(sec_ms(tt.get(rel_key)))
            kinds.append("rel")
        elif abs_key in tt:
            v = abs_ms(tt.get(abs_key))
            # A relative value of exactly 0 is shown as the Unix epoch.
            kinds.append("abs" if v >= 10 ** 12 else "rel")
            out.append(v)
        else:
            out.append(None)
            kinds.append(None)
    kind = kinds[0] if kinds[0] == kinds[1] or kinds[1] is None else "mixed"
    return out[0], out[1], kind


def parse_cflow(frames):
    datagrams, records, notes = [], [], []
    sys_init_ms = {}  # observation domain -> systemInitTimeMilliseconds (IPFIX)
    no_template_sets = 0
    for idx, frame in enumerate(frames):
        cf = frame_layers(frame).get("cflow")
        if not isinstance(cf, Node):
            datagrams.append({"frame": idx + 1, "decoded": False})
            continue
        ver = num(cf.get("cflow.version"))
        ts = cf.get("cflow.timestamp_tree") or Node([])
        dg = {"frame": idx + 1, "version": ver, "sequence": num(cf.get("cflow.sequence"))}
        uptime_base = None
        if ver in (5, 9):
            up = sec_ms(cf.get("cflow.sysuptime"))
            export_ms = num(ts.get("cflow.unix_secs")) * 1000
            if ver == 5:
                export_ms += num(ts.get("cflow.unix_nsecs")) // 1_000_000
            dg.update(count=num(cf.get("cflow.count")), sys_uptime_ms=up, export_time_ms=export_ms)
            uptime_base = export_ms - up
            if ver == 5:
                dg.update(engine_type=num(cf.get("cflow.engine_type")), engine_id=num(cf.get("cflow.engine_id")),
                          sampling_mode=num(cf.get("cflow.samplingmode")),
                          sampling_rate=num(cf.get("cflow.samplerate")))
            else:
                dg["source_id"] = num(cf.get("cflow.source_id"))
            domain = dg.get("source_id", 0)
        else:
            export_ms = num(ts.get("cflow.exporttime")) * 1000
            dg.update(length=num(cf.get("cflow.len")), export_time_ms=export_ms,
                      observation_domain=num(cf.get("cflow.od_id")))
            domain = dg["observation_domain"]
        seqtree = cf.get("cflow.sequence_tree")
        if isinstance(seqtree, Node):
            msgs = []
            walk(seqtree, lambda o: msgs.append(o.get("_ws.expert.message")) if "_ws.expert.message" in o else None)
            dg["tshark_sequence_warning"] = "; ".join(msgs) or "unexpected sequence"
        templates, opt_templates, opt_records, nrec, nt_sets = [], [], [], 0, []

        def data_records(container):
            # v5: "pdu i/n" directly in the cflow tree; v9/IPFIX: "Flow n" in a set.
            return [v for k, v in container.items if isinstance(v, Node) and (k.startswith("Flow ") or k.startswith("pdu "))]

        sets = [(k, v) for k, v in cf.items if isinstance(v, Node) and "cflow.flowset_id" in v]
        if ver == 5:
            sets = [("v5", cf)]
        for sname, s in sets:
            sid = num(s.get("cflow.flowset_id")) if ver != 5 else 256
            if sid in (0, 2):
                walk(s, lambda o: templates.append(num(o.get("cflow.template_id"))) if "cflow.template_id" in o else None)
                continue
            if sid in (1, 3):
                walk(s, lambda o: opt_templates.append(num(o.get("cflow.template_id"))) if "cflow.template_id" in o else None)
                continue
            recs = data_records(s)
            if not recs:
                nt_sets.append(sid)
                continue
            for r in recs:
                if not ("cflow.srcaddr" in r or "cflow.srcaddrv6" in r):
                    o = {k.split(".", 1)[1]: v for k, v in r.items if isinstance(v, str)}
                    o["set_id"] = sid
                    opt_records.append(o)
                    if "cflow.sys_init_time" in r:
                        sys_init_ms[domain] = abs_ms(r.get("cflow.sys_init_time"))
                    continue
                nrec += 1
                records.append(flatten_record(r, idx + 1, ver, sid, uptime_base, sys_init_ms.get(domain)))
        dg["records"] = nrec
        if templates:
            dg["templates"] = templates
        if opt_templates:
            dg["options_templates"] = opt_templates
        if opt_records:
            dg["options_records"] = opt_records
        if nt_sets:
            dg["sets_without_template"] = nt_sets
            no_template_sets += len(nt_sets)
        datagrams.append(dg)
    if no_template_sets:
        notes.append(f"{no_template_sets} data sets arrived before their template; tshark (one pass) did not "
                     "decode them and they are not in records[] or totals")
    return datagrams, records, notes, no_template_sets


def node_to_py(o):
    if isinstance(o, Node):
        return {k: node_to_py(v) for k, v in o.items}
    if isinstance(o, list):
        return [node_to_py(v) for v in o]
    return o


def flatten_record(r, frame, ver, set_id, uptime_base, sys_init):
    out = {"frame": frame}
    if ver != 5:
        out["set_id"] = set_id
    v6 = "cflow.srcaddrv6" in r
    out["src"] = r.get("cflow.srcaddrv6" if v6 else "cflow.srcaddr")
    out["dst"] = r.get("cflow.dstaddrv6" if v6 else "cflow.dstaddr")
    for name, field in SINGLE.items():
        if field in r:
            out[name] = num(r.get(field))
    if "ip_version" not in out:
        out["ip_version"] = 6 if v6 else 4
    for name, fields in FWD_REV.items():
        vals = fwd_rev(r, fields)
        if vals:
            out[name] = num(vals[0])
        if len(vals) > 1:
            out["rev_" + name] = num(vals[1])
        if len(vals) > 2:
            raise ValueError(f"frame {frame}: {name} occurs {len(vals)} times")
    if "icmp_type_code" in out:
        tc = out.pop("icmp_type_code")
        out["icmp_type"], out["icmp_code"] = tc >> 8, tc & 0xFF
        if "rev_icmp_type_code" in out:
            rtc = out.pop("rev_icmp_type_code")
            out["rev_icmp_type"], out["rev_icmp_code"] = rtc >> 8, rtc & 0xFF
    for name, field in STRINGS.items():
        if field in r:
            out[name] = r.get(field)
    start, end, kind = flow_times(r)
    if kind == "abs":
        out["start_ms"], out["end_ms"], out["time_source"] = start, end, "absolute"
    elif kind == "rel":
        out["start_uptime_ms"], out["end_uptime_ms"] = start, end
        base = uptime_base if ver in (5, 9) else sys_init
        if base is not None:
            out["start_ms"], out["end_ms"] = base + start, base + end
            out["time_source"] = "sysuptime" if ver in (5, 9) else "system_init_time"
    return out


# ------------------------------------------------------------------------ sFlow

def parse_sflow(frames):
    datagrams, samples, notes = [], [], []
    counter_samples = 0
    for idx, frame in enumerate(frames):
        layers = frame_layers(frame)
        sf = layers.get("sflow")
        if not isinstance(sf, Node):
            datagrams.append({"frame": idx + 1, "decoded": False})
            continue
        dg = {
            "frame": idx + 1,
            "version": num(sf.get("sflow_245.version")),
            "agent": sf.get("sflow_245.agent") or sf.get("sflow_245.agentv6"),
            "sub_agent_id": num(sf.get("sflow_245.sub_agent_id")),
            "sequence": num(sf.get("sflow_245.sequence_number")),
            "sys_uptime_ms": num(sf.get("sflow_245.sysuptime")),
            "samples": num(sf.get("sflow_245.numsamples")),
        }
        if "_ws.malformed" in json.dumps(node_to_py(layers)):
            dg["tshark_malformed"] = True
        fs = cs = 0
        for k, s in sf.items:
            if not isinstance(s, Node):
                continue
            if "sflow.flow_sample.sequence_number" in s:
                fs += 1
                samples.append(flatten_sample(s, idx + 1, dg))
            elif k.startswith("Counters sample") or "sflow.counters_sample.sequence_number" in s:
                cs += 1
        dg["flow_samples"], dg["counter_samples"] = fs, cs
        counter_samples += cs
        datagrams.append(dg)
    return datagrams, samples, notes, counter_samples


def flatten_sample(s, frame, dg):
    o = {
        "frame": frame,
        "datagram_sequence": dg["sequence"],
        "sample_sequence": num(s.get("sflow.flow_sample.sequence_number")),
        "source_id_class": num(s.get("sflow.flow_sample.source_id_class")),
        "source_id_index": num(s.get("sflow.flow_sample.index")),
        "sampling_rate": num(s.get("sflow.flow_sample.sampling_rate")),
        "sample_pool": num(s.get("sflow.flow_sample.sample_pool")),
        "drops": num(s.get("sflow.flow_sample.dropped_packets")),
        "in_if": num(s.get("sflow.flow_sample.input_interface")),
        "out_if": num(s.get("sflow.flow_sample.output_interface")),
    }
    for k, rec in s.items:
        if not isinstance(rec, Node):
            continue
        fmt = num(rec.get("sflow_245.flow_record_format"))
        if fmt == 1001:  # extended switch
            o["switch_vlan_in"] = num(rec.get("sflow_245.vlan.in"))
            o["switch_pri_in"] = num(rec.get("sflow_245.pri.in"))
            o["switch_vlan_out"] = num(rec.get("sflow_245.vlan.out"))
            o["switch_pri_out"] = num(rec.get("sflow_245.pri.out"))
        elif fmt == 1:  # raw packet header
            o["header_protocol"] = num(rec.get("sflow_245.header_protocol"))
            o["frame_length"] = num(rec.get("sflow_245.header.frame_length"))
            o["stripped"] = num(rec.get("sflow_245.header.payload_stripped"))
            o["header_length"] = num(rec.get("sflow_245.header.sampled_header_length"))
            o.update(decode_header(rec.get("sflow_245.header_tree") or Node([])))
        elif fmt is not None:
            o.setdefault("other_records", []).append(fmt)
    return o


def decode_header(h):
    o = {}
    eth = h.get("eth")
    if isinstance(eth, Node):
        o["src_mac"], o["dst_mac"] = eth.get("eth.src"), eth.get("eth.dst")
    vl = h.get("vlan")
    if isinstance(vl, Node):
        o["vlan"] = num(vl.get("vlan.id"))
    ip, ip6 = h.get("ip"), h.get("ipv6")
    if isinstance(ip, Node):
        o.update(ip_version=4, src=ip.get("ip.src"), dst=ip.get("ip.dst"), proto=num(ip.get("ip.proto")),
                 tos=num(ip.get("ip.dsfield")), ip_length=num(ip.get("ip.len")), ttl=num(ip.get("ip.ttl")))
    elif isinstance(ip6, Node):
        o.update(ip_version=6, src=ip6.get("ipv6.src"), dst=ip6.get("ipv6.dst"), proto=num(ip6.get("ipv6.nxt")),
                 tos=num(ip6.get("ipv6.tclass")), ip_length=40 + num(ip6.get("ipv6.plen")),
                 ttl=num(ip6.get("ipv6.hlim")))
    tcp, udp = h.get("tcp"), h.get("udp")
    if isinstance(tcp, Node):
        o.update(sport=num(tcp.get("tcp.srcport")), dport=num(tcp.get("tcp.dstport")),
                 tcp_flags=num(tcp.get("tcp.flags")) & 0xFF)
    elif isinstance(udp, Node):
        o.update(sport=num(udp.get("udp.srcport")), dport=num(udp.get("udp.dstport")))
    for name in ("icmp", "icmpv6"):
        ic = h.get(name)
        if isinstance(ic, Node):
            o.update(icmp_type=num(ic.get(name + ".type")), icmp_code=num(ic.get(name + ".code")))
    return o


# ------------------------------------------------------------------------ truth

def truth_key(proto, src, sport, dst, dport, vlan=None):
    return (proto, src, sport, dst, dport) if vlan is None else (proto, src, sport, dst, dport, vlan)


def icmp_port(rec, rev=False):
    p = "rev_" if rev else ""
    if rec.get(p + "icmp_type") is not None:
        return rec[p + "icmp_type"] * 256 + rec.get(p + "icmp_code", 0)
    return None


def compare_truth(truth, totals, records, kind, v4only, biflow):
    tflows = truth["flows"]
    fams = ["ipv4"] if v4only else ["ipv4", "ipv6"]
    tot = {}
    for fam in fams:
        t = truth["totals"][fam]
        c = totals.get(fam, {})
        cp = c.get("packets", 0) + (c.get("rev_packets", 0) if biflow else 0)
        cb = c.get("bytes", 0) + (c.get("rev_bytes", 0) if biflow else 0)
        if kind == "sflow":
            cb = c.get("ip_bytes", 0)
        tot[fam] = {"truth_packets": t["packets"], "truth_bytes": t["bytes"], "capture_packets": cp,
                    "capture_bytes": cb, "match": cp == t["packets"] and cb == t["bytes"]}
    # Per unidirectional flow, ignoring VLAN (softflowd keys flows without it by default).
    want = collections.defaultdict(lambda: [0, 0])
    for f in tflows:
        if f["family"] not in fams:
            continue
        w = want[truth_key(f["proto"], f["src"], f["sport"], f["dst"], f["dport"])]
        w[0] += f["packets"]
        w[1] += f["bytes"]
    got = collections.defaultdict(lambda: [0, 0])
    for r in records:
        proto = r.get("proto")
        if kind == "sflow":
            sp, dp = r.get("sport", 0), r.get("dport", 0)
            if proto in (1, 58):
                sp, dp = 0, icmp_port(r)
            g = got[truth_key(proto, r.get("src"), sp, r.get("dst"), dp)]
            g[0] += 1
            g[1] += r.get("ip_length", 0)
            continue
        ic = icmp_port(r)
        sp = 0 if ic is not None else (r.get("sport") or 0)
        dp = ic if ic is not None else (r.get("dport") or 0)
        if r.get("packets"):
            g = got[truth_key(proto, r["src"], sp, r["dst"], dp)]
            g[0] += r["packets"]
            g[1] += r["bytes"]
        if biflow and r.get("rev_packets"):
            ric = icmp_port(r, rev=True)
            rsp = 0 if ric is not None else (r.get("dport") or 0)
            rdp = ric if ric is not None else (r.get("sport") or 0)
            g = got[truth_key(proto, r["dst"], rsp, r["src"], rdp)]
            g[0] += r["rev_packets"]
            g[1] += r["rev_bytes"]
    # Flow times (not for sFlow): capture start/end against the truth's first/last packet.
    tdev = collections.Counter()
    if kind != "sflow":
        tw = {}
        for f in tflows:
            k = truth_key(f["proto"], f["src"], f["sport"], f["dst"], f["dport"])
            a, b = tw.get(k, (f["first_ms"], f["last_ms"]))
            tw[k] = (min(a, f["first_ms"]), max(b, f["last_ms"]))
        for r in records:
            if r.get("start_ms") is None:
                tdev["no_time"] += 1
                continue
            ic = icmp_port(r)
            k = truth_key(r["proto"], r["src"], 0 if ic is not None else (r.get("sport") or 0),
                          r["dst"], ic if ic is not None else (r.get("dport") or 0))
            rk = truth_key(r["proto"], r["dst"], 0 if ic is not None else (r.get("dport") or 0),
                           r["src"], ic if ic is not None else (r.get("sport") or 0))
            spans = [tw[x] for x in ([k, rk] if biflow else [k]) if x in tw and (x == k and r.get("packets") or x == rk)]
            if not spans:
                tdev["unmatched"] += 1
                continue
            first, last = min(a for a, _ in spans), max(b for _, b in spans)
            d = (r["start_ms"] - first, r["end_ms"] - last)
            tdev["start %+d ms, end %+d ms" % d] += 1
    # VLAN, where the capture carries it (softflowd -T vlan/ether; sFlow's sampled header).
    tvlan = {truth_key(f["proto"], f["src"], f["sport"], f["dst"], f["dport"]): f["vlan"] for f in tflows}
    vlan = collections.Counter()
    for r in records:
        if "vlan" not in r and "switch_vlan_in" not in r:
            continue
        ic = icmp_port(r)
        k = truth_key(r.get("proto"), r.get("src"), 0 if ic is not None else (r.get("sport") or 0),
                      r.get("dst"), ic if ic is not None else (r.get("dport") or 0))
        if k not in tvlan or (kind != "sflow" and not r.get("packets")):
            continue
        v = r.get("vlan", r.get("switch_vlan_in")) or 0
        vlan["match" if v == tvlan[k] else "differ"] += 1
    matched, differ = 0, []
    for k in sorted(set(want) | set(got), key=str):
        w, g = want.get(k, [0, 0]), got.get(k, [0, 0])
        if w == g:
            matched += 1
        else:
            differ.append({"flow": "%s %s:%s > %s:%s" % k, "truth_packets": w[0], "truth_bytes": w[1],
                           "capture_packets": g[0], "capture_bytes": g[1]})
    out = {"totals": tot, "flows_in_truth": len(want), "flows_matched": matched,
           "flows_differing": len(differ), "differences": differ}
    if vlan:
        out["vlan_vs_truth"] = dict(vlan)
    if tdev:
        out["record_time_minus_truth"] = dict(sorted(tdev.items(), key=lambda kv: -kv[1]))
    return out


def compare_injected(injected, records):
    """Per injected flow and flowDirection: the delta counters summed over its records."""
    got = collections.defaultdict(lambda: [0, 0, 0])
    for r in records:
        k = (r.get("src"), r.get("dst"), r.get("proto"), r.get("sport", 0), r.get("dport", 0), r.get("direction"))
        g = got[k]
        g[0] += r.get("packets", 0)
        g[1] += r.get("bytes", 0)
        g[2] += 1
    flows, matched = [], 0
    for f in injected["flows"]:
        for direction in (0, 1):
            g = got.get((f["src"], f["dst"], f["proto"], f["sport"], f["dport"], direction), [0, 0, 0])
            ok = g[0] == f["packets"] and g[1] == f["octets"]
            matched += ok
            flows.append({"flow": f["name"], "direction": direction, "records": g[2], "packets": g[0],
                          "bytes": g[1], "injected_packets": f["packets"], "injected_octets": f["octets"],
                          "match": ok})
    return {"flows_matched": matched, "flows_differing": len(flows) - matched, "flows": flows}


# ------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--proto", choices=["cflow", "sflow"], required=True)
    ap.add_argument("--exporter", default="")
    ap.add_argument("--truth")
    ap.add_argument("--injected")
    args = ap.parse_args()

    frames, cmd = load_tshark(args)
    doc = collections.OrderedDict(
        capture=args.name + ".pcap", udp_port=args.port,
        protocol="sflow" if args.proto == "sflow" else "netflow/ipfix",
        exporter=args.exporter, decoder=tshark_version(),
        tshark_command=cmd.replace(args.capture, args.name + ".pcap"),
        notes=[])
    totals = collections.OrderedDict()
    if args.proto == "cflow":
        datagrams, records, notes, nt = parse_cflow(frames)
        versions = collections.Counter(d.get("version") for d in datagrams)
        biflow = any("rev_packets" in r for r in records)
        for fam in ("ipv4", "ipv6", "all"):
            sel = [r for r in records if fam == "all" or r["ip_version"] == int(fam[-1])]
            t = {"records": len(sel), "packets": sum(r.get("packets", 0) for r in sel),
                 "bytes": sum(r.get("bytes", 0) for r in sel)}
            if biflow:
                t["rev_packets"] = sum(r.get("rev_packets", 0) for r in sel)
                t["rev_bytes"] = sum(r.get("rev_bytes", 0) for r in sel)
            totals[fam] = t
        totals["datagrams"] = len(datagrams)
        totals["versions"] = {str(k): v for k, v in sorted(versions.items(), key=str)}
        totals["records"] = len(records)
        totals["sets_without_template"] = nt
        totals["options_records"] = sum(len(d.get("options_records", [])) for d in datagrams)
        totals["tshark_sequence_warnings"] = sum(1 for d in datagrams if d.get("tshark_sequence_warning"))
        doc["notes"] = notes
        if biflow:
            doc["notes"].append("biflow (RFC 5103): rev_* are the reverse counters; totals count forward "
                                "and reverse separately")
        doc["totals"] = totals
        if args.truth:
            truth = json.load(open(args.truth))
            v4only = set(versions) <= {1, 5, 7}
            doc["truth"] = compare_truth(truth, totals, records, "cflow", v4only, biflow)
            if v4only:
                doc["truth"]["note"] = "NetFlow v5 carries IPv4 only; IPv6 flows of the truth are not exported"
        if args.injected:
            injected = json.load(open(args.injected))
            doc["injected"] = injected
            doc["truth"] = compare_injected(injected, records)
        doc["datagrams"] = datagrams
        doc["records"] = records
    else:
        datagrams, samples, notes, counters = parse_sflow(frames)
        for fam in ("ipv4", "ipv6", "all"):
            sel = [s for s in samples if fam == "all" or s.get("ip_version") == int(fam[-1])]
            totals[fam] = {"samples": len(sel), "frame_bytes": sum(s.get("frame_length", 0) for s in sel),
                           "ip_bytes": sum(s.get("ip_length", 0) for s in sel),
                           "packets": sum(s.get("sampling_rate", 1) for s in sel)}
        totals["datagrams"] = len(datagrams)
        totals["flow_samples"] = len(samples)
        totals["counter_samples"] = counters
        seqs = [s["sample_sequence"] for s in samples]
        totals["duplicate_sample_sequences"] = len(seqs) - len(set(seqs))
        totals["tshark_malformed_datagrams"] = sum(1 for d in datagrams if d.get("tshark_malformed"))
        doc["notes"] = notes + ["packets = sum of sampling_rate over samples; ip_bytes = IP total length "
                                "from the sampled header; frame_bytes = sFlow frame_length (includes the "
                                "4-byte FCS pmacct adds)"]
        doc["totals"] = totals
        if args.truth:
            truth = json.load(open(args.truth))
            doc["truth"] = compare_truth(truth, totals, samples, "sflow", False, False)
        doc["datagrams"] = datagrams
        doc["samples"] = samples
    dump(doc, sys.stdout)


def dump(doc, out):
    """JSON with one compact line per datagram, record and sample (diff-friendly, small)."""
    out.write("{\n")
    items = list(doc.items())
    for i, (k, v) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out.write(f" {json.dumps(k)}: [\n")
            for j, x in enumerate(v):
                out.write("  " + json.dumps(x, separators=(",", ":")) + ("," if j < len(v) - 1 else "") + "\n")
            out.write(" ]" + sep + "\n")
        else:
            text = json.dumps(v, indent=1).replace("\n", "\n ")
            out.write(f" {json.dumps(k)}: {text}{sep}\n")
    out.write("}\n")


if __name__ == "__main__":
    main()
