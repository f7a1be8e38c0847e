package enrich_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/enrich"
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
	ifIndex                                uint32
	ifName, protocol, chassis, chassisSub  string
	port, portSub, portDesc, sysName, mgmt string
	caps, remote                           string
	gone                                   uint8
}

func readNeighbors(t *testing.T, db store.DB, tenant string) []neighborRow {
	t.Helper()
	ctx := withTimeout(t, 10*time.Second)
	var out []neighborRow
	err := storeEach(ctx, db, `SELECT local_if_index, local_if_name, protocol, remote_chassis_id, remote_chassis_id_subtype,
		remote_port_id, remote_port_id_subtype, remote_port_description, remote_system_name,
		IPv6NumToString(remote_management_address), arrayStringConcat(remote_capabilities, ','),
		IPv6NumToString(remote_exporter_address), gone
		FROM neighbors FINAL WHERE tenant = ? ORDER BY local_if_index, protocol, remote_chassis_id`, []any{tenant}, func(scan func(...any) error) error {
		var r neighborRow
		if err := scan(&r.ifIndex, &r.ifName, &r.protocol, &r.chassis, &r.chassisSub, &r.port, &r.portSub, &r.portDesc,
			&r.sysName, &r.mgmt, &r.caps, &r.remote, &r.gone); err != nil {
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
	err := storeEach(ctx, db, `SELECT event, arrayStringConcat(changed_fields, ',') FROM neighbor_observations
		WHERE tenant = ? ORDER BY time_ms, event`, []any{tenant}, func(scan func(...any) error) error {
		var ev, fields string
		if err := scan(&ev, &fields); err != nil {
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

func storeEach(ctx context.Context, db store.DB, q string, args []any, fn func(scan func(...any) error) error) error {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
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
		testkit.Eventually(t, "the renamed neighbour polled", 10*time.Second, func() bool {
			if err := e.PollNow(ctx, exp); err != nil {
				t.Fatal(err)
			}
			ns := e.LinkNeighbors(exp)
			return len(ns) == 1 && ns[0].SystemName == "sw-b-renamed"
		})
		if rows := readNeighbors(t, eng.DB, "lldp"); len(rows) != 1 || rows[0].sysName != "sw-b-renamed" || rows[0].port != "veth-b" {
			t.Errorf("after the rename: %+v", rows)
		}
		if got := observations(t, eng.DB, "lldp"); len(got) != 2 || got[1] != "changed:remote_system_name" {
			t.Errorf("after the rename: observations %v, want [new: changed:remote_system_name]", got)
		}

		lab.SetPortB(t, "port-7", "uplink to sw-a")
		testkit.Eventually(t, "the new port polled", 10*time.Second, func() bool {
			if err := e.PollNow(ctx, exp); err != nil {
				t.Fatal(err)
			}
			ns := e.LinkNeighbors(exp)
			return len(ns) == 1 && ns[0].PortID == "port-7"
		})
		if rows := readNeighbors(t, eng.DB, "lldp"); len(rows) != 1 || rows[0].portSub != "local" || rows[0].portDesc != "uplink to sw-a" {
			t.Errorf("after the port change: %+v", rows)
		}
		if got := observations(t, eng.DB, "lldp"); len(got) != 3 || got[2] != "changed:remote_port_id,remote_port_id_subtype,remote_port_description" {
			t.Errorf("after the port change: observations %v", got)
		}

		lab.StopB(t)
		testkit.Eventually(t, "the neighbour gone", 10*time.Second, func() bool {
			if err := e.PollNow(ctx, exp); err != nil {
				t.Fatal(err)
			}
			return len(e.LinkNeighbors(exp)) == 0
		})
		if rows := readNeighbors(t, eng.DB, "lldp"); len(rows) != 1 || rows[0].gone != 1 || rows[0].sysName != "sw-b-renamed" {
			t.Errorf("after sw-b stopped: %+v, want it gone", rows)
		}
		if got := observations(t, eng.DB, "lldp"); len(got) != 4 || got[3] != "gone:" {
			t.Errorf("after sw-b stopped: observations %v", got)
		}
	})
}
