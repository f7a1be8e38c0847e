package rules

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/notify"
)

// UtilisationParams are the parameters of interface_utilisation.
type UtilisationParams struct {
	// Threshold is the share of the interface's speed (0.9 is 90%) every
	// poll of the last Duration must reach, in one direction.
	Threshold float64       `mapstructure:"threshold" yaml:"threshold"`
	Duration  time.Duration `mapstructure:"duration" yaml:"duration"`
	// MinPolls: valid polls needed in Duration (missed polls, the first
	// after a restart or a counter reset have no rate).
	MinPolls int `mapstructure:"min_polls" yaml:"min_polls"`
}

// Validate names the wrong keys.
func (p UtilisationParams) Validate() error {
	var errs []error
	if !(p.Threshold > 0 && p.Threshold <= 2) {
		errs = append(errs, fmt.Errorf("threshold: %g is outside (0, 2] (a share of the speed: 0.9 is 90%%)", p.Threshold))
	}
	if p.Duration < time.Minute {
		errs = append(errs, fmt.Errorf("duration: %s is shorter than 1m (counters are polled every minute)", p.Duration))
	}
	if p.MinPolls < 1 {
		errs = append(errs, fmt.Errorf("min_polls: %d is below 1", p.MinPolls))
	}
	return errors.Join(errs...)
}

// InterfaceUtilisation finds interfaces running near their speed, from the
// interface counters (SNMP polls or sFlow counter samples).
var InterfaceUtilisation = Kind[UtilisationParams]{
	Name: "interface_utilisation",
	Description: "Interface utilisation from SNMP counters (ifHCInOctets/ifHCOutOctets) or sFlow counter samples, one source per interface: " +
		"every valid poll of the last duration at or above threshold of the interface's speed, in either direction, with at least min_polls polls.",
	Defaults: func() Builtin[UtilisationParams] {
		return Builtin[UtilisationParams]{
			Enabled: true, Interval: time.Minute, Timeout: 30 * time.Second, Severity: notify.SeverityWarning,
			KeepFiringFor: For(2 * time.Minute),
			Params:        UtilisationParams{Threshold: 0.9, Duration: 5 * time.Minute, MinPolls: 3},
		}
	},
	Config: func(c *BuiltinConfig) *Builtin[UtilisationParams] { return &c.InterfaceUtilisation },
	New:    func(Deps) (Evaluator[UtilisationParams], error) { return utilisation{}, nil },
}

type utilisation struct{}

func (utilisation) Evaluate(ctx context.Context, env *Env[UtilisationParams]) ([]Finding, error) {
	if len(env.Tenants) == 0 {
		return nil, nil
	}
	q := utilisationQuery(env)
	rows, err := env.DB.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("interface utilisation: %w", err)
	}
	defer rows.Close()
	var findings []Finding
	for rows.Next() {
		var tenant, exporter, source, ifName, ifAlias string
		var ifIndex uint32
		var d uint8
		var polls, speed uint64
		var low, mean float64
		if err := rows.Scan(&tenant, &exporter, &ifIndex, &d, &source, &polls, &low, &mean, &speed, &ifName, &ifAlias); err != nil {
			return nil, fmt.Errorf("interface utilisation: %w", err)
		}
		p := env.Params(tenant)
		if low/100 < p.Threshold || polls < uint64(p.MinPolls) {
			continue
		}
		findings = append(findings, utilisationFinding(tenant, ParseAddr(exporter), ifIndex, ifName, ifAlias, source, d == 1, polls, low/100, mean/100, speed, p))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("interface utilisation: %w", err)
	}
	return findings, nil
}

