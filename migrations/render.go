package migrations

import (
	"fmt"
	"text/template"
	"time"
)

// funcs are the template functions that turn one logical schema into the
// SQL a given server accepts. Each decision lives here, in one place, so
// that a variant (ON CLUSTER with Replicated engines, cluster.go) is a
// change of these functions and of Params, not of every SQL file.
func funcs(p Params) template.FuncMap {
	return template.FuncMap{
		// ip is the type of a column holding an IPv4-mapped or IPv6 address.
		"ip": func() string {
			if p.Caps.IPv6 {
				return "IPv6"
			}
			return "FixedString(16)"
		},
		// lc is a string column with few distinct values.
		"lc": func() string {
			if p.Caps.LowCardinality {
				return "LowCardinality(String)"
			}
			return "String"
		},
		// codec is a column's compression, where the server has codecs.
		"codec": func(spec string) string {
			if p.Caps.Codecs {
				return " CODEC(" + spec + ")"
			}
			return ""
		},
		// ttl deletes rows older than keep; servers without TTL get none
		// and the store's retention job drops their partitions instead.
		"ttl": func(column string, keep time.Duration) string {
			if !p.Caps.TTL || keep <= 0 {
				return ""
			}
			return "TTL " + column + " + " + interval(keep)
		},
		// settings of MergeTree tables.
		"settings": func() string {
			if p.Caps.TTL {
				// Expired rows go with their whole part, never by rewriting parts.
				return "SETTINGS ttl_only_drop_parts = 1"
			}
			return ""
		},
		// ifNotExists makes ALTER TABLE ... ADD COLUMN re-runnable where the
		// server can (Apply makes it so on the others).
		"ifNotExists": func() string {
			if p.Caps.AlterIfNotExists {
				return "IF NOT EXISTS "
			}
			return ""
		},
		// engine is a table's engine, or on a cluster its Replicated form,
		// whose replication path and replica clusterStatements fill in.
		"engine": func(engine string) string {
			if p.Layout.Clustered() {
				return replicatedEngine(engine)
			}
			return engine
		},
	}
}

func interval(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("INTERVAL %d DAY", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("INTERVAL %d HOUR", d/time.Hour)
	default:
		return fmt.Sprintf("INTERVAL %d SECOND", (d+time.Second-1)/time.Second)
	}
}
