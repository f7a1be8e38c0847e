package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

// apiHistory is how far back the seeded flows reach: a day and an hour,
// so that a 24 h range on whole hours (since = the last whole hour less
// 24 h) is covered whatever the minute the stage starts at.
const apiHistory = 25 * time.Hour

// APISeed is what the API stage put in the database before serve.
type APISeed struct {
	End           time.Time `json:"end"`
	FlowRows      uint64    `json:"flow_rows"`
	Flows1mRows   uint64    `json:"flows_1m_rows"`
	Flows1hRows   uint64    `json:"flows_1h_rows"`
	FlowsSeconds  float64   `json:"flows_insert_seconds"`
	RollupSeconds float64   `json:"rollups_fill_seconds"`
	FlowsParts    uint64    `json:"flows_active_parts"`
	// Alerts are distinct alerts (tenant, id); AlertRows the rows of
	// alerts (versions not merged yet); VersionRows of alert_versions.
	Alerts       uint64            `json:"alerts"`
	AlertRows    uint64            `json:"alert_rows"`
	VersionRows  uint64            `json:"alert_versions_rows"`
	Active       uint64            `json:"alerts_active"`
	PerTenant    map[string]uint64 `json:"alerts_per_tenant"`
	AlertSeconds float64           `json:"alerts_insert_seconds"`
}

// seedAPI fills flows (and the rollups, with the rollup views' own
// SELECT) with ao.historyRows synthetic flows over the apiHistory ending
// at end, and alerts and alert_versions with ao.alerts alerts.
func seedAPI(ctx context.Context, db dbapi.DB, ao apiOptions, end time.Time) (*APISeed, error) {
	s := &APISeed{End: end}
	t := time.Now()
	if err := seedFlows(ctx, db, ao, end); err != nil {
		return nil, err
	}
	s.FlowsSeconds = time.Since(t).Seconds()
	t = time.Now()
	if err := fillRollups(ctx, db); err != nil {
		return nil, err
	}
	s.RollupSeconds = time.Since(t).Seconds()
	t = time.Now()
	if err := seedAlerts(ctx, db, ao.alerts, end); err != nil {
		return nil, err
	}
	s.AlertSeconds = time.Since(t).Seconds()
	return s, s.count(ctx, db)
}

// seedFlows inserts the flows with the rollup views detached: through
// the views an INSERT ... SELECT is about ten times slower on the
// embedded engine (rulefill.go); fillRollups fills them afterwards.
func seedFlows(ctx context.Context, db dbapi.DB, ao apiOptions, end time.Time) error {
	if err := detachViews(ctx, db, true); err != nil {
		return fmt.Errorf("detaching the rollup views: %w", err)
	}
	sql, err := apiFillSQL()
	if err != nil {
		return err
	}
	f := &filler{db: db, end: end, window: apiHistory, chunk: ao.chunk, parallel: ao.parallel, budget: 24 * time.Hour, sql: sql}
	_, err = f.fill(ctx, ao.historyRows)
	if aerr := detachViews(ctx, db, false); err == nil && aerr != nil {
		err = fmt.Errorf("attaching the rollup views: %w", aerr)
	}
	return err
}

