package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/notify"
)

// SQLRule is a user's rule: a query whose every row is a firing
// instance. Columns:
//   - tenant (optional): the row's tenant. Without it, the rule must be
//     scoped to exactly one tenant, which every row belongs to.
//   - the subject columns (subject): what the alert is about, its
//     identity (dst_address, exporter, ...).
//   - the value column (value, by default "value"): a number.
//   - severity (optional): critical, error, warning or info, overriding
//     the rule's for that row.
//   - every other column: shown as an annotation of that name, and given
//     to annotation templates as .Columns.
//
// The query runs through the same read-only guard as the query endpoint.
type SQLRule struct {
	Name          string            `mapstructure:"name" yaml:"name"`
	Query         string            `mapstructure:"query" yaml:"query"`
	Interval      time.Duration     `mapstructure:"interval" yaml:"interval"`
	Timeout       time.Duration     `mapstructure:"timeout" yaml:"timeout"`
	Severity      notify.Severity   `mapstructure:"severity" yaml:"severity"`
	For           Hold              `mapstructure:"for" yaml:"for"`
	KeepFiringFor Hold              `mapstructure:"keep_firing_for" yaml:"keep_firing_for"`
	Tenants       []string          `mapstructure:"tenants" yaml:"tenants"`
	Subject       []string          `mapstructure:"subject" yaml:"subject"`
	Value         string            `mapstructure:"value" yaml:"value"`
	Labels        map[string]string `mapstructure:"labels" yaml:"labels"`
	Annotations   map[string]string `mapstructure:"annotations" yaml:"annotations"`
}

// Defaults of SQL rules.
const (
	DefaultSQLInterval = time.Minute
	DefaultSQLSeverity = notify.SeverityWarning
	DefaultSQLValue    = "value"
)

func (r SQLRule) withDefaults() SQLRule {
	if r.Interval == 0 {
		r.Interval = DefaultSQLInterval
	}
	if r.Timeout == 0 {
		r.Timeout = min(r.Interval, 30*time.Second)
	}
	if r.Severity == "" {
		r.Severity = DefaultSQLSeverity
	}
	if r.Value == "" {
		r.Value = DefaultSQLValue
	}
	return r
}

func (r SQLRule) validate(key string) []error {
	r = r.withDefaults()
	var errs []error
	if !ruleName.MatchString(r.Name) {
		errs = append(errs, fmt.Errorf("%s.name: %q is not a rule name ([a-zA-Z_][a-zA-Z0-9_]*)", key, r.Name))
	}
	if strings.TrimSpace(r.Query) == "" {
		errs = append(errs, fmt.Errorf("%s.query: is empty", key))
	}
	if len(r.Subject) == 0 {
		errs = append(errs, fmt.Errorf("%s.subject: names no column (the columns that say what an alert is about)", key))
	}
	for _, c := range r.Subject {
		if c == "tenant" || c == r.Value || c == "severity" {
			errs = append(errs, fmt.Errorf("%s.subject: %q cannot be a subject column", key, c))
		} else if !labelName.MatchString(c) {
			errs = append(errs, fmt.Errorf("%s.subject: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", key, c))
		}
	}
	errs = append(errs, validateCommon(key, r.Interval, r.Timeout, r.Severity, r.For, r.KeepFiringFor, r.Labels)...)
	for name, text := range r.Annotations {
		if _, err := template.New(name).Parse(text); err != nil {
			errs = append(errs, fmt.Errorf("%s.annotations.%s: %v", key, name, err))
		}
	}
	return errs
}

// sqlShape is what the dry run learnt of a query's columns.
type sqlShape struct {
	hasTenant, hasSeverity bool
	extra                  []string // other columns, in query order
}

func (r SQLRule) build(string) *scheduled {
	var shape sqlShape
	var runQuery string
	tmpl := map[string]*template.Template{}
	for name, text := range r.Annotations {
		tmpl[name] = template.Must(template.New(name).Option("missingkey=zero").Parse(text)) // validated
	}
	s := &scheduled{
		name: r.Name, kind: "sql", interval: r.Interval, timeout: r.Timeout, scope: r.Tenants,
		rule: func(tenant string) alerts.Rule {
			return alerts.Rule{Tenant: tenant, Name: r.Name, Severity: r.Severity, Labels: r.Labels,
				For: r.For.alerts(), KeepFiringFor: r.KeepFiringFor.alerts()}
		},
	}
	s.prepare = func(ctx context.Context, db dbapi.Querier) error {
		var err error
		shape, err = r.dryRun(ctx, db)
		if err != nil {
			return err
		}
		runQuery = r.wrapped(shape)
		return nil
	}
	s.evaluate = func(ec evalContext) ([]Finding, error) {
		if runQuery == "" {
			return nil, errors.New("the query was not checked against the engine")
		}
		return r.evaluate(ec, shape, runQuery, tmpl)
	}
	return s
}

