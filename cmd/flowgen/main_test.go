package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
	"github.com/flowhouse/flowhouse/flowgen/tshark"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"-h"}, &out, &errb)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	help := errb.String()
	for _, name := range []string{"target", "exporters", "protocols", "protocol", "source", "source-port", "count", "duration",
		"rate", "seed", "hosts", "ipv6", "sampling", "max-datagram", "template-packets", "template-interval",
		"counter-interval", "flush", "scenario", "scenario-start", "scenario-duration", "scenario-share",
		"spike-ifindex", "start", "send", "pcap", "report", "quiet"} {
		if !strings.Contains(help, "  -"+name+" ") && !strings.Contains(help, "  -"+name+"\n") {
			t.Errorf("-h does not document -%s", name)
		}
	}
	for _, s := range []string{"amplification", "synflood", "portscan", "hostscan", "spike", "Usage:"} {
		if !strings.Contains(help, s) {
			t.Errorf("-h does not mention %s", s)
		}
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{}, // no bound
		{"-count", "10", "-target", "10.0.0.1:2055"}, // not loopback
		{"-count", "10", "-protocol", "v7"},
		{"-count", "10", "-protocol", "v5,v9"},
		{"-count", "10", "-scenario", "meteor"},
		{"-count", "10", "-scenario", "synflood@soon"},
		{"-count", "10", "-send=false"},
		{"-count", "10", "extra"},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestCLIMixedTshark runs the CLI with all four protocols on a virtual
// clock into a pcap and a JSON report, and has tshark check the report:
// NetFlow/IPFIX exporters decoded as cflow, sFlow exporters as sflow.
func TestCLIMixedTshark(t *testing.T) {
	if _, err := tshark.Path(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pcap, report := filepath.Join(dir, "mixed.pcap"), filepath.Join(dir, "report.json")
	args := []string{"-exporters", "8", "-protocols", "v5,v9,ipfix,sflow", "-count", "4000", "-rate", "2000",
		"-start", "2024-01-01T00:00:00Z", "-send=false", "-pcap", pcap, "-report", report, "-target", "127.0.0.1:30555",
		"-scenario", "synflood@500ms+1s,spike@1s", "-sampling", "10", "-template-packets", "5"}
	var out, errb bytes.Buffer
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep flowgen.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Total.Flows != 4000 || len(rep.Exporters) != 8 || len(rep.Scenarios) != 2 {
		t.Fatalf("report: total %+v, %d exporters, %d scenarios", rep.Total, len(rep.Exporters), len(rep.Scenarios))
	}
	var sflowSrcs []string
	for _, e := range rep.Exporters {
		if e.Protocol == "sflow_v5" {
			sflowSrcs = append(sflowSrcs, strings.Split(e.Address, ":")[0])
		}
	}
	sflowFilter := "ip.src in {" + strings.Join(sflowSrcs, ", ") + "}"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cf, err := tshark.Summarize(ctx, pcap, 30555, tshark.CFlow, "!("+sflowFilter+")")
	if err != nil {
		t.Fatal(err)
	}
	sf, err := tshark.Summarize(ctx, pcap, 30555, tshark.SFlow, sflowFilter)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"netflow_v5", "netflow_v9", "ipfix"} {
		if cf.Protocols[name] != rep.Protocols[name] {
			t.Errorf("%s: tshark %+v\nreport %+v", name, cf.Protocols[name], rep.Protocols[name])
		}
	}
	if sf.Protocols["sflow_v5"] != rep.Protocols["sflow_v5"] {
		t.Errorf("sflow_v5: tshark %+v\nreport %+v", sf.Protocols["sflow_v5"], rep.Protocols["sflow_v5"])
	}
	if cf.Unknown+sf.Unknown+cf.Malformed+sf.Malformed+cf.SequenceErrors+sf.SequenceErrors != 0 {
		t.Errorf("tshark: unknown %d/%d, malformed %d/%d, sequence errors %d/%d",
			cf.Unknown, sf.Unknown, cf.Malformed, sf.Malformed, cf.SequenceErrors, sf.SequenceErrors)
	}
	total := cf.Total()
	s := sf.Total()
	total.Datagrams += s.Datagrams
	total.Flows += s.Flows
	if total.Datagrams != rep.Total.Datagrams || total.Flows != rep.Total.Flows {
		t.Errorf("tshark total %d datagrams %d flows, report %d %d", total.Datagrams, total.Flows, rep.Total.Datagrams, rep.Total.Flows)
	}
}

func TestReportOutputs(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"-count", "200", "-rate", "0", "-start", "2024-01-01T00:00:00Z", "-send=false", "-report", "-"}
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatal(err)
	}
	var rep flowgen.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Total.Flows != 200 {
		t.Fatalf("report on stdout: %v, %+v", err, rep.Total)
	}
	// The text summary, after sending to a port nobody listens on.
	out.Reset()
	args = []string{"-count", "200", "-rate", "0", "-target", "127.0.0.1:9", "-scenario", "portscan"}
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"netflow_v5", "sflow_v5", "127.0.1.4:", "portscan", "total"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("text report lacks %q:\n%s", s, out.String())
		}
	}
}

// TestReplayCommand replays a capture to a socket of the test's and
// reports what it sent as JSON.
func TestReplayCommand(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"replay", "-pcap", "../../collector/testdata/captures/pmacct_ipfix.pcap",
		"-target", pc.LocalAddr().String(), "-exporters", "2", "-density", "10", "-count", "100", "-rate", "0", "-report", "-"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep struct {
		Flows   uint64 `json:"flows_sent"`
		Density int    `json:"records_per_datagram"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Flows != 100 || rep.Density != 10 {
		t.Fatalf("report %+v, want 100 flows at 10 a datagram", rep)
	}
	for _, args := range [][]string{{"replay", "-count", "1"}, {"replay", "-pcap", "../../collector/testdata/captures/sflow5.pcap", "-count", "1"}} {
		if err := run(context.Background(), args, &out, &errb); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
