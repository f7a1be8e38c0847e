package migrations

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// On a cluster each migration's statements are rewritten after rendering,
// as Akvorado's cluster mode does: every DDL runs ON CLUSTER, every table
// gets the Replicated form of its engine, and a sharded table becomes
// <table>_local on each shard plus a Distributed front named <table>. The
// SQL files stay one logical schema, and their checksums do not depend on
// the mode (there is no migration between the modes: a database is made
// in one of them).
//
// The engine template function marks where the replication arguments go;
// the rewrite, which knows the table, fills them in.
const (
	zkPathMark    = "'@zk_path@'"
	zkReplicaMark = "'@zk_replica@'"
)

// replicatedEngine is engine ("ReplacingMergeTree(updated_at)") in its
// Replicated form, with the marks as its first two arguments.
func replicatedEngine(engine string) string {
	name, args, ok := strings.Cut(engine, "(")
	if !ok {
		return "Replicated" + engine + "(" + zkPathMark + ", " + zkReplicaMark + ")"
	}
	args = strings.TrimSuffix(args, ")")
	if strings.TrimSpace(args) != "" {
		args = ", " + args
	}
	return "Replicated" + name + "(" + zkPathMark + ", " + zkReplicaMark + args + ")"
}

// shardingKeys are the Distributed fronts' keys of the sharded tables
// that flowhouse inserts into. A key computed from the row, not rand(),
// sends the rows of a batch that is inserted again (a retry, a spool
// replay) to the same shards in the same blocks, where the replicated
// tables' block deduplication drops them. The rollups are written on each
// shard by their views, never through the front, so they need no key.
var shardingKeys = map[string]string{
	"flows": "cityHash64(exporter_address, src_address, dst_address, src_port, dst_port, flow_start)",
}

var (
	createTableRe = regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS (\w+) \(`)
	createViewRe  = regexp.MustCompile(`^CREATE (MATERIALIZED )?VIEW IF NOT EXISTS (\w+)( TO (\w+))? AS\b`)
	dropTableRe   = regexp.MustCompile(`^DROP TABLE IF EXISTS (\w+)$`)
	alterTableRe  = regexp.MustCompile(`^ALTER TABLE (\w+)\b`)
	fromRe        = regexp.MustCompile(`\bFROM (\w+)\b`)
)

// clusterStatements rewrites one rendered statement for l's cluster. A
// statement of a kind it does not know is an error, so that a new
// migration cannot silently run on one node only.
func clusterStatements(l dbapi.Layout, stmt string) ([]string, error) {
	switch {
	case createTableRe.MatchString(stmt):
		return clusterCreateTable(l, stmt)
	case createViewRe.MatchString(stmt):
		m := createViewRe.FindStringSubmatch(stmt)
		head := "CREATE " + m[1] + "VIEW IF NOT EXISTS " + l.Qualified(m[2]) + l.OnCluster()
		if m[4] != "" {
			head += " TO " + l.Qualified(l.Local(m[4]))
		}
		body := fromRe.ReplaceAllStringFunc(stmt[len(m[0]):], func(from string) string {
			return "FROM " + l.Qualified(l.Local(strings.TrimPrefix(from, "FROM ")))
		})
		return []string{head + " AS" + body}, nil
	case dropTableRe.MatchString(stmt):
		name := dropTableRe.FindStringSubmatch(stmt)[1]
		out := []string{"DROP TABLE IF EXISTS " + l.Qualified(name) + l.OnCluster()}
		if l.Sharded(name) {
			out = append(out, "DROP TABLE IF EXISTS "+l.Qualified(l.Local(name))+l.OnCluster())
		}
		return out, nil
	case alterTableRe.MatchString(stmt):
		m := alterTableRe.FindStringSubmatch(stmt)
		rest := stmt[len(m[0]):]
		if !l.Sharded(m[1]) {
			// Replicated to every node: the replicas apply an ALTER of one
			// of them by themselves, including those down at the time.
			return []string{"ALTER TABLE " + l.Qualified(m[1]) + rest}, nil
		}
		// Each shard's replicas, then the front made again over the new
		// columns: ClickHouse refuses an ALTER ON CLUSTER of a table that is
		// not replicated on a cluster whose shards are (code 371), and a
		// front holds no rows of its own (inserts through it are
		// synchronous), so nothing is lost.
		return []string{
			"ALTER TABLE " + l.Qualified(l.Local(m[1])) + l.OnCluster() + rest,
			"DROP TABLE IF EXISTS " + l.Qualified(m[1]) + l.OnCluster(),
			createFront(l, m[1]),
		}, nil
	}
	first, _, _ := strings.Cut(stmt, "\n")
	return nil, fmt.Errorf("no cluster form for %q: migrations know CREATE TABLE, CREATE [MATERIALIZED] VIEW, DROP TABLE and ALTER TABLE", first)
}

// clusterCreateTable is a CREATE TABLE on every node with its Replicated
// engine, and for a sharded table the Distributed front after it.
func clusterCreateTable(l dbapi.Layout, stmt string) ([]string, error) {
	m := createTableRe.FindStringSubmatch(stmt)
	name := m[1]
	if !strings.Contains(stmt, zkPathMark) {
		return nil, fmt.Errorf("table %s: its engine is not written with the engine template function, so it cannot be replicated", name)
	}
	local := l.Local(name)
	// The paths follow Akvorado's: one replication path per shard for a
	// sharded table, one for the whole cluster for a table every node has,
	// where a replica's name must then be unique across shards.
	path, replica := "/clickhouse/tables/all/"+l.Database+"/"+name, "shard-{shard}-replica-{replica}"
	if l.Sharded(name) {
		path, replica = "/clickhouse/tables/shard-{shard}/"+l.Database+"/"+local, "replica-{replica}"
	}
	body := stmt[len(m[0]):]
	body = strings.Replace(body, zkPathMark, quoteString(path), 1)
	body = strings.Replace(body, zkReplicaMark, quoteString(replica), 1)
	out := []string{"CREATE TABLE IF NOT EXISTS " + l.Qualified(local) + l.OnCluster() + " (" + body}
	if l.Sharded(name) {
		out = append(out, createFront(l, name))
	}
	return out, nil
}

// createFront is the Distributed front of a sharded table, with the
// columns its local table has.
func createFront(l dbapi.Layout, name string) string {
	args := []string{quoteString(l.Cluster), quoteString(l.Database), quoteString(l.Local(name))}
	if key := shardingKeys[name]; key != "" {
		args = append(args, key)
	}
	return "CREATE TABLE IF NOT EXISTS " + l.Qualified(name) + l.OnCluster() +
		" AS " + l.Qualified(l.Local(name)) + " ENGINE = Distributed(" + strings.Join(args, ", ") + ")"
}

func quoteString(s string) string { return dbapi.QuoteString(s) }
