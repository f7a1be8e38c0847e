// Package privacy exports and deletes everything flowhouse stores about
// one tenant (DESIGN.md section 7): the rows of every table keyed by
// tenant, and the collector statistics of the tenant's exporters, whose
// table has no tenant column. Exports stream as NDJSON; deletions run as
// jobs in the background, recorded in the deletion_jobs table.
package privacy

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Table is one table keyed by tenant.
type Table struct {
	// Name is the table; Type the "type" of its rows in an export.
	Name, Type string
	// Window is the time column an export bounds by since/until; "" for
	// tables exported whole.
	Window string
}

// Tables are the tables keyed by tenant, in the order they are exported
// and deleted. A test checks this list against the migrated schema: a
// new table with a tenant column must be added here or to Excluded.
var Tables = []Table{
	{"flows", "flow", "time_received"},
	{"flows_1m", "flow_1m", "time_received"},
	{"flows_1h", "flow_1h", "time_received"},
	{"alerts", "alert", ""},
	{"alert_events", "alert_event", ""},
	{"alert_versions", "alert_version", ""},
	{"rule_state", "rule_state", ""},
	{"devices", "device", ""},
	{"interfaces", "interface", ""},
	{"interface_counters", "interface_counter", ""},
	{"arp_observations", "arp_observation", ""},
	{"neighbors", "neighbor", ""},
	{"neighbor_observations", "neighbor_observation", ""},
	{"exporter_attributes", "exporter_attributes", ""},
	{"exporter_polls", "exporter_poll", ""},
}

// ExportersTable holds collector statistics by exporter address only;
// its rows of a tenant are those of the tenant's own exporters.
var ExportersTable = Table{"exporters", "exporter", ""}

// Excluded are the tables with a tenant column that are neither exported
// nor deleted, and why.
var Excluded = map[string]string{
	"api_tokens":    "credentials to the API, not data about the tenant's network; their hashes are useless outside this deployment; revoke them with flowhouse token revoke",
	"deletion_jobs": "the record of deletions themselves: which tenant, who asked, when, how many rows; no data of the tenant's network",
}

// TableNames are the tables an export or deletion covers, the exporters
// table last.
func TableNames() []string {
	var out []string
	for _, t := range Tables {
		out = append(out, t.Name)
	}
	return append(out, ExportersTable.Name)
}

// column is one stored column and how it is read for an export.
type column struct {
	name string
	expr string // the SELECT expression
	kind kind
}

// kind is the Go type a column is scanned into.
type kind int

const (
	kString kind = iota
	kUint
	kInt
	kFloat
	kTime // DateTime read as toUInt32, written as RFC 3339
	kArray
)

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// columns reads table's stored columns from the engine's catalog, so an
// export has every column, also those added after this code. Only the
// names of tables in Tables are ever asked for; the column names come
// from the catalog of flowhouse's own schema, are checked to be plain
// identifiers and are quoted.
func columns(ctx context.Context, db dbapi.Querier, table string) ([]column, error) {
	rows, err := db.Query(ctx, "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ? AND default_kind != 'ALIAS'", table)
	if err != nil {
		return nil, fmt.Errorf("privacy: columns of %s: %w", table, err)
	}
	defer rows.Close()
	var out []column
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("privacy: columns of %s: %w", table, err)
		}
		if !identifier.MatchString(name) {
			return nil, fmt.Errorf("privacy: %s has a column named %q", table, name)
		}
		out = append(out, columnOf(name, typ))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("privacy: columns of %s: %w", table, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("privacy: table %s has no columns (is the schema migrated?)", table)
	}
	return out, nil
}

func columnOf(name, typ string) column {
	quoted := "`" + name + "`"
	if inner, ok := strings.CutPrefix(typ, "Array("); ok {
		k, expr := scalar("x", strings.TrimSuffix(inner, ")"))
		return column{name: name, expr: "arrayMap(x -> " + expr + ", " + quoted + ")", kind: kArray + k}
	}
	k, expr := scalar(quoted, typ)
	return column{name: name, expr: expr, kind: k}
}

// scalar is how a value of typ is read: addresses as text, integers and
// floats widened, times as Unix seconds, the rest as text.
func scalar(expr, typ string) (kind, string) {
	for {
		inner, ok := strings.CutPrefix(typ, "LowCardinality(")
		if !ok {
			inner, ok = strings.CutPrefix(typ, "Nullable(")
		}
		if !ok {
			break
		}
		typ = strings.TrimSuffix(inner, ")")
	}
	switch {
	case typ == "IPv6" || typ == "FixedString(16)":
		return kString, "IPv6NumToString(" + expr + ")"
	case strings.HasPrefix(typ, "UInt"):
		return kUint, "toUInt64(" + expr + ")"
	case strings.HasPrefix(typ, "Int"):
		return kInt, "toInt64(" + expr + ")"
	case strings.HasPrefix(typ, "Float"):
		return kFloat, "toFloat64(" + expr + ")"
	case strings.HasPrefix(typ, "DateTime"):
		return kTime, "toUInt32(" + expr + ")"
	}
	return kString, "toString(" + expr + ")"
}

// exporterAddresses are the addresses of the exporters table that belong
// to tenant and to no other: the configuration matches them to tenant (or
// tenant has exporter_attributes for them), and neither the configuration
// nor another tenant's exporter_attributes gives them to another tenant.
// An address two tenants claim is left alone: its statistics cannot be
// told apart.
func exporterAddresses(ctx context.Context, db dbapi.Querier, match func(netip.Addr) string, tenant string) ([]string, error) {
	claims := map[string][]string{} // address -> tenants
	rows, err := db.Query(ctx, "SELECT DISTINCT IPv6NumToString(exporter_address) FROM exporters")
	if err != nil {
		return nil, fmt.Errorf("privacy: exporters: %w", err)
	}
	err = scanPairs(rows, func(addr, _ string) {
		if a, err := netip.ParseAddr(addr); err == nil {
			claims[addr] = []string{match(a)}
		}
	}, false)
	if err != nil {
		return nil, fmt.Errorf("privacy: exporters: %w", err)
	}
	rows, err = db.Query(ctx, "SELECT DISTINCT IPv6NumToString(exporter_address), tenant FROM exporter_attributes")
	if err != nil {
		return nil, fmt.Errorf("privacy: exporter_attributes: %w", err)
	}
	err = scanPairs(rows, func(addr, t string) {
		if c, ok := claims[addr]; ok && !slices.Contains(c, t) {
			claims[addr] = append(c, t)
		}
	}, true)
	if err != nil {
		return nil, fmt.Errorf("privacy: exporter_attributes: %w", err)
	}
	var out []string
	for addr, ts := range claims {
		if len(ts) == 1 && ts[0] == tenant {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out, nil
}

func scanPairs(rows dbapi.Rows, each func(a, b string), two bool) error {
	defer rows.Close()
	for rows.Next() {
		var a, b string
		dest := []any{&a}
		if two {
			dest = append(dest, &b)
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		each(a, b)
	}
	return rows.Err()
}