// dryRun has the engine check the query (through the guard of the
// reader) and describe its columns, reading nothing.
func (r SQLRule) dryRun(ctx context.Context, db dbapi.Querier) (sqlShape, error) {
	rows, err := db.Query(ctx, "SELECT * FROM ("+r.Query+") LIMIT 0")
	if err != nil {
		return sqlShape{}, fmt.Errorf("the engine refuses the query: %w", err)
	}
	cols := rows.Columns()
	rows.Close()
	var shape sqlShape
	for _, c := range cols {
		switch {
		case c == "tenant":
			shape.hasTenant = true
		case c == "severity":
			shape.hasSeverity = true
		case c == r.Value || slices.Contains(r.Subject, c):
		default:
			shape.extra = append(shape.extra, c)
		}
	}
	var errs []error
	for _, want := range append(slices.Clone(r.Subject), r.Value) {
		if !slices.Contains(cols, want) {
			errs = append(errs, fmt.Errorf("the query returns no column %q (it returns %s)", want, strings.Join(cols, ", ")))
		}
	}
	if !shape.hasTenant && len(r.Tenants) != 1 {
		errs = append(errs, errors.New("the query returns no tenant column: return one, or scope the rule to exactly one tenant (tenants: [name])"))
	}
	return shape, errors.Join(errs...)
}

// wrapped selects the columns in a fixed order and as text, so that any
// query's rows scan the same way.
func (r SQLRule) wrapped(shape sqlShape) string {
	var cols []string
	if shape.hasTenant {
		cols = append(cols, "toString(`tenant`)")
	}
	for _, c := range r.Subject {
		cols = append(cols, "toString("+ident(c)+")")
	}
	cols = append(cols, "toFloat64("+ident(r.Value)+")")
	if shape.hasSeverity {
		cols = append(cols, "toString(`severity`)")
	}
	for _, c := range shape.extra {
		cols = append(cols, "toString("+ident(c)+")")
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM (" + r.Query + ")"
}

func ident(s string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(s) + "`"
}

// maxSQLFindings bounds the rows one run of a SQL rule may turn into
// instances: a query that returns a row per flow is a mistake, not a
// million alerts.
const maxSQLFindings = 10000

func (r SQLRule) evaluate(ec evalContext, shape sqlShape, q string, tmpl map[string]*template.Template) ([]Finding, error) {
	rows, err := ec.db.Query(ec.ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Finding
	for rows.Next() {
		if len(out) == maxSQLFindings {
			return nil, fmt.Errorf("the query returned more than %d rows", maxSQLFindings)
		}
		f, err := r.scanRow(rows, shape, tmpl)
		if err != nil {
			return nil, err
		}
		if f.Tenant == "" {
			f.Tenant = r.Tenants[0]
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

func (r SQLRule) scanRow(rows dbapi.Rows, shape sqlShape, tmpl map[string]*template.Template) (Finding, error) {
	var f Finding
	var value float64
	subject := make([]string, len(r.Subject))
	extra := make([]string, len(shape.extra))
	var severity string
	dest := []any{}
	if shape.hasTenant {
		dest = append(dest, &f.Tenant)
	}
	for i := range subject {
		dest = append(dest, &subject[i])
	}
	dest = append(dest, &value)
	if shape.hasSeverity {
		dest = append(dest, &severity)
	}
	for i := range extra {
		dest = append(dest, &extra[i])
	}
	if err := rows.Scan(dest...); err != nil {
		return f, err
	}
	f.Labels = make(map[string]string, len(subject))
	for i, c := range r.Subject {
		f.Labels[c] = ParseAddr(subject[i])
	}
	f.Value = value
	if s := notify.Severity(severity); s.Valid() {
		f.Severity = s
	}
	columns := make(map[string]string, len(extra))
	for i, c := range shape.extra {
		columns[c] = ParseAddr(extra[i])
	}
	f.Annotations = maps.Clone(columns)
	data := map[string]any{"Tenant": f.Tenant, "Rule": r.Name, "Labels": f.Labels, "Value": value, "Columns": columns}
	for name, t := range tmpl {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err == nil {
			f.Annotations[name] = b.String()
		}
	}
	if _, ok := f.Annotations[notify.AnnotationSummary]; !ok {
		f.Annotations[notify.AnnotationSummary] = defaultSummary(r.Name, r.Subject, f.Labels, value)
	}
	return f, nil
}

func defaultSummary(rule string, order []string, labels map[string]string, value float64) string {
	parts := make([]string, 0, len(order))
	for _, c := range order {
		parts = append(parts, c+"="+labels[c])
	}
	return fmt.Sprintf("%s: %s: value %s", rule, strings.Join(parts, " "), strconv.FormatFloat(value, 'g', 6, 64))
}
