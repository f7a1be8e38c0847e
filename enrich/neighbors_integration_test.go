package enrich_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/peers"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
	"github.com/prometheus/client_golang/prometheus"
)

var neighborTables = []string{"neighbors", "neighbor_observations", "interfaces", "exporter_attributes", "exporter_polls",
	"arp_observations", "interface_counters", "devices"}

// neighborRow is a neighbors row as the test reads it back (FINAL).
type neighborRow struct {
	ifIndex                               uint32
	ifName, protocol, chassis, chassisSub string
	port, portSub, portDesc, sysName      string
	sysDesc, platform, mgmt, caps, remote string
	vlan                                  uint16
	gone                                  uint8
}

func readNeighbors(t *testing.T, db store.DB, tenant string) []neighborRow {
	t.Helper()
	ctx := withTimeout(t, 10*time.Second)
	var out []neighborRow
	err := dbapi.Each(ctx, db, `SELECT local_if_index, local_if_name, protocol, remote_chassis_id, remote_chassis_id_subtype,
		remote_port_id, remote_port_id_subtype, remote_port_description, remote_system_name,
		remote_system_description, remote_platform, remote_native_vlan, IPv6NumToString(remote_management_address), arrayStringConcat(remote_capabilities, ','),
		IPv6NumToString(remote_exporter_address), gone
		FROM neighbors FINAL WHERE tenant = ? ORDER BY local_if_index, protocol, remote_chassis_id`, []any{tenant}, func(rows dbapi.Rows) error {
		var r neighborRow
		if err := rows.Scan(&r.ifIndex, &r.ifName, &r.protocol, &r.chassis, &r.chassisSub, &r.port, &r.portSub, &r.portDesc,
			&r.sysName, &r.sysDesc, &r.platform, &r.vlan, &r.mgmt, &r.caps, &r.remote, &r.gone); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// observations lists "event:changed_fields" of a tenant's neighbours in order.
func observations(t *testing.T, db store.DB, tenant string) []string {
	t.Helper()
	ctx := withTimeout(t, 10*time.Second)
	var out []string
	err := dbapi.Each(ctx, db, `SELECT event, arrayStringConcat(changed_fields, ',') FROM neighbor_observations
		WHERE tenant = ? ORDER BY time_ms, event`, []any{tenant}, func(rows dbapi.Rows) error {
		var ev, fields string
		if err := rows.Scan(&ev, &fields); err != nil {
			return err
		}
		out = append(out, ev+":"+fields)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pollUntil polls the exporter until its neighbours satisfy cond: the
// agent may serve a change a moment after lldpd heard it.
func pollUntil(t *testing.T, e *enrich.Enricher, exp netip.Addr, what string, cond func([]enrich.LinkNeighbor) bool) {
	t.Helper()
	testkit.Eventually(t, what+" polled", 10*time.Second, func() bool {
		if err := e.PollNow(withTimeout(t, 10*time.Second), exp); err != nil {
			t.Fatal(err)
		}
		return cond(e.LinkNeighbors(exp))
	})
}

// Real lldpd on two switches: sw-a's snmpd (AgentX master for lldpd)
// is polled; the neighbour sw-b is stored on veth-a's ifIndex, survives a
// restart without a new event, is "changed" when renamed or moved to
// another port, and "gone" when its lldpd stops.
func TestLLDPNeighborsFromLldpd(t *testing.T) {
	peers.RequireLLDP(t)
	enginetest.Each(t, neighborTables, func(t *testing.T, eng enginetest.Engine) {
		lab := peers.StartLLDPSwitches(t)
		exp := netip.MustParseAddr("192.0.2.41")
		cfg := testConfig()
		cfg.Polling.Neighbors = time.Hour
		cfg.Exporters = []enrich.ExporterConfig{{Match: exp.String(), Tenant: "lldp", SNMP: agentSNMP(lab.Agent.Addr, "public")}}
		reg := prometheus.NewRegistry()
		e := newEnricher(t, cfg, eng.DB, &recorder{}, reg)
		ctx := withTimeout(t, 60*time.Second)
		if err := e.PollNow(ctx, exp); err != nil {
			t.Fatal(err)
		}
		rows := readNeighbors(t, eng.DB, "lldp")
		if len(rows) != 1 {
			t.Fatalf("neighbors: %+v, want one (sw-b)", rows)
		}
		r := rows[0]
		if r.ifIndex != lab.IfIndexA || r.ifName != "veth-a" || r.protocol != "lldp" || r.chassisSub != "macAddress" ||
			len(r.chassis) != 17 || r.port != "veth-b" || r.portSub != "interfaceName" || r.portDesc != "veth-b" ||
			r.sysName != "sw-b" || r.mgmt != "::ffff:192.0.2.2" || r.remote != "::" || r.gone != 0 {
			t.Errorf("neighbor row %+v; want veth-a (ifIndex %d) hearing sw-b veth-b from 192.0.2.2", r, lab.IfIndexA)
		}
		if got := observations(t, eng.DB, "lldp"); len(got) != 1 || got[0] != "new:" {
			t.Errorf("observations %v, want [new:]", got)
		}
		if st, _ := e.Exporter(exp); st.LinkNeighbors != 1 {
			t.Errorf("status: %d link neighbours, want 1", st.LinkNeighbors)
		}
		if n := metricValue(t, reg, "flowhouse_enrich_neighbor_mibs", map[string]string{"mib": "lldp"}); n != 1 {
			t.Errorf("exporters with LLDP-MIB only: %v, want 1", n)
		}

		// A restart reloads the neighbour: its first poll tells nothing new.
		e.Stop()
		e = newEnricher(t, cfg, eng.DB, &recorder{}, nil)
		if err := e.PollNow(ctx, exp); err != nil {
			t.Fatal(err)
		}
		if got := observations(t, eng.DB, "lldp"); len(got) != 1 {
			t.Errorf("after a restart: observations %v, want only the first new", got)
		}

		lab.SetHostnameB(t, "sw-b-renamed")
		pollUntil(t, e, exp, "the renamed neighbour", func(ns []enrich.LinkNeighbor) bool {
			return len(ns) == 1 && ns[0].SystemName == "sw-b-renamed"
		})
		if rows := readNeighbors(t, eng.DB, "lldp"); len(rows) != 1 || rows[0].sysName != "sw-b-renamed" || rows[0].port != "veth-b" {
			t.Errorf("after the rename: %+v", rows)
		}
		if got := observations(t, eng.DB, "lldp"); len(got) != 2 || got[1] != "changed:remote_system_name" {
			t.Errorf("after the rename: observations %v, want [new: changed:remote_system_name]", got)
		}

		lab.SetPortB(t, "port-7", "uplink to sw-a")
		pollUntil(t, e, exp, "the new port", func(ns []enrich.LinkNeighbor) bool {
			return len(ns) == 1 && ns[0].PortID == "port-7"
		})
		if rows := readNeighbors(t, eng.DB, "lldp"); len(rows) != 1 || rows[0].portSub != "local" || rows[0].portDesc != "uplink to sw-a" {
			t.Errorf("after the port change: %+v", rows)
		}
		if got := observations(t, eng.DB, "lldp"); len(got) != 3 || got[2] != "changed:remote_port_id,remote_port_id_subtype,remote_port_description" {
			t.Errorf("after the port change: observations %v", got)
		}

		lab.StopB(t)
		pollUntil(t, e, exp, "the neighbour gone", func(ns []enrich.LinkNeighbor) bool { return len(ns) == 0 })
		if rows := readNeighbors(t, eng.DB, "lldp"); len(rows) != 1 || rows[0].gone != 1 || rows[0].sysName != "sw-b-renamed" {
			t.Errorf("after sw-b stopped: %+v, want it gone", rows)
		}
		if got := observations(t, eng.DB, "lldp"); len(got) != 4 || got[3] != "gone:" {
			t.Errorf("after sw-b stopped: observations %v", got)
		}
	})
}

// A Cisco access switch simulated by snmpsim from a recording: CDP and
// LLDP neighbours, LLDP port numbers that are bridge ports (not
// ifIndexes), one port that maps to nothing, and neighbours linked to
// known exporters by address and by name.
func TestCDPAndLLDPFromRecording(t *testing.T) {
	peers.Require(t, "snmpsimd")
	enginetest.Each(t, neighborTables, func(t *testing.T, eng enginetest.Engine) {
		sim := peers.StartSnmpsim(t, "testdata/cisco-c2960x.snmprec", "c2960x")
		exp := netip.MustParseAddr("192.0.2.50")
		cfg := testConfig()
		cfg.Polling.Neighbors = time.Hour
		cfg.Exporters = []enrich.ExporterConfig{
			{Match: exp.String(), Tenant: "cisco", SNMP: agentSNMP(sim.Addr, sim.Community)},
			{Match: "10.0.0.2", Tenant: "cisco"},                  // sw2, by its management address
			{Match: "192.0.2.60", Tenant: "cisco", Name: "CORE1"}, // core1, by name without the domain
			{Match: "10.0.0.1", Tenant: "other"},                  // core1's address, another tenant's
		}
		reg := prometheus.NewRegistry()
		e := newEnricher(t, cfg, eng.DB, &recorder{}, reg)
		if err := e.PollNow(withTimeout(t, 30*time.Second), exp); err != nil {
			t.Fatal(err)
		}
		const c3750 = "Cisco IOS Software, C3750E Software (C3750E-UNIVERSALK9-M), Version 15.2(4)E10"
		want := []neighborRow{
			{0, "", "lldp", "ap-17", "local", "eth0", "local", "eth0", "ap-17", "", "", "::", "wlanAccessPoint", "::", 0, 0},
			{10101, "Gi1/0/1", "cdp", "core1.example.net", "cdp_device_id", "GigabitEthernet0/1", "cdp_device_port", "", "core1.example.net",
				c3750 + ", RELEASE SOFTWARE (fc2)\nTechnical Support: http://www.cisco.com/techsupport", "cisco WS-C3750X-48P",
				"::ffff:10.0.0.1", "router,switch,igmp", "::ffff:192.0.2.60", 1, 0},
			{10101, "Gi1/0/1", "lldp", "00:1b:54:aa:bb:01", "macAddress", "Gi0/1", "interfaceName", "GigabitEthernet0/1", "core1.example.net",
				c3750, "", "::ffff:10.0.0.1", "bridge,router", "::ffff:192.0.2.60", 0, 0},
			{10102, "Gi1/0/2", "cdp", "SEP001122334455", "cdp_device_id", "Port 1", "cdp_device_port", "", "SEP001122334455",
				"SIP78xx.14-1-1SR1", "Cisco IP Phone 7821", "::ffff:10.0.20.15", "stationOnly,telephone,twoPortMACRelay", "::", 20, 0},
			{10103, "Gi1/0/3", "lldp", "192.0.2.99", "networkAddress", "3c:5a:b4:00:00:01", "macAddress", "", "",
				"SIP78xx.14-1-1", "", "::ffff:192.0.2.99", "telephone", "::", 0, 0},
			{10148, "Gi1/0/48", "cdp", "sw2.example.net", "cdp_device_id", "GigabitEthernet1/0/52", "cdp_device_port", "", "sw2.example.net",
				"Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(7)E8, RELEASE SOFTWARE (fc3)", "cisco WS-C2960X-48FPD-L",
				"::ffff:10.0.0.2", "switch,igmp", "::ffff:10.0.0.2", 10, 0},
		}
		got := readNeighbors(t, eng.DB, "cisco")
		if len(got) != len(want) {
			t.Fatalf("%d neighbours, want %d:\n%+v", len(got), len(want), got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("row %d\n got %+v\nwant %+v", i, got[i], want[i])
			}
		}
		for _, m := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"flowhouse_enrich_neighbor_unmapped_ports_total", map[string]string{"reason": "unknown_port"}, 1},
			{"flowhouse_enrich_neighbor_unmapped_ports_total", map[string]string{"reason": "no_match"}, 0},
			{"flowhouse_enrich_neighbor_mibs", map[string]string{"mib": "lldp+cdp"}, 1},
			{"flowhouse_enrich_neighbor_malformed_total", map[string]string{}, 0},
			{"flowhouse_enrich_snmp_polls_total", map[string]string{"kind": "neighbors"}, 1},
		} {
			if v := metricValue(t, reg, m.name, m.labels); v != m.want {
				t.Errorf("%s%v = %v, want %v", m.name, m.labels, v, m.want)
			}
		}
		if got := observations(t, eng.DB, "cisco"); len(got) != len(want) {
			t.Errorf("observations %v, want %d new", got, len(want))
		}

		// The agent gone: the poll fails, and no neighbour is gone.
		sim.Stop()
		if err := e.PollNow(withTimeout(t, 30*time.Second), exp); err == nil {
			t.Fatal("polling a stopped agent succeeded")
		}
		if n := len(e.LinkNeighbors(exp)); n != len(want) {
			t.Errorf("after a failed poll: %d neighbours, want %d", n, len(want))
		}
		if got := observations(t, eng.DB, "cisco"); len(got) != len(want) {
			t.Errorf("after a failed poll: observations %v, want only the %d new", got, len(want))
		}
		if rows := readNeighbors(t, eng.DB, "cisco"); len(rows) != len(want) || rows[0].gone != 0 {
			t.Errorf("after a failed poll: %+v", rows)
		}
	})
}
