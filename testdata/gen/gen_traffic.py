#!/usr/bin/python3
"""Write flowhouse's deterministic test traffic: testdata/traffic.pcap + traffic.truth.json.

The pcap (Ethernet link type, microsecond timestamps from 2024-01-01T00:00:00Z)
is input for real flow exporters (softflowd -r, pmacctd pcap_savefile). It is
only written with wrpcap; nothing is sent. Every frame carries explicit MAC
addresses (scapy would otherwise ARP for a gateway while building the frame).
All IP addresses are documentation ranges (RFC 5737, RFC 3849), all MACs the
documentation range 00:00:5e:00:53:xx (RFC 7042).

The truth file lists every unidirectional flow, keyed by
(proto, src, sport, dst, dport, vlan), with packets, bytes (IP total length:
IPv4 total length, IPv6 40 + payload length, as NetFlow/IPFIX count octets),
first/last packet time (Unix ms), ToS byte and OR of TCP flags, plus totals per
IP family. ICMP/ICMPv6 flows use sport 0 and dport = type*256 + code (the
NetFlow v5 convention).

Usage: /usr/bin/python3 testdata/gen/gen_traffic.py [OUTDIR]   (default: testdata/)
Run it with the system python (Debian's python3-scapy), ideally inside an empty
network namespace; see testdata/gen/README.md.
"""
import json
import os
import random
import sys
from decimal import Decimal

from scapy.all import (DNS, DNSQR, DNSRR, ICMP, IP, TCP, UDP, Dot1Q, Ether,
                       ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest,
                       IPv6, Raw, wrpcap)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(HERE)

T0_US = 1704067200 * 1_000_000  # 2024-01-01T00:00:00Z in microseconds
rng = random.Random(0xF10E_2024)

# Documentation MACs (RFC 7042): one "router" side and a few host sides.
MAC_GW = "00:00:5e:00:53:01"
MAC_A = "00:00:5e:00:53:0a"
MAC_B = "00:00:5e:00:53:0b"

# DSCP code points used (ToS byte = DSCP << 2).
CS0, CS1, AF11, AF21, AF41, EF, CS6 = 0, 8, 10, 18, 34, 46, 48


def tos(dscp):
    return dscp << 2


frames = []  # (time_us, seq, frame)
flows = {}  # key -> dict


def ip_layer(pkt):
    return pkt[IP] if IP in pkt else pkt[IPv6]


def add(t_us, pkt):
    """Record one frame at t_us microseconds after T0 and account it to its flow."""
    e = pkt[Ether]
    assert e.fields.get("src") and e.fields.get("dst"), "explicit MACs only: " + pkt.summary()
    t_us = int(t_us)
    raw = bytes(pkt)  # build once; the truth is computed from what is written
    pkt = Ether(raw)
    frames.append((t_us, len(frames), raw))
    vlan = pkt[Dot1Q].vlan if Dot1Q in pkt else 0
    ipl = ip_layer(pkt)
    if IP in pkt:
        proto, iplen, tosb, fam = ipl.proto, ipl.len, ipl.tos, "ipv4"
    else:
        proto, iplen, tosb, fam = ipl.nh, 40 + ipl.plen, ipl.tc, "ipv6"
    # Decide by protocol number: scapy also dissects the packet quoted inside
    # an ICMP error, so "UDP in pkt" would be true for a port unreachable.
    l4 = bytes(ipl.payload)
    sport = dport = flags = 0
    if proto in (6, 17):
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        if proto == 6:
            flags = l4[13]
    elif proto in (1, 58):
        dport = l4[0] * 256 + l4[1]
    key = (proto, ipl.src, sport, ipl.dst, dport, vlan)
    f = flows.get(key)
    if f is None:
        f = flows[key] = {
            "family": fam, "proto": proto, "src": ipl.src, "sport": sport,
            "dst": ipl.dst, "dport": dport, "vlan": vlan, "tos": tosb,
            "tcp_flags": 0, "packets": 0, "bytes": 0, "first_ms": None, "last_ms": None,
        }
    assert f["tos"] == tosb, ("ToS changes within a flow", key)
    ms = (T0_US + t_us) // 1000
    f["packets"] += 1
    f["bytes"] += iplen
    f["tcp_flags"] |= flags
    f["first_ms"] = ms if f["first_ms"] is None else min(f["first_ms"], ms)
    f["last_ms"] = ms if f["last_ms"] is None else max(f["last_ms"], ms)


