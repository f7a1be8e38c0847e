package rules

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// poll is one row of interface_counters.
type poll struct {
	tenant, exporter string
	ifIndex          uint32
	at               time.Time
	in, out          float64 // percent, as the poller stores it
	valid            bool
	source           string // "": the column's default
}

func insertPolls(t *testing.T, e engine, polls []poll) {
	t.Helper()
	caps, err := dbapi.DetectCapabilities(context.Background(), e.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Rows without a source are inserted without the column, as rows
	// written before it existed.
	bySource := map[bool][]string{}
	for _, p := range polls {
		valid := 0
		if p.valid {
			valid = 1
		}
		row := fmt.Sprintf("SELECT toDateTime(%d, 'UTC'), %d, '%s', %s, %d, %g, %g, 10000, %d",
			p.at.Unix(), p.at.UnixMilli(), p.tenant, ipLiteral(caps, p.exporter), p.ifIndex, p.in, p.out, valid)
		if p.source != "" {
			row += ", '" + p.source + "'"
		}
		bySource[p.source != ""] = append(bySource[p.source != ""], row)
	}
	cols := "time, time_ms, tenant, exporter_address, if_index, in_utilisation, out_utilisation, speed_mbps, valid"
	if sel := bySource[false]; len(sel) > 0 {
		e.Exec(t, "INSERT INTO interface_counters ("+cols+") "+strings.Join(sel, " UNION ALL "))
	}
	if sel := bySource[true]; len(sel) > 0 {
		e.Exec(t, "INSERT INTO interface_counters ("+cols+", source) "+strings.Join(sel, " UNION ALL "))
	}
}

func ipLiteral(caps dbapi.Capabilities, a string) string {
	mapped := "::ffff:" + a
	if caps.IPv6 {
		return "toIPv6('" + mapped + "')"
	}
	return "toFixedString(IPv6StringToNum('" + mapped + "'), 16)"
}

// interface_utilisation fires for the interface directions whose every
// valid poll of the last 5 minutes is at or above 90%, with at least 3 of
// them, names the interface from the interfaces table (its latest row),
// and applies a tenant's override of the threshold.
func TestInterfaceUtilisation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		now := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
		var polls []poll
		add := func(tenant string, ifIndex uint32, in, out []float64, valid []bool) {
			for i := range in {
				polls = append(polls, poll{tenant: tenant, exporter: "192.0.2.1", ifIndex: ifIndex,
					at: now.Add(time.Duration(i-len(in)) * time.Minute), in: in[i], out: out[i], valid: valid == nil || valid[i]})
			}
		}
		high := []float64{95, 96, 97, 98, 99}
		low := []float64{10, 10, 10, 10, 10}
		add("a", 1, high, low, nil)                                                                                       // in: fires
		add("a", 2, low, []float64{95, 96, 80, 97, 99}, nil)                                                              // one poll below: quiet
		add("a", 3, []float64{50, 92, 93, 94, 95}, low, nil)                                                              // the oldest poll of the window is below: quiet
		add("a", 4, high, low, []bool{false, false, false, true, true})                                                   // two valid polls: quiet
		add("a", 5, []float64{10, 10, 10, 10, 10, 10, 10, 10, 95, 95, 95, 95, 95}, slices.Repeat([]float64{10}, 13), nil) // low polls before the window: fires
		add("b", 1, []float64{85, 86, 87, 88, 89}, low, nil)                                                              // b's threshold is 0.8
		add("c", 1, []float64{85, 86, 87, 88, 89}, low, nil)                                                              // c has the default
		// A poll at now belongs to the next window.
		polls = append(polls, poll{tenant: "a", exporter: "192.0.2.1", ifIndex: 2, at: now, in: 10, out: 10, valid: true})
		insertPolls(t, e, polls)
		caps, _ := dbapi.DetectCapabilities(context.Background(), e.Reader)
		ip := ipLiteral(caps, "192.0.2.1")
		e.Exec(t, "INSERT INTO interfaces (tenant, exporter_address, if_index, if_name, if_alias, speed_mbps, updated_at) "+
			"SELECT 'a', "+ip+", 1, 'xe-0/0/0', 'old alias', 10000, toDateTime(1000000000) UNION ALL "+
			"SELECT 'a', "+ip+", 1, 'xe-0/0/1', 'transit: example', 10000, toDateTime(1100000000)")

		p := InterfaceUtilisation.Defaults().Params
		env := testEnv(t, e, "interface_utilisation", now, p, map[string]UtilisationParams{"b": {Threshold: 0.8}}, "a", "b", "c")
		fs, err := InterfaceUtilisation.New(Deps{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := fs.Evaluate(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if s, want := subjects(got), []string{"a:192.0.2.1/1/in", "a:192.0.2.1/5/in", "b:192.0.2.1/1/in"}; !slices.Equal(s, want) {
			t.Fatalf("found %v, want %v", s, want)
		}
		f := got[0]
		if f.Labels["if_index"] != "1" {
			f = got[1]
		}
		if want := "xe-0/0/1 (transit: example) of 192.0.2.1 in at 97% of 10 Gbit/s for 5m0s (5 polls, lowest 95%)"; f.Annotations["summary"] != want {
			t.Errorf("summary %q, want %q", f.Annotations["summary"], want)
		}
		if math.Abs(f.Value-0.97) > 1e-9 || f.Annotations["min_utilisation"] != "0.950" || f.Annotations["polls"] != "5" {
			t.Errorf("value %g, annotations %v", f.Value, f.Annotations)
		}
		for _, f := range got {
			if f.Labels["if_index"] == "5" && !strings.HasPrefix(f.Annotations["summary"], "ifIndex 5 of 192.0.2.1 in at 95%") {
				t.Errorf("unnamed interface: summary %q", f.Annotations["summary"])
			}
		}
	})
}

// A tenant's longer duration is its own window: polls of its 10 minutes.
func TestInterfaceUtilisationPerTenantDuration(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		now := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
		var polls []poll
		for _, tenant := range []string{"a", "b"} {
			for i := 1; i <= 10; i++ {
				in := 95.0
				if i == 8 { // 8 minutes ago: inside b's 10 minutes, outside a's 5
					in = 50
				}
				polls = append(polls, poll{tenant: tenant, exporter: "192.0.2.1", ifIndex: 7, at: now.Add(-time.Duration(i) * time.Minute), in: in, out: 1, valid: true})
			}
		}
		insertPolls(t, e, polls)
		p := InterfaceUtilisation.Defaults().Params
		env := testEnv(t, e, "interface_utilisation", now, p, map[string]UtilisationParams{"b": {Duration: 10 * time.Minute}}, "a", "b")
		ev, _ := InterfaceUtilisation.New(Deps{})
		got, err := ev.Evaluate(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if s, want := subjects(got), []string{"a:192.0.2.1/7/in"}; !slices.Equal(s, want) {
			t.Fatalf("found %v, want %v", s, want)
		}
	})
}