// apiFillSQL is fillSQL with 30 exporters of 2 input and 2 output
// interfaces and 2 destination ASes (720 rollup keys per bucket, not
// fillSQL's 57600 by 13 ASes): the rollups of
// fillSQL's mix are about as many rows as flows at the flows a seed can
// insert here in a minute or two, and filling them takes minutes.
// Tenants, addresses, ports and protocols are fillSQL's.
func apiFillSQL() (string, error) {
	s := fillSQL
	for _, r := range [][2]string{
		{"bitShiftRight(h, 16) %% 300) AS x", "bitShiftRight(h, 16) %% 30) AS x"},
		{"64600 + intDiv(dst, 4096)", "64600 + intDiv(dst, 25000)"},
		{"toUInt32(1 + bitShiftRight(h, 32) %% 8) AS ifin", "toUInt32(1 + bitShiftRight(h, 32) %% 2) AS ifin"},
		{"toUInt32(1 + dst %% 8) AS ifout", "toUInt32(1 + dst %% 2) AS ifout"},
	} {
		if strings.Count(s, r[0]) != 1 {
			return "", fmt.Errorf("fillSQL has no %q to change", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	return s, nil
}

// fillRollups runs each rollup view's SELECT over flows, a tenant at a
// time (the sort key's prefix: each statement reads only its tenant's
// part of flows, and aggregates a third of it), into its table: the rows
// the view would have written, merged per tenant rather than per insert
// block.
func fillRollups(ctx context.Context, db dbapi.DB) error {
	tenants, err := strings1(ctx, db, "SELECT DISTINCT toString(tenant) FROM flows ORDER BY 1")
	if err != nil {
		return err
	}
	for _, v := range []struct{ view, table string }{{"flows_1m_mv", "flows_1m"}, {"flows_1h_mv", "flows_1h"}} {
		sel, err := viewSelect(ctx, db, v.view)
		if err != nil {
			return err
		}
		// By name, as the view writes: INSERT ... SELECT maps by position.
		cols, err := strings1(ctx, db, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ? AND default_kind NOT IN ('ALIAS', 'MATERIALIZED') ORDER BY position", v.table)
		if err != nil || len(cols) == 0 {
			return fmt.Errorf("the columns of %s: %v", v.table, err)
		}
		list := strings.Join(cols, ", ")
		for _, t := range tenants {
			q := "INSERT INTO " + v.table + " (" + list + ") SELECT " + list + " FROM (" + sel + ")"
			if err := db.Exec(ctx, q, t); err != nil {
				return fmt.Errorf("filling %s from flows: %w", v.table, err)
			}
		}
	}
	return nil
}

// strings1 is the first column of a query's rows.
func strings1(ctx context.Context, db dbapi.DB, q string, args ...any) ([]string, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// viewSelect is the SELECT of a rollup view with its source flows
// narrowed to the tenant ?. It fails unless the view reads
// flows exactly once, so that an edited view is not filled wrong.
func viewSelect(ctx context.Context, db dbapi.DB, view string) (string, error) {
	var sel, database string
	if err := dbapi.QueryRow(ctx, db, []any{&sel, &database}, "SELECT as_select, database FROM system.tables WHERE database = currentDatabase() AND name = ?", view); err != nil {
		return "", fmt.Errorf("the SELECT of %s: %w", view, err)
	}
	from := "FROM " + database + ".flows"
	if strings.Count(sel, from) != 1 {
		return "", fmt.Errorf("the SELECT of %s does not read %q once: %s", view, from, sel)
	}
	return strings.Replace(sel, from, "FROM (SELECT * FROM "+database+".flows WHERE tenant = ?) AS flows", 1), nil
}

// alertsSQL writes %[1]d alerts of the built-in rules with their
// history, as the alert lifecycle (analytics/alerts) writes them, over
// the 30 days ending at unix time %[2]d. Alert n starts at
// end - 30 d + n * 30 d / N (the newest last); its rule (six built-in
// ones, each with its subject labels and annotations) evaluates every
// 10 s (floods, scans) or 60 s (volume, utilisation); it is pending for
// the first two evaluations, fires at the third and resolves after
// 3..62 versions (one per evaluation). The newest %[3]d alerts are
// still active (firing, or pending if younger than three evaluations).
// Tenants t0/t1/t2 take 50/30/20%%; severities info/warning/error/
// critical 5/60/25/10%%; one in ten resolved alerts is acknowledged.
//
// Its rows (%[4]s): one per version kept: for alerts that resolved more
// than a day before the end, the last version only (the
// ReplacingMergeTree has merged the rest); for the others, every
// version from firing on (the pending ones merged). alert_versions has
// a row per version written in the last 3 days (its TTL), each with
// the previous version's updated_at and written_at = its updated_at.
const alertsSQL = `SELECT n, tenant, id, fp, rule, subject_names, subject_values, severity,
  ['classification', 'description', 'summary'] AS annotation_names,
  [rule, concat(rule, ' on ', subject_values[1]), concat(subject_values[1], ': ', rule, ' above its threshold')] AS annotation_values,
  starts, iv, versions, active,
  starts + (v - 1) * iv AS updated,
  if(v > 1, starts + (v - 2) * iv, 0) AS prev,
  v,
  multiIf(v < 3, 'pending', v = versions AND NOT active, 'resolved', 'firing') AS status,
  if(versions >= 3, starts + 2 * iv, 0) AS fired,
  if(NOT active, starts + (versions - 1) * iv, 0) AS alert_end,
  if(v = versions, alert_end, 0) AS ends,
  if(NOT active AND v = versions, starts + (versions - 2) * iv, starts + (v - 1) * iv) AS seen,
  toFloat64(1000 + h %% 100000) AS peak,
  toFloat64(500 + h %% 50000) AS last_value,
  toUInt32(if(NOT active AND v = versions, versions - 1, v)) AS evaluations,
  toUInt32(if(NOT active AND v = versions, 1, 0)) AS missed,
  toUInt8(NOT active AND v = versions AND h %% 10 = 0) AS acked
FROM (
  SELECT n, h, tenant, rule, subject_names, subject_values, severity, fp, id, starts, iv, active, versions, v
  FROM (
    SELECT n, h, tenant, rule, subject_names, subject_values, severity, fp,
      concat(fp, '-', lower(hex(toUInt32(bitOr(intHash32(n), 2147483648))))) AS id,
      starts, iv, active,
      if(active, greatest(1, least(nv, intDiv(%[2]d - starts, iv) + 1)), nv) AS versions
    FROM (
      SELECT number AS n, intHash64(number + 7) AS h,
        multiIf(h %% 10 < 5, 't0', h %% 10 < 8, 't1', 't2') AS tenant,
        intDiv(h, 10) %% 6 AS r,
        ['syn_flood', 'udp_flood', 'amplification', 'port_scan', 'volume_destination', 'interface_utilisation'][r + 1] AS rule,
        toUInt32(bitShiftRight(h, 20) %% 50000) AS dst,
        IPv4NumToString(toUInt32(1681915904 + dst)) AS dst_text,
        multiIf(r = 3, ['dst_address', 'src_address'], r = 5, ['direction', 'exporter_address', 'if_index'], ['dst_address']) AS subject_names,
        multiIf(r = 3, [dst_text, IPv4NumToString(toUInt32(bitShiftRight(h, 32)))],
                r = 5, [if(h %% 2 = 0, 'in', 'out'), IPv4NumToString(toUInt32(167837696 + dst %% 300)), toString(1 + dst %% 8)],
                [dst_text]) AS subject_values,
        multiIf(bitShiftRight(h, 40) %% 100 < 5, 'info', bitShiftRight(h, 40) %% 100 < 65, 'warning', bitShiftRight(h, 40) %% 100 < 90, 'error', 'critical') AS severity,
        lower(hex(bitOr(intHash64(h), toUInt64(9223372036854775808)))) AS fp,
        toUInt32(%[2]d - 2592000 + intDiv(number * 2592000, %[1]d) + bitShiftRight(h, 48) %% 20) AS starts,
        toUInt32(if(r >= 4, 60, 10)) AS iv,
        number >= %[1]d - %[3]d AS active,
        toUInt32(3 + bitShiftRight(h, 24) %% 60) AS nv
      FROM system.numbers LIMIT %[1]d
    )
  )
  ARRAY JOIN range(1, versions + 1) AS v
)`

// seedAlerts writes the alerts (alertsSQL) into alerts and alert_versions.
func seedAlerts(ctx context.Context, db dbapi.DB, n int, end time.Time) error {
	const active = 300
	e := end.Unix()
	src := func(keep string) string {
		return "SELECT * FROM (" + fmt.Sprintf(alertsSQL, n, e, min(active, n), keep) + ") WHERE " + keep
	}
	// The rows kept in alerts: the last version of alerts resolved more
	// than a day ago; every version from firing on of the others.
	keepAlerts := fmt.Sprintf("(v = versions OR (alert_end = 0 OR alert_end > %d - 86400) AND v >= 3)", e)
	qa := `INSERT INTO alerts (tenant, id, fingerprint, rule, subject_names, subject_values, severity, label_names, label_values,
  annotation_names, annotation_values, status, starts_at, fired_at, ends_at, updated_at, last_seen_at, last_value, peak_value,
  evaluations, missed, acknowledged, acknowledged_by, acknowledged_at, version)
SELECT tenant, id, fp, rule, subject_names, subject_values, severity, arrayMap(x -> toString(x), []), arrayMap(x -> toString(x), []),
  annotation_names, annotation_values, status, toDateTime(starts, 'UTC'), toDateTime(fired, 'UTC'), toDateTime(ends, 'UTC'),
  toDateTime(updated, 'UTC'), toDateTime(seen, 'UTC'), last_value, peak, evaluations, missed, acked, if(acked, 'noc', ''),
  toDateTime(if(acked, ends, 0), 'UTC'), toUInt64(v)
FROM (` + src(keepAlerts) + ")"
	keepVersions := fmt.Sprintf("updated > %d - 259200", e)
	qv := `INSERT INTO alert_versions (tenant, id, version, rule, subject_names, subject_values, severity, status, acknowledged,
  updated_at, prev_updated_at, written_at)
SELECT tenant, id, toUInt64(v), rule, subject_names, subject_values, severity, status, acked,
  toDateTime(updated, 'UTC'), toDateTime(prev, 'UTC'), toDateTime(updated, 'UTC')
FROM (` + src(keepVersions) + ")"
	for _, q := range []string{qa, qv} {
		if err := db.Exec(ctx, q); err != nil {
			return fmt.Errorf("seeding alerts: %w", err)
		}
	}
	return nil
}

// count reads the seeded sizes back.
func (s *APISeed) count(ctx context.Context, db dbapi.DB) error {
	for _, c := range []struct {
		q    string
		dest any
	}{
		{"SELECT count() FROM flows", &s.FlowRows},
		{"SELECT count() FROM flows_1m", &s.Flows1mRows},
		{"SELECT count() FROM flows_1h", &s.Flows1hRows},
		{"SELECT count() FROM system.parts WHERE active AND database = currentDatabase() AND table = 'flows'", &s.FlowsParts},
		{"SELECT count() FROM alerts", &s.AlertRows},
		{"SELECT uniqExact(tenant, id) FROM alerts", &s.Alerts},
		{"SELECT count() FROM alert_versions", &s.VersionRows},
		{"SELECT count() FROM (SELECT argMax(status, version) AS s FROM alerts GROUP BY tenant, id) WHERE s IN ('pending', 'firing')", &s.Active},
	} {
		if err := dbapi.QueryRow(ctx, db, []any{c.dest}, c.q); err != nil {
			return fmt.Errorf("counting the seed (%s): %w", c.q, err)
		}
	}
	rows, err := db.Query(ctx, "SELECT tenant, uniqExact(id) FROM alerts GROUP BY tenant ORDER BY tenant")
	if err != nil {
		return err
	}
	defer rows.Close()
	s.PerTenant = map[string]uint64{}
	for rows.Next() {
		var t string
		var n uint64
		if err := rows.Scan(&t, &n); err != nil {
			return err
		}
		s.PerTenant[t] = n
	}
	return rows.Err()
}

// apiSeedWorker is the child process that seeds the embedded engine's
// directory (the engine boots once per process; its memory goes with
// the child) and writes the APISeed as JSON to ao.seedWorker.
func apiSeedWorker(o options, ao apiOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	lib, err := filepath.Abs(o.library)
	if err != nil {
		return err
	}
	cfg := store.DefaultConfig()
	cfg.Database = apiDatabase
	cfg.Embedded.Library, cfg.Embedded.Path = lib, ao.seedDir
	db, err := store.OpenEmbedded(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		return err
	}
	s, err := seedAPI(ctx, db, ao, time.Unix(ao.seedEnd, 0).UTC())
	if err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(ao.seedWorker, b, 0o644)
}

// seedEmbedded runs apiSeedWorker on dir in a child process.
func seedEmbedded(ctx context.Context, o options, ao apiOptions, dir string, end time.Time) (*APISeed, error) {
	out, err := os.CreateTemp("", "flowbench-apiseed-*.json")
	if err != nil {
		return nil, err
	}
	out.Close()
	defer os.Remove(out.Name())
	cmd := exec.CommandContext(ctx, os.Args[0], "-api-seed-worker="+out.Name(), "-api-seed-dir="+dir,
		"-api-seed-end="+strconv.FormatInt(end.Unix(), 10), "-library="+o.library,
		"-api-history-rows="+strconv.FormatUint(ao.historyRows, 10), "-api-alerts="+strconv.Itoa(ao.alerts),
		"-api-seed-chunk="+strconv.FormatUint(ao.chunk, 10), "-api-seed-parallel="+strconv.Itoa(ao.parallel))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		return nil, err
	}
	var s APISeed
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.Alerts == 0 || s.FlowRows == 0 {
		return nil, errors.New("seeding wrote no alerts or no flows")
	}
	return &s, nil
}

// seedServer starts a ClickHouse server (chtest), seeds its database
// apiDatabase from this process and gives the target serve runs on; the
// returned func stops the server.
func seedServer(ctx context.Context, ao apiOptions, end time.Time, res *APIEngine) (storeTarget, func(), error) {
	srv, err := chtest.Start(ctx, chtest.Options{})
	if err != nil {
		return storeTarget{}, nil, err
	}
	fail := func(err error) (storeTarget, func(), error) { srv.Stop(); return storeTarget{}, nil, err }
	if err := srv.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+apiDatabase); err != nil {
		return fail(err)
	}
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = srv.Addr(), apiDatabase
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "api: seeding %d flows and %d alerts (server %s)\n", ao.historyRows, ao.alerts, srv.Version())
	if res.Seed, err = seedAPI(ctx, db, ao, end); err != nil {
		return fail(err)
	}
	return storeTarget{name: "server " + srv.Version(), addr: srv.Addr()}, func() { _ = srv.Stop() }, nil
}
