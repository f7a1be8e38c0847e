package migrations

import (
	"regexp"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/store"
)

var testLayout = dbapi.Layout{Cluster: "fh_cluster", Database: "fh"}

// clusterRender renders every migration, schema_migrations first, for
// the test cluster on a server with caps.
func clusterRender(t *testing.T, caps store.Capabilities) []string {
	t.Helper()
	p := Params{Caps: caps, Retention: store.DefaultConfig().Retention, Layout: testLayout}
	var out []string
	for _, m := range append([]Migration{migrationsTable}, All()...) {
		stmts, err := m.Render(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, stmts...)
	}
	return out
}

var (
	legacyCaps = store.Capabilities{Version: "18.16.1"}
	modernCaps = store.Capabilities{Version: "25.8.1", IPv6: true, TTL: true, Codecs: true, LowCardinality: true, AlterIfNotExists: true}
)

// Every statement of the cluster schema reaches every node: ON CLUSTER,
// or an ALTER of a table replicated to every node, which its replicas
// apply by themselves. Every table is Replicated, on the path of its kind.
func TestClusterDDLReachesEveryNode(t *testing.T) {
	engineRe := regexp.MustCompile(`ENGINE = (\w+)\(([^)]*)`)
	for _, caps := range []store.Capabilities{legacyCaps, modernCaps} {
		t.Run(caps.Version, func(t *testing.T) {
			for _, stmt := range clusterRender(t, caps) {
				head, _, _ := strings.Cut(stmt, "\n")
				if strings.Contains(stmt, "@zk_") {
					t.Errorf("unfilled replication argument: %s", head)
				}
				if !strings.Contains(head, "ON CLUSTER `fh_cluster`") {
					if !strings.HasPrefix(head, "ALTER TABLE `fh`.") || testLayout.Sharded(strings.Fields(head)[2][len("`fh`."):]) {
						t.Errorf("not run on every node: %s", head)
					}
				}
				if !strings.HasPrefix(stmt, "CREATE TABLE") {
					continue
				}
				m := engineRe.FindStringSubmatch(stmt)
				if m == nil {
					t.Errorf("no engine: %s", head)
					continue
				}
				name := strings.Fields(head)[5][len("`fh`."):]
				switch {
				case m[1] == "Distributed":
					if !testLayout.Sharded(name) || !strings.Contains(stmt, "AS `fh`."+name+"_local") {
						t.Errorf("front of %s: %s", name, stmt)
					}
				case strings.HasSuffix(name, "_local"):
					want := "'/clickhouse/tables/shard-{shard}/fh/" + name + "', 'replica-{replica}'"
					if !strings.HasPrefix(m[1], "Replicated") || !strings.HasPrefix(m[2], want) {
						t.Errorf("%s: engine %s(%s), want Replicated with %s", name, m[1], m[2], want)
					}
				default:
					want := "'/clickhouse/tables/all/fh/" + name + "', 'shard-{shard}-replica-{replica}'"
					if testLayout.Sharded(name) || !strings.HasPrefix(m[1], "Replicated") || !strings.HasPrefix(m[2], want) {
						t.Errorf("%s: engine %s(%s), want Replicated with %s", name, m[1], m[2], want)
					}
				}
			}
		})
	}
}

// The rollups are fed on each shard from the shard's own raw flows, into
// the shard's own rollup tables; inserts of flows go through the front,
// whose key is computed from the row (a retried batch lands on the same
// shards in the same blocks, which replication deduplicates).
func TestClusterRollupsAndFronts(t *testing.T) {
	stmts := strings.Join(clusterRender(t, modernCaps), "\n;\n")
	for _, want := range []string{
		"CREATE MATERIALIZED VIEW IF NOT EXISTS `fh`.flows_1m_mv ON CLUSTER `fh_cluster` TO `fh`.flows_1m_local AS",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS `fh`.flows_1h_mv ON CLUSTER `fh_cluster` TO `fh`.flows_1h_local AS",
		"FROM `fh`.flows_local\nGROUP BY",
		"ENGINE = Distributed('fh_cluster', 'fh', 'flows_local', cityHash64(",
		"ENGINE = Distributed('fh_cluster', 'fh', 'flows_1m_local')",
		"SELECT * FROM `fh`.exporters FINAL",
		"DROP TABLE IF EXISTS `fh`.flows ON CLUSTER `fh_cluster`",
	} {
		if !strings.Contains(stmts, want) {
			t.Errorf("cluster schema lacks %q", want)
		}
	}
	if strings.Contains(stmts, "rand()") {
		t.Error("a front shards by rand(): a retried batch would be split differently and not deduplicated")
	}
}

func TestClusterStatementKinds(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		err      string
	}{
		{"alter of a sharded table: each shard, then the front again",
			"ALTER TABLE flows\n    ADD COLUMN x UInt8",
			[]string{"ALTER TABLE `fh`.flows_local ON CLUSTER `fh_cluster`\n    ADD COLUMN x UInt8",
				"DROP TABLE IF EXISTS `fh`.flows ON CLUSTER `fh_cluster`",
				"CREATE TABLE IF NOT EXISTS `fh`.flows ON CLUSTER `fh_cluster` AS `fh`.flows_local ENGINE = Distributed('fh_cluster', 'fh', 'flows_local', " + shardingKeys["flows"] + ")"}, ""},
		{"alter of a table on every node: once, replicated",
			"ALTER TABLE exporters ADD COLUMN c String",
			[]string{"ALTER TABLE `fh`.exporters ADD COLUMN c String"}, ""},
		{"drop of a sharded table: front and shards",
			"DROP TABLE IF EXISTS flows_1m",
			[]string{"DROP TABLE IF EXISTS `fh`.flows_1m ON CLUSTER `fh_cluster`", "DROP TABLE IF EXISTS `fh`.flows_1m_local ON CLUSTER `fh_cluster`"}, ""},
		{"a table whose engine is not the template's", "CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = MergeTree() ORDER BY a", nil, "not written with the engine template function"},
		{"a statement of an unknown kind", "INSERT INTO flows SELECT 1", nil, "no cluster form"},
		{"a rename", "RENAME TABLE a TO b", nil, "no cluster form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := clusterStatements(testLayout, tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n|\n") != strings.Join(tc.want, "\n|\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n|\n"), strings.Join(tc.want, "\n|\n"))
			}
		})
	}
}

// The one-server schema is what it was: no Replicated engine, no
// ON CLUSTER, no _local table.
func TestNoClusterRendersSingleServer(t *testing.T) {
	for _, m := range All() {
		stmts, err := m.Render(Params{Caps: modernCaps, Retention: store.DefaultConfig().Retention})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			if strings.Contains(s, "Replicated") || strings.Contains(s, "ON CLUSTER") || strings.Contains(s, "_local") {
				t.Errorf("%s: %s", m.File(), s)
			}
		}
	}
}
