package migrations_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func openDB(t *testing.T) store.DB {
	t.Helper()
	addr, database := chtest.Database(t)
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestApplyIsIdempotent(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	opts := migrations.Options{Retention: store.DefaultConfig().Retention}

	pending, err := migrations.Pending(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != len(migrations.All()) {
		t.Fatalf("fresh database: %d pending, want all %d", len(pending), len(migrations.All()))
	}

	applied, err := migrations.Apply(ctx, db, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(migrations.All()) {
		t.Fatalf("first Apply applied %d, want %d", len(applied), len(migrations.All()))
	}
	again, err := migrations.Apply(ctx, db, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Fatalf("second Apply applied %v, want nothing", again)
	}
	if pending, err = migrations.Pending(ctx, db); err != nil || len(pending) != 0 {
		t.Fatalf("after Apply: pending %v, err %v", pending, err)
	}

	var records uint64
	if err := store.QueryRow(ctx, db, []any{&records}, "SELECT count() FROM schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if records != uint64(len(migrations.All())) {
		t.Fatalf("schema_migrations has %d rows, want %d", records, len(migrations.All()))
	}
	states, err := migrations.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if !s.Applied || s.Modified || s.AppliedAt.IsZero() {
			t.Errorf("%s: %+v, want applied, unmodified, with a time", s.File(), s)
		}
	}
}

func TestTablesHaveExpectedColumns(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	if _, err := migrations.Apply(ctx, db, migrations.Options{}); err != nil {
		t.Fatal(err)
	}
	rollup := []string{
		"time_received DateTime('UTC')", "tenant String", "exporter_address FixedString(16)", "exporter_name String",
		"protocol Enum8('unknown' = 0, 'netflow_v5' = 1, 'netflow_v9' = 2, 'ipfix' = 3, 'sflow_v5' = 4)",
		"direction Enum8('unknown' = 0, 'ingress' = 1, 'egress' = 2)", "sampling_rate UInt32",
		"in_if_index UInt32", "in_if_name String", "in_if_description String", "in_if_speed_mbps UInt32", "in_if_boundary String",
		"out_if_index UInt32", "out_if_name String", "out_if_description String", "out_if_speed_mbps UInt32", "out_if_boundary String",
		"ip_protocol UInt8", "ip_version UInt8", "src_as UInt32", "dst_as UInt32",
		"bytes UInt64", "packets UInt64", "flows UInt64", "bytes_scaled UInt64", "packets_scaled UInt64",
	}
	for _, tc := range []struct {
		table string
		want  []string
	}{
		{"flows", append(typed(store.FlowColumns()), "bytes_scaled UInt64", "packets_scaled UInt64")},
		{"flows_1m", rollup},
		{"flows_1h", rollup},
		{"exporters", []string{
			"exporter_address FixedString(16)", "collector String", "protocols Array(String)", "first_seen DateTime('UTC')", "last_seen DateTime('UTC')",
			"datagrams UInt64", "flows UInt64", "bytes UInt64", "drop_reasons Array(String)", "drop_counts Array(UInt64)",
			"templates UInt32", "sequence_expected UInt64", "sequence_lost UInt64",
			"streams.protocol Array(String)", "streams.observation_domain Array(UInt32)", "streams.last_sequence Array(UInt32)",
			"streams.expected Array(UInt64)", "streams.lost Array(UInt64)", "streams.resets Array(UInt64)", "streams.restarts Array(UInt64)", "streams.source_port Array(UInt16)",
			"updated_at DateTime('UTC')",
		}},
		{"rule_state", []string{
			"rule String", "tenant String", "key String", "mean Float64", "variance Float64", "observed_seconds Float64",
			"first_seen DateTime('UTC')", "last_seen DateTime('UTC')", "anomalous_since DateTime('UTC')",
			"updated_at DateTime('UTC')", "version UInt64",
		}},
		{"api_tokens", []string{
			"id String", "name String", "tenant String", "all_tenants UInt8", "role String", "hash String", "key_id String",
			"created_at DateTime('UTC')", "created_by String", "expires_at DateTime('UTC')", "revoked_at DateTime('UTC')",
			"revoked_by String", "version UInt64",
		}},
		{"api_token_usage", []string{"id String", "last_used_at DateTime('UTC')"}},
		{"schema_migrations", []string{"version UInt32", "name String", "checksum String", "applied_at DateTime('UTC')"}},
	} {
		t.Run(tc.table, func(t *testing.T) {
			got := columns(t, db, tc.table)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("columns of %s:\n got %q\nwant %q", tc.table, got, tc.want)
			}
		})
	}
	for _, view := range []string{"flows_1m_mv", "flows_1h_mv", "exporters_latest"} {
		var n uint64
		if err := store.QueryRow(ctx, db, []any{&n},
			"SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", view); err != nil || n != 1 {
			t.Errorf("view %s: count %d, err %v", view, n, err)
		}
	}
}

// typed gives the flows columns the types 18.16 gets.
func typed(names []string) []string {
	types := map[string]string{
		"time_received": "DateTime('UTC')", "flow_start": "DateTime('UTC')", "flow_end": "DateTime('UTC')",
		"flow_duration_ms": "UInt32", "exporter_port": "UInt16",
		"protocol":  "Enum8('unknown' = 0, 'netflow_v5' = 1, 'netflow_v9' = 2, 'ipfix' = 3, 'sflow_v5' = 4)",
		"direction": "Enum8('unknown' = 0, 'ingress' = 1, 'egress' = 2)",
		"src_port":  "UInt16", "dst_port": "UInt16", "src_vlan": "UInt16", "dst_vlan": "UInt16",
		"src_mac": "UInt64", "dst_mac": "UInt64", "bytes": "UInt64", "packets": "UInt64",
	}
	out := make([]string, len(names))
	for i, n := range names {
		typ, ok := types[n]
		switch {
		case ok:
		case strings.HasSuffix(n, "_address") || n == "next_hop":
			typ = "FixedString(16)"
		case n == "tenant" || strings.HasSuffix(n, "_name") || strings.HasSuffix(n, "_description") ||
			strings.HasSuffix(n, "_boundary") || strings.HasSuffix(n, "_vendor") || strings.HasSuffix(n, "_role") || strings.HasSuffix(n, "_site"):
			typ = "String"
		case strings.HasPrefix(n, "ip_") || n == "tcp_flags" || n == "tos" || strings.HasPrefix(n, "icmp_") || strings.HasSuffix(n, "_mask"):
			typ = "UInt8"
		default:
			typ = "UInt32"
		}
		out[i] = n + " " + typ
	}
	return out
}

func columns(t *testing.T, db store.DB, table string) []string {
	t.Helper()
	var out []string
	for _, fields := range describe(t, db, table) {
		out = append(out, fields[0]+" "+fields[1])
	}
	return out
}

// describe is DESCRIBE TABLE table, which keeps the table's column order
// on every version (18.16's system.columns has no position): per column
// its name, type, default_type, default_expression, then more on newer
// servers.
func describe(t *testing.T, db store.DB, table string) [][]string {
	t.Helper()
	rows, err := db.Query(context.Background(), "DESCRIBE TABLE "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		fields := make([]string, len(rows.Columns()))
		dest := make([]any, len(fields))
		for i := range fields {
			dest[i] = &fields[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fields)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestApplyRefusesModifiedMigration(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	if _, err := migrations.Apply(ctx, db, migrations.Options{}); err != nil {
		t.Fatal(err)
	}
	// As if 0001 had been applied from a different file.
	if err := db.Exec(ctx, "ALTER TABLE schema_migrations UPDATE checksum = 'edited' WHERE version = 1"); err != nil {
		t.Fatal(err)
	}
	waitMutations(t, db)
	_, err := migrations.Apply(ctx, db, migrations.Options{})
	if err == nil || !strings.Contains(err.Error(), "0001_flows.sql was applied with checksum edited") {
		t.Fatalf("Apply after an edit: err = %v, want the checksum named", err)
	}
	states, err := migrations.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !states[0].Modified || states[1].Modified {
		t.Fatalf("Status: modified = %v, %v; want true, false", states[0].Modified, states[1].Modified)
	}
}

func waitMutations(t *testing.T, db store.DB) {
	t.Helper()
	done := testkit.Within(2*time.Second, func() bool {
		var pending uint64
		if err := store.QueryRow(context.Background(), db, []any{&pending},
			"SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0"); err != nil {
			t.Fatal(err)
		}
		return pending == 0
	})
	if !done {
		t.Fatal("mutation not done after 2s")
	}
}

func TestRenderVariants(t *testing.T) {
	retention := store.RetentionConfig{Flows: 30 * 24 * time.Hour, Flows1m: 36 * time.Hour, Flows1h: 0}
	for _, tc := range []struct {
		version string
		want    []string
		notWant []string
	}{
		{
			version: "18.16.1",
			want:    []string{"FixedString(16)", "tenant             String,", "ORDER BY (tenant, exporter_address, toStartOfMinute(time_received), in_if_index, out_if_index)"},
			notWant: []string{"IPv6", "LowCardinality", "CODEC", "TTL", "SETTINGS", "IF NOT EXISTS in_vrf_id"},
		},
		{
			version: "26.7.3.1",
			want: []string{
				"exporter_address   IPv6,", "tenant             LowCardinality(String),",
				"time_received      DateTime('UTC') CODEC(DoubleDelta, LZ4),",
				"TTL time_received + INTERVAL 30 DAY", "TTL time_received + INTERVAL 36 HOUR",
				"SETTINGS ttl_only_drop_parts = 1", "TTL updated_at + INTERVAL 30 DAY",
				"protocols         Array(LowCardinality(String)),",
				"ADD COLUMN IF NOT EXISTS in_vrf_id  UInt32 AFTER out_if_boundary",
			},
			notWant: []string{"FixedString", "INTERVAL 0"},
		},
	} {
		t.Run(tc.version, func(t *testing.T) {
			caps, err := store.CapabilitiesOf(tc.version)
			if err != nil {
				t.Fatal(err)
			}
			var all strings.Builder
			for _, m := range migrations.All() {
				stmts, err := m.Render(migrations.Params{Caps: caps, Retention: retention})
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range stmts {
					if strings.Contains(s, "{{") || strings.HasSuffix(s, ";") || strings.Contains(s, "\n--") {
						t.Errorf("%s: badly rendered statement:\n%s", m.File(), s)
					}
					all.WriteString(s + "\n;\n")
				}
			}
			sql := all.String()
			for _, w := range tc.want {
				if !strings.Contains(sql, w) {
					t.Errorf("rendered SQL lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(sql, w) {
					t.Errorf("rendered SQL has %q", w)
				}
			}
		})
	}
}

// The enums in the schema must name every protocol and direction the
// flow package has, with the same numbers, since the batch sends numbers.
func TestEnumsMatchFlowPackage(t *testing.T) {
	caps, _ := store.CapabilitiesOf("18.16.1")
	stmts, err := migrations.All()[0].Render(migrations.Params{Caps: caps})
	if err != nil {
		t.Fatal(err)
	}
	sql := strings.Join(stmts, "\n")
	enumValues := func(column string) map[string]int {
		re := regexp.MustCompile(column + `\s+Enum8\(([^)]*)\)`)
		m := re.FindStringSubmatch(sql)
		if m == nil {
			t.Fatalf("no Enum8 column %s", column)
		}
		out := map[string]int{}
		for _, kv := range strings.Split(m[1], ",") {
			parts := strings.SplitN(kv, "=", 2)
			name := strings.Trim(strings.TrimSpace(parts[0]), "'")
			v, err := strconv.Atoi(strings.TrimSpace(parts[1]))
			if err != nil {
				t.Fatalf("enum %s: %q: %v", column, kv, err)
			}
			out[name] = v
		}
		return out
	}
	protocols := enumValues("protocol")
	for p := flow.ProtoUnknown; ; p++ {
		if p != flow.ProtoUnknown && p.String() == "unknown" {
			if len(protocols) != int(p) {
				t.Errorf("protocol enum has %d values, flow has %d", len(protocols), p)
			}
			break
		}
		if v, ok := protocols[p.String()]; !ok || v != int(p) {
			t.Errorf("protocol enum: %s = %d (present %v), want %d", p, v, ok, p)
		}
	}
	directions := enumValues("direction")
	for d, name := range map[flow.Direction]string{flow.DirUnknown: "unknown", flow.DirIngress: "ingress", flow.DirEgress: "egress"} {
		if v, ok := directions[name]; !ok || v != int(d) {
			t.Errorf("direction enum: %s = %d (present %v), want %d", name, v, ok, d)
		}
	}
}