def l2(src_mac, dst_mac, vlan):
    e = Ether(src=src_mac, dst=dst_mac)
    return e / Dot1Q(vlan=vlan) if vlan else e


def l3(src, dst, dscp):
    if ":" in src:
        return IPv6(src=src, dst=dst, tc=tos(dscp), hlim=64)
    return IP(src=src, dst=dst, tos=tos(dscp), ttl=64, id=rng.randrange(1, 65536))


def ms(x):
    return int(round(x * 1000)) * 1000  # milliseconds -> microseconds


def tcp_conversation(t_us, cli, srv, sport, dport, req_sizes, resp_sizes, dscp=CS0, vlan=0,
                     rtt_us=2000, cli_mac=MAC_A):
    """Handshake, requests, responses (client ACKs every 2nd segment), FIN/FIN/ACK."""
    cseq, sseq = rng.randrange(1 << 31), rng.randrange(1 << 31)

    def c2s(flags, payload=b""):
        nonlocal t_us, cseq
        p = l2(cli_mac, MAC_GW, vlan) / l3(cli, srv, dscp) / TCP(
            sport=sport, dport=dport, flags=flags, seq=cseq, ack=sseq if "A" in flags else 0, window=64240)
        add(t_us, p / Raw(payload) if payload else p)
        cseq += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        t_us += rtt_us // 2 + rng.randrange(0, 400)

    def s2c(flags, payload=b""):
        nonlocal t_us, sseq
        p = l2(MAC_GW, cli_mac, vlan) / l3(srv, cli, dscp) / TCP(
            sport=dport, dport=sport, flags=flags, seq=sseq, ack=cseq, window=65160)
        add(t_us, p / Raw(payload) if payload else p)
        sseq += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        t_us += rtt_us // 2 + rng.randrange(0, 400)

    c2s("S")
    s2c("SA")
    c2s("A")
    for n in req_sizes:
        c2s("PA", bytes(rng.randrange(256) for _ in range(n)))
    for i, n in enumerate(resp_sizes):
        s2c("PA" if i == len(resp_sizes) - 1 else "A", bytes(rng.randrange(256) for _ in range(n)))
        if i % 2 == 1:
            c2s("A")
    c2s("FA")
    s2c("FA")
    c2s("A")
    return t_us


# 1. IPv4 web sessions: 40 clients -> 203.0.113.10:80/443, DSCP varies by client.
for i in range(40):
    dscp = [CS0, CS0, AF11, AF21, CS1][i % 5]
    tcp_conversation(ms(3 + i * 6.7), f"198.51.100.{20 + i}", "203.0.113.10", 41000 + i * 7,
                     443 if i % 3 else 80, [rng.randrange(80, 500)],
                     [rng.choice([1200, 1400, 600, 300]) for _ in range(2 + i % 6)], dscp=dscp)

# 2. IPv6 web sessions: 15 clients -> 2001:db8:20::443.
for i in range(15):
    tcp_conversation(ms(8 + i * 17.3), f"2001:db8:10::{0x100 + i:x}", "2001:db8:20::443",
                     52000 + i, 443, [rng.randrange(100, 400), rng.randrange(40, 120)],
                     [1200] * (3 + i % 4), dscp=AF41 if i % 4 == 0 else CS0, cli_mac=MAC_B)

# 3. 802.1Q-tagged sessions: SSH over IPv4 on VLANs 10/20/30, IPv6 on VLAN 40.
for i in range(6):
    tcp_conversation(ms(25 + i * 41), f"192.0.2.{30 + i}", "203.0.113.22", 33000 + i, 22,
                     [rng.randrange(40, 120) for _ in range(4)], [rng.randrange(40, 200) for _ in range(4)],
                     dscp=CS6 if i == 0 else AF21, vlan=(10, 20, 30)[i % 3])
for i in range(2):
    tcp_conversation(ms(60 + i * 90), f"2001:db8:40::{i + 1:x}", "2001:db8:20::22", 34000 + i, 22,
                     [64, 64], [128, 96], vlan=40, cli_mac=MAC_B)

