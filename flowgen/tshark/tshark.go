// Package tshark summarises a capture of flow exports with tshark, an
// independent decoder, in the shape of flowgen's report, so that tests can
// compare what flowgen says it sent with what Wireshark reads.
package tshark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"

	"github.com/flowhouse/flowhouse/flowgen"
)

// ErrMissing is returned when tshark is not installed.
var ErrMissing = errors.New("tshark not found in PATH: install it with scripts/deps.sh")

// Path returns tshark's path or ErrMissing.
func Path() (string, error) {
	p, err := exec.LookPath("tshark")
	if err != nil {
		return "", ErrMissing
	}
	return p, nil
}

// Summary is what tshark decoded, per protocol name as flowgen reports it
// (netflow_v5, netflow_v9, ipfix, sflow_v5).
type Summary struct {
	Protocols map[string]flowgen.Counts
	// CounterSamples are sFlow counter samples; OptionsRecords v9/IPFIX
	// data records without flow addresses (flowgen's sampling options).
	CounterSamples int
	OptionsRecords int
	// Malformed counts frames tshark marked malformed; Unknown counts
	// frames on the port it did not decode as the protocol asked for.
	Malformed int
	Unknown   int
	// SequenceErrors counts datagrams whose sequence number is not the
	// previous one of the same stream plus what that one carried (v5:
	// flows; v9: 1 datagram; IPFIX: data records, options included;
	// sFlow: 1 datagram). A stream is (source address, version, domain).
	SequenceErrors int
	Streams        int

	next map[string]uint32
}

// sequence checks one datagram of a stream.
func (s *Summary) sequence(stream string, seq, units uint32) {
	if want, ok := s.next[stream]; ok && want != seq {
		s.SequenceErrors++
	}
	if _, ok := s.next[stream]; !ok {
		s.Streams++
	}
	s.next[stream] = seq + units
}

// Mode is the dissector to decode the port with.
type Mode string

const (
	CFlow Mode = "cflow" // NetFlow v5/v9, IPFIX
	SFlow Mode = "sflow"
)

// Summarize runs tshark on the capture, decoding UDP port as mode;
// filter, if not empty, is a display filter that selects frames (e.g.
// "ip.src==127.0.1.4" to pick one exporter of a mixed capture).
func Summarize(ctx context.Context, pcap string, port uint16, mode Mode, filter string) (*Summary, error) {
	bin, err := Path()
	if err != nil {
		return nil, err
	}
	sel := fmt.Sprintf("udp.dstport==%d", port)
	if filter != "" {
		sel += " && (" + filter + ")"
	}
	cmd := exec.CommandContext(ctx, bin, "-n", "-r", pcap, "-Y", sel,
		"-d", fmt.Sprintf("udp.port==%d,%s", port, mode),
		"-T", "json", "--no-duplicate-keys", "-J", "ip udp "+string(mode))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tshark: %v: %s", err, stderr.String())
	}
	var frames []struct {
		Source struct {
			Layers map[string]any `json:"layers"`
		} `json:"_source"`
	}
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &frames); err != nil {
			return nil, fmt.Errorf("tshark: json: %v", err)
		}
	}
	s := &Summary{Protocols: map[string]flowgen.Counts{}, next: map[string]uint32{}}
	for _, f := range frames {
		l := f.Source.Layers
		if _, bad := l["_ws.malformed"]; bad {
			s.Malformed++
		}
		udpLen := num(field(l["udp"], "udp.length"))
		src := field(l["ip"], "ip.src")
		var proto string
		var c flowgen.Counts
		switch mode {
		case CFlow:
			proto = s.cflow(src, l["cflow"], &c)
		case SFlow:
			proto = s.sflow(src, l["sflow"], &c)
		}
		if proto == "" {
			s.Unknown++
			continue
		}
		c.Datagrams = 1
		c.PayloadBytes = udpLen - 8
		all := s.Protocols[proto]
		add(&all, &c)
		s.Protocols[proto] = all
	}
	return s, nil
}

// Total sums the protocols.
func (s *Summary) Total() flowgen.Counts {
	var t flowgen.Counts
	for _, c := range s.Protocols {
		add(&t, &c)
	}
	return t
}

func add(to, c *flowgen.Counts) {
	to.Datagrams += c.Datagrams
	to.PayloadBytes += c.PayloadBytes
	to.Flows += c.Flows
	to.Bytes += c.Bytes
	to.Packets += c.Packets
	to.IPv6Flows += c.IPv6Flows
	to.IPv6Bytes += c.IPv6Bytes
	to.IPv6Packets += c.IPv6Packets
}

