package dbapi

import "strings"

// Layout says where flowhouse's tables live: on one server (the zero
// Layout), or spread over a ClickHouse cluster. It is the one place that
// knows which tables are sharded, so migrations, the retention job and
// tenant deletion name the same tables.
//
// On a cluster, the large tables (raw flows and their rollups) are
// sharded: each shard keeps its part in <table>_local, a Replicated
// engine with one replica per node of the shard, and <table> is a
// Distributed front over all shards, which is what readers and the
// flows insert use. Every other table is small and replicated to every
// node under its own name, so that reads of it stay local and
// ReplacingMergeTree's FINAL sees every version of a row.
type Layout struct {
	// Cluster is the name in the servers' <remote_servers>; empty is one
	// server.
	Cluster string
	// Database holds the tables; cluster DDL names it (each node runs it
	// in its own session, where the database is not the caller's).
	Database string
}

// sharded are the tables split across shards on a cluster.
var sharded = map[string]bool{"flows": true, "flows_1m": true, "flows_1h": true}

// Clustered tells whether tables are on a cluster.
func (l Layout) Clustered() bool { return l.Cluster != "" }

// Sharded tells whether table is split across a cluster's shards (false
// on one server).
func (l Layout) Sharded(table string) bool { return l.Clustered() && sharded[table] }

// Local is the table that holds table's rows on each node: <table>_local
// for a sharded table on a cluster, else table itself.
func (l Layout) Local(table string) string {
	if l.Sharded(table) {
		return table + "_local"
	}
	return table
}

// OnCluster is the " ON CLUSTER `name`" clause of DDL that every node
// must run, or "" on one server.
func (l Layout) OnCluster() string {
	if !l.Clustered() {
		return ""
	}
	return " ON CLUSTER " + QuoteIdent(l.Cluster)
}

// Qualified is table prefixed with the layout's database on a cluster,
// where DDL runs in each node's own session; table as it is on one server,
// where the connection's database is the right one.
func (l Layout) Qualified(table string) string {
	if !l.Clustered() {
		return table
	}
	return QuoteIdent(l.Database) + "." + table
}

// System is a system table (system.parts, system.mutations) as seen on
// every shard, one replica each, and the expression of the database to
// filter it by: each shard has its own parts and mutations. On one
// server, the server's own table and currentDatabase().
func (l Layout) System(table string) (from, database string) {
	if !l.Clustered() {
		return "system." + table, "currentDatabase()"
	}
	return "cluster(" + QuoteString(l.Cluster) + ", system." + table + ")", QuoteString(l.Database)
}

// QuoteIdent quotes a ClickHouse identifier.
func QuoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

// stringEscaper escapes for a single-quoted ClickHouse string: backslash
// first, so the others are not escaped twice.
var stringEscaper = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)

// QuoteString is s as a single-quoted ClickHouse string literal.
func QuoteString(s string) string { return "'" + stringEscaper.Replace(s) + "'" }