# 4. DNS over UDP: 40 IPv4 and 10 IPv6 query/response pairs from a resolver.
for i in range(50):
    v6 = i % 5 == 4
    cli, srv = ("2001:db8:53::10", "2001:db8:53::1") if v6 else ("198.51.100.53", "192.0.2.53")
    t = ms(1 + i * 5.9)
    name = f"svc{i}.example.org"
    sport = 20000 + rng.randrange(40000)
    add(t, l2(MAC_A, MAC_GW, 0) / l3(cli, srv, CS0) / UDP(sport=sport, dport=53)
        / DNS(id=0x1000 + i, rd=1, qd=DNSQR(qname=name, qtype="AAAA" if v6 else "A")))
    ans = DNSRR(rrname=name, type="AAAA", rdata=f"2001:db8:99::{i:x}") if v6 else \
        DNSRR(rrname=name, type="A", rdata=f"203.0.113.{100 + i}")
    add(t + 800 + rng.randrange(2000), l2(MAC_GW, MAC_A, 0) / l3(srv, cli, CS0) / UDP(sport=53, dport=sport)
        / DNS(id=0x1000 + i, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype="AAAA" if v6 else "A"), an=ans))

# 5. NTP-like: 20 clients, mode 3 request / mode 4 response, 48-byte payloads.
for i in range(20):
    t = ms(10 + i * 14.1)
    cli = f"198.51.100.{160 + i}"
    req = bytes([0x23]) + bytes(47)  # LI 0, VN 4, mode 3
    resp = bytes([0x24, 2, 6, 0xe9]) + bytes(rng.randrange(256) for _ in range(44))
    add(t, l2(MAC_A, MAC_GW, 0) / l3(cli, "192.0.2.123", CS0) / UDP(sport=123, dport=123) / Raw(req))
    add(t + 1500, l2(MAC_GW, MAC_A, 0) / l3("192.0.2.123", cli, CS0) / UDP(sport=123, dport=123) / Raw(resp))

# 6. Long UDP flows: RTP-like EF stream, one packet a second for 280 s;
#    and a slow IPv6 syslog stream, one packet every 15 s for 300 s.
for j in range(280):
    add(ms(15 + j) + rng.randrange(0, 3000), l2(MAC_GW, MAC_A, 0) / l3("203.0.113.50", "198.51.100.150", EF)
        / UDP(sport=16384, dport=16386) / Raw(bytes(172)))
for j in range(21):
    add(ms(5 + j * 15), l2(MAC_B, MAC_GW, 0) / l3("2001:db8:30::5", "2001:db8:20::514", CS1)
        / UDP(sport=514, dport=514) / Raw(f"<134>1 2024-01-01 host app - - - event {j}".encode()))

# 7. ICMP: echo request/reply v4 and v6, a v4 port unreachable, a v6 port unreachable.
for h in range(5):
    for s in range(4):
        t = ms(50 + h * 30 + s)
        dst = f"203.0.113.{200 + h}"
        add(t, l2(MAC_A, MAC_GW, 0) / l3("198.51.100.7", dst, CS0) / ICMP(type=8, id=0x100 + h, seq=s) / Raw(bytes(56)))
        add(t + 700, l2(MAC_GW, MAC_A, 0) / l3(dst, "198.51.100.7", CS0) / ICMP(type=0, id=0x100 + h, seq=s) / Raw(bytes(56)))
for h in range(3):
    for s in range(3):
        t = ms(120 + h * 40 + s)
        dst = f"2001:db8:20::{0x10 + h:x}"
        add(t, l2(MAC_B, MAC_GW, 0) / l3("2001:db8:10::7", dst, CS0) / ICMPv6EchoRequest(id=0x200 + h, seq=s, data=bytes(56)))
        add(t + 900, l2(MAC_GW, MAC_B, 0) / l3(dst, "2001:db8:10::7", CS0) / ICMPv6EchoReply(id=0x200 + h, seq=s, data=bytes(56)))