func (s *Summary) cflow(src string, layer any, c *flowgen.Counts) string {
	m, ok := layer.(map[string]any)
	if !ok {
		return ""
	}
	var proto, domain string
	switch field(m, "cflow.version") {
	case "5":
		proto, domain = "netflow_v5", field(m, "cflow.engine_type")+"/"+field(m, "cflow.engine_id")
	case "9":
		proto, domain = "netflow_v9", field(m, "cflow.source_id")
	case "10":
		proto, domain = "ipfix", field(m, "cflow.od_id")
	default:
		return ""
	}
	options := 0
	walk(m, func(o map[string]any) {
		_, v4 := o["cflow.srcaddr"]
		_, v6 := o["cflow.srcaddrv6"]
		if !v4 && !v6 {
			if _, opt := o["cflow.selector_id"]; opt {
				options++
			} else if _, opt := o["cflow.sampler_id"]; opt && o["cflow.sampler_random_interval"] != nil {
				options++
			}
			return
		}
		bytes := num(first(o, "cflow.octets", "cflow.octets64"))
		packets := num(first(o, "cflow.packets", "cflow.packets64"))
		c.Flows++
		c.Bytes += bytes
		c.Packets += packets
		if v6 {
			c.IPv6Flows++
			c.IPv6Bytes += bytes
			c.IPv6Packets += packets
		}
	})
	s.OptionsRecords += options
	seq := uint32(num(field(m, "cflow.sequence")))
	switch proto {
	case "netflow_v5":
		s.sequence(src+" v5 "+domain, seq, uint32(num(field(m, "cflow.count"))))
	case "netflow_v9":
		s.sequence(src+" v9 "+domain, seq, 1)
	case "ipfix":
		s.sequence(src+" ipfix "+domain, seq, uint32(c.Flows)+uint32(options))
	}
	return proto
}

// sflow counts flow samples; a sample's bytes are the IP total length of
// the sampled header (IPv6: payload length + 40), or the frame length less
// the stripped bytes without IP, and its packets 1.
func (s *Summary) sflow(src string, layer any, c *flowgen.Counts) string {
	m, ok := layer.(map[string]any)
	if !ok || field(m, "sflow_245.version") != "5" {
		return ""
	}
	s.sequence(src+" sflow "+field(m, "sflow_245.agent")+"/"+field(m, "sflow_245.sub_agent_id"),
		uint32(num(field(m, "sflow_245.sequence_number"))), 1)
	walk(m, func(o map[string]any) {
		if _, ok := o["sflow.counters_sample.sequence_number"]; ok {
			s.CounterSamples++
			return
		}
		if _, ok := o["sflow.flow_sample.sequence_number"]; !ok {
			return
		}
		var bytes uint64
		v6 := false
		walk(o, func(r map[string]any) {
			if _, ok := r["sflow_245.header.frame_length"]; !ok {
				return
			}
			bytes = num(field(r, "sflow_245.header.frame_length")) - num(field(r, "sflow_245.header.payload_stripped"))
			tree, _ := r["sflow_245.header_tree"].(map[string]any)
			if ip, ok := tree["ip"].(map[string]any); ok {
				bytes = num(field(ip, "ip.len"))
			} else if ip, ok := tree["ipv6"].(map[string]any); ok {
				bytes = num(field(ip, "ipv6.plen")) + 40
				v6 = true
			}
		})
		c.Flows++
		c.Bytes += bytes
		c.Packets++
		if v6 {
			c.IPv6Flows++
			c.IPv6Bytes += bytes
			c.IPv6Packets++
		}
	})
	return "sflow_v5"
}

// walk calls fn on every object under o (o included).
func walk(o any, fn func(map[string]any)) {
	switch v := o.(type) {
	case map[string]any:
		fn(v)
		for _, x := range v {
			walk(x, fn)
		}
	case []any:
		for _, x := range v {
			walk(x, fn)
		}
	}
}

// field returns a string field of an object ("" when absent or not a string).
func field(o any, key string) string {
	m, ok := o.(map[string]any)
	if !ok {
		return ""
	}
	s, _ := m[key].(string)
	return s
}

func first(o map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := o[k].(string); ok {
			return s
		}
	}
	return ""
}

func num(s string) uint64 {
	v, _ := strconv.ParseUint(s, 0, 64)
	return v
}