// utilisationQuery finds the interface directions whose every valid poll
// of their tenant's duration is at or above the loosest threshold of the
// run's tenants (the tenant's own is applied in Go, on the lowest poll),
// with their names from the interfaces table. interface_counters keeps
// utilisation in percent.
//
// An interface may have rows of two sources, SNMP polls and sFlow
// counter samples: one source decides, never a mix (the two series
// interleave, and "every poll" of a mix would count each period twice
// with different counters). It is the source with more valid samples in
// the window, sFlow on a tie: that is sFlow where the agent sends counter
// samples (every 20-30 s, finer than the minute's poll, and so a
// stronger "every sample"), and SNMP where sFlow has just started or
// stopped.
func utilisationQuery(env *Env[UtilisationParams]) string {
	minThreshold, minPolls := math.Inf(1), math.MaxInt
	for _, t := range env.Tenants {
		p := env.Params(t)
		minThreshold = min(minThreshold, p.Threshold)
		minPolls = min(minPolls, p.MinPolls)
	}
	to := env.Now.Unix()
	tenants := TenantIn("tenant", env.Tenants)
	return fmt.Sprintf(`SELECT tenant, %s AS exporter, if_index, d, src, polls, low, mean, speed, if_name, if_alias
FROM (
    SELECT tenant, exporter_address, if_index, d, argMax(source, rank) AS src, argMax(n, rank) AS polls,
        argMax(lo, rank) AS low, argMax(av, rank) AS mean, argMax(sp, rank) AS speed
    FROM (
        SELECT tenant, exporter_address, if_index, d, source, count() AS n, min(u) AS lo, avg(u) AS av,
            max(speed_mbps) AS sp, n * 2 + (source = 'sflow') AS rank
        FROM (
            SELECT tenant, exporter_address, if_index, source, speed_mbps, arrayJoin([1, 2]) AS d,
                if(d = 1, in_utilisation, out_utilisation) AS u
            FROM interface_counters
            WHERE %s AND valid = 1 AND time >= %s AND time < toDateTime(%d, 'UTC')
        )
        GROUP BY tenant, exporter_address, if_index, d, source
    )
    GROUP BY tenant, exporter_address, if_index, d
    HAVING low >= %s AND polls >= %d
) AS c ANY LEFT JOIN (
    SELECT tenant, exporter_address, if_index, argMax(if_name, updated_at) AS if_name, argMax(if_alias, updated_at) AS if_alias
    FROM interfaces
    WHERE %s
    GROUP BY tenant, exporter_address, if_index
) AS i USING (tenant, exporter_address, if_index)
ORDER BY tenant, exporter, if_index, d`,
		AddrText("exporter_address"), tenants, perTenantFrom(env), to,
		strconv.FormatFloat(minThreshold*100, 'g', -1, 64), minPolls, tenants)
}

// perTenantFrom is the start of each tenant's window as SQL: one
// constant when every tenant has the same duration.
func perTenantFrom(env *Env[UtilisationParams]) string {
	from := func(d time.Duration) string {
		return fmt.Sprintf("toDateTime(%d, 'UTC')", env.Now.Add(-d).Unix())
	}
	base := env.base.Duration
	var cases []string
	for _, t := range env.Tenants {
		if d := env.Params(t).Duration; d != base {
			cases = append(cases, TenantIn("tenant", []string{t}), from(d))
		}
	}
	if len(cases) == 0 {
		return from(base)
	}
	return "multiIf(" + strings.Join(cases, ", ") + ", " + from(base) + ")"
}

func utilisationFinding(tenant, exporter string, ifIndex uint32, ifName, ifAlias, source string, in bool, polls uint64, low, mean float64, speed uint64, p UtilisationParams) Finding {
	dir := "out"
	if in {
		dir = "in"
	}
	idx := strconv.FormatUint(uint64(ifIndex), 10)
	name := interfaceName(exporter, "", idx, ifName, ifAlias)
	summary := fmt.Sprintf("%s %s at %.0f%% of %s for %s (%d polls, lowest %.0f%%)",
		name, dir, mean*100, HumanBits(float64(speed)*1e6), p.Duration, polls, low*100)
	dirName := map[bool]string{true: "In", false: "Out"}[in]
	desc := fmt.Sprintf("Every valid SNMP poll of the last %s (ifHC%sOctets) is at or above %.0f%% of the interface's speed.",
		p.Duration, dirName, p.Threshold*100)
	if source == "sflow" {
		desc = fmt.Sprintf("Every valid sFlow counter sample of the last %s (if%sOctets) is at or above %.0f%% of the interface's speed.",
			p.Duration, dirName, p.Threshold*100)
	}
	return Finding{Tenant: tenant, Instance: alerts.Instance{
		Labels: map[string]string{"exporter_address": exporter, "if_index": idx, "direction": dir},
		Value:  mean,
		Annotations: map[string]string{
			"summary":         summary,
			"description":     desc,
			"utilisation":     strconv.FormatFloat(mean, 'f', 3, 64),
			"min_utilisation": strconv.FormatFloat(low, 'f', 3, 64),
			"polls":           strconv.FormatUint(polls, 10),
			"speed_mbps":      strconv.FormatUint(speed, 10),
			"if_name":         ifName,
			"if_alias":        ifAlias,
			"source":          source,
		},
	}}
}