// An interface with SNMP polls and sFlow counter samples is judged on one
// source, never a mix: the one with more valid samples in the window,
// sFlow on a tie.
func TestInterfaceUtilisationOneSourcePerInterface(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		now := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
		var polls []poll
		// series adds samples step apart, ending step before now.
		series := func(source string, ifIndex uint32, step time.Duration, in []float64) {
			for i := range in {
				polls = append(polls, poll{tenant: "a", exporter: "192.0.2.1", ifIndex: ifIndex, source: source,
					at: now.Add(time.Duration(i-len(in)) * step), in: in[i], out: 1, valid: true})
			}
		}
		high5, high10 := slices.Repeat([]float64{95}, 5), slices.Repeat([]float64{95}, 10)
		series("snmp", 1, time.Minute, high5) // sFlow has more samples, one below: quiet
		series("sflow", 1, 30*time.Second, []float64{95, 95, 95, 95, 60, 95, 95, 95, 95, 95})
		series("snmp", 2, time.Minute, []float64{95, 95, 80, 95, 95}) // sFlow decides, all above: fires
		series("sflow", 2, 30*time.Second, high10)
		series("snmp", 3, time.Minute, high5) // sFlow has only started (2 samples, low): SNMP fires
		series("sflow", 3, 30*time.Second, []float64{20, 20})
		series("snmp", 4, time.Minute, []float64{95, 95, 95}) // a tie goes to sFlow, which has one below: quiet
		series("sflow", 4, time.Minute, []float64{95, 50, 95})
		series("", 5, time.Minute, high5) // rows from before the source column read as snmp
		insertPolls(t, e, polls)
		ev, _ := InterfaceUtilisation.New(Deps{})
		got, err := ev.Evaluate(context.Background(), testEnv(t, e, "interface_utilisation", now, InterfaceUtilisation.Defaults().Params, nil, "a"))
		if err != nil {
			t.Fatal(err)
		}
		if s, want := subjects(got), []string{"a:192.0.2.1/2/in", "a:192.0.2.1/3/in", "a:192.0.2.1/5/in"}; !slices.Equal(s, want) {
			t.Fatalf("found %v, want %v", s, want)
		}
		for i, want := range []struct{ source, polls, desc string }{
			{"sflow", "10", "Every valid sFlow counter sample"},
			{"snmp", "5", "Every valid SNMP poll"},
			{"snmp", "5", "Every valid SNMP poll"},
		} {
			a := got[i].Annotations
			if a["source"] != want.source || a["polls"] != want.polls || !strings.HasPrefix(a["description"], want.desc) {
				t.Errorf("%s: source %q, polls %q, description %q; want %s, %s, %q...", subjects(got)[i], a["source"], a["polls"], a["description"], want.source, want.polls, want.desc)
			}
		}
	})
}