quoted4 = IP(src="198.51.100.8", dst="203.0.113.9", ttl=64, id=7) / UDP(sport=33434, dport=33434) / Raw(bytes(12))
add(ms(200), l2(MAC_GW, MAC_A, 0) / l3("203.0.113.9", "198.51.100.8", CS6) / ICMP(type=3, code=3) / Raw(bytes(quoted4)))
quoted6 = IPv6(src="2001:db8:10::8", dst="2001:db8:20::9", hlim=64) / UDP(sport=33435, dport=33435) / Raw(bytes(12))
add(ms(210), l2(MAC_GW, MAC_B, 0) / l3("2001:db8:20::9", "2001:db8:10::8", CS6) / ICMPv6DestUnreach(code=4) / Raw(bytes(quoted6)))

# 8. SYN scan: 203.0.113.66 probes 64 ports of 198.51.100.99, 20 ms apart; closed
#    ports answer RST/ACK, open ports (22, 80, 443) SYN/ACK, then the scanner sends RST.
OPEN = {22, 80, 443}
ports = sorted(rng.sample(sorted(set(range(1, 1024)) - OPEN), 61) + sorted(OPEN))
assert len(set(ports)) == 64, "scan ports must be distinct"
for n, p in enumerate(ports):
    t = ms(330 + n * 0.02)
    sp = 61000 + n % 4
    add(t, l2(MAC_GW, MAC_A, 0) / l3("203.0.113.66", "198.51.100.99", CS0) / TCP(sport=sp, dport=p, flags="S", seq=1000 + n, window=1024))
    if p in OPEN:
        add(t + 300, l2(MAC_A, MAC_GW, 0) / l3("198.51.100.99", "203.0.113.66", CS0) / TCP(sport=p, dport=sp, flags="SA", seq=9000 + n, ack=1001 + n))
        add(t + 600, l2(MAC_GW, MAC_A, 0) / l3("203.0.113.66", "198.51.100.99", CS0) / TCP(sport=sp, dport=p, flags="R", seq=1001 + n))
    else:
        add(t + 300, l2(MAC_A, MAC_GW, 0) / l3("198.51.100.99", "203.0.113.66", CS0) / TCP(sport=p, dport=sp, flags="RA", seq=0, ack=1001 + n))

# --- write -------------------------------------------------------------------
frames.sort(key=lambda x: (x[0], x[1]))
pkts = []
for t_us, _, raw in frames:
    p = Ether(raw)
    p.time = Decimal(T0_US + t_us) / Decimal(1_000_000)
    pkts.append(p)

os.makedirs(OUT, exist_ok=True)
pcap_path = os.path.join(OUT, "traffic.pcap")
wrpcap(pcap_path, pkts, linktype=1)

flist = sorted(flows.values(), key=lambda f: (f["first_ms"], f["proto"], f["src"], f["sport"], f["dst"], f["dport"], f["vlan"]))
totals = {}
for fam in ("ipv4", "ipv6"):
    sel = [f for f in flist if f["family"] == fam]
    totals[fam] = {"flows": len(sel), "packets": sum(f["packets"] for f in sel), "bytes": sum(f["bytes"] for f in sel)}
totals["all"] = {k: totals["ipv4"][k] + totals["ipv6"][k] for k in ("flows", "packets", "bytes")}
totals["vlan_tagged"] = {
    "flows": sum(1 for f in flist if f["vlan"]),
    "packets": sum(f["packets"] for f in flist if f["vlan"]),
    "bytes": sum(f["bytes"] for f in flist if f["vlan"]),
}
truth = {
    "generator": "testdata/gen/gen_traffic.py",
    "pcap": "traffic.pcap",
    "link_type": "ethernet",
    "frames": len(pkts),
    "first_ms": (T0_US + frames[0][0]) // 1000,
    "last_ms": (T0_US + frames[-1][0]) // 1000,
    "bytes_are": "IP total length (IPv4 total length; IPv6 40 + payload length)",
    "icmp_ports_are": "sport 0, dport type*256+code",
    "totals": totals,
    "flows": flist,
}
with open(os.path.join(OUT, "traffic.truth.json"), "w") as fh:
    json.dump(truth, fh, indent=1, sort_keys=True)
    fh.write("\n")
span = (frames[-1][0] - frames[0][0]) / 1e6
print(f"wrote {pcap_path}: {len(pkts)} frames, {len(flist)} unidirectional flows, "
      f"span {span:.1f}s, {os.path.getsize(pcap_path)} bytes; totals {totals}")
