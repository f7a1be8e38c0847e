package store

import (
	"fmt"
	"strconv"
	"strings"
)

// This file decides whether an analyst's query may run on the embedded
// engine. The decision is taken on the engine's own parse of the query,
// never on a lexer of ours: ClickHouse's lexer skips Unicode whitespace,
// knows heredocs ($$...$$), nested comments and backslash escapes, and any
// lexer of ours that differs from it in one corner is a way around a text
// check (two were found). The engine parses the query twice for us:
//
//  1. formatQuerySingleLine('<the query as one string literal>') parses it
//     as exactly one statement (several are a syntax error) and returns it
//     in canonical form. The query is only ever data here, quoted by
//     quoteString, so nothing in it can run.
//  2. EXPLAIN AST <canonical form> dumps the tree the engine built. The
//     statement that runs is that canonical form, so the tree checked is
//     the tree executed.
//
// checkTree below walks the dump against allowlists. Every rule looks at
// one line and its depth only, never at which line is its parent: the
// dump prints identifiers and aliases raw, so a quoted identifier with a
// line break in it can add lines (never remove one), and context-free
// rules make an added line able to cause a refusal, never to hide a node.

// RefusedError is a query the read-only policy does not let run.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

func refuse(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// InvalidQueryError is the engine's refusal to parse a query (a syntax
// error, several statements, a query parameter without a value, ...): the
// query's fault, as opposed to a failure while it runs. It wraps the
// engine's *clickhouse.Exception.
type InvalidQueryError struct{ Err error }

func (e *InvalidQueryError) Error() string { return e.Err.Error() }
func (e *InvalidQueryError) Unwrap() error { return e.Err }

// Statement is a query the policy accepted, ready to run.
type Statement struct {
	// Kind is the engine's name of the statement (SelectWithUnionQuery,
	// ShowTables, DescribeQuery, Explain, ...).
	Kind string
	// Format is the statement's FORMAT clause, or "" when it has none.
	Format string
	// text is the engine's canonical form of the query: what runs.
	text string
}

// readOnlyKinds are the statements an analyst may run: SELECT (with
// WITH, UNION, INTERSECT, EXCEPT), SHOW, DESCRIBE, EXISTS and EXPLAIN.
// The names are those of ClickHouse's AST nodes (EXPLAIN AST).
var readOnlyKinds = map[string]bool{
	"SelectWithUnionQuery":       true,
	"SelectIntersectExceptQuery": true,
	"ShowTables":                 true, // SHOW TABLES, DATABASES, DICTIONARIES, CLUSTERS, SETTINGS
	"ShowColumns":                true,
	"ShowIndexes":                true,
	"ShowFunctions":              true,
	"ShowEngineQuery":            true,
	"ShowProcesslistQuery":       true,
	"ShowCreateTableQuery":       true,
	"ShowCreateDatabaseQuery":    true,
	"ShowCreateViewQuery":        true,
	"ShowCreateDictionaryQuery":  true,
	"DescribeQuery":              true,
	"ExistsTableQuery":           true,
	"ExistsDatabaseQuery":        true,
	"ExistsViewQuery":            true,
	"ExistsDictionaryQuery":      true,
	"Explain":                    true,
	"ShowSetting":                true,
}

// readOnlyPrefixes are how the canonical form of an allowed statement
// starts. The canonical form is the engine's output, in its spelling;
// this is checked before EXPLAIN AST so that no other kind of statement is
// ever handed to EXPLAIN (see checkCanonical).
var readOnlyPrefixes = []string{"SELECT ", "WITH ", "(", "SHOW ", "DESCRIBE ", "DESC ", "EXISTS ", "EXPLAIN "}

// explainKinds are the EXPLAIN variants allowed: they show how a query
// would run and run nothing.
var explainKinds = map[string]bool{
	"EXPLAIN": true, "EXPLAIN AST": true, "EXPLAIN SYNTAX": true, "EXPLAIN QUERY TREE": true,
	"EXPLAIN PLAN": true, "EXPLAIN PIPELINE": true, "EXPLAIN ESTIMATE": true,
}

// allowedTableFunctions generate rows and touch nothing outside the
// engine. Every other table function is refused: file, url, s3, remote,
// cluster, executable, input, mysql, postgresql, jdbc, odbc, hdfs, merge,
// dictionary, view, format, ... (the engine's full list is read from
// system.table_functions when the handle opens, so new ones are refused
// too).
var allowedTableFunctions = map[string]bool{
	"numbers": true, "numbers_mt": true, "zeros": true, "zeros_mt": true,
	"generate_series": true, "generateseries": true, "primes": true,
	"values": true, "null": true,
}

// knownTableFunctions backs up system.table_functions: the ones that
// reach files, the network or programs, refused even if the engine's list
// could not be read.
var knownTableFunctions = []string{
	"file", "filecluster", "url", "urlcluster", "remote", "remotesecure", "cluster", "clusterallreplicas",
	"s3", "s3cluster", "gcs", "oss", "cosn", "hdfs", "hdfscluster", "azureblobstorage", "azureblobstoragecluster",
	"executable", "input", "mysql", "postgresql", "jdbc", "odbc", "sqlite", "mongodb", "redis", "ytsaurus",
	"iceberg", "icebergs3", "iceberglocal", "deltalake", "hudi", "paimon", "dictionary", "merge", "view",
	"viewifpermitted", "viewexplain", "format", "loop", "eval", "filesystem", "arrowstream", "generaterandom",
	"fuzzquery", "fuzzjson", "prometheusquery", "prometheusqueryrange", "timeseriesdata",
}

// refusedTables are system tables that harm the process the embedded
// engine runs in.
var refusedTables = map[string]string{
	// Reading trace signals every thread of the process to unwind its
	// stack, Go's threads too: the Go runtime crashes (SIGSEGV while it
	// scans stacks), and the collector with it.
	"system.stack_trace": "reading it signals every thread of flowhouse's process, which crashes the Go runtime",
	// The symbols of the whole engine: hundreds of MB to build.
	"system.symbols": "it builds the symbol table of the whole engine (hundreds of MB)",
}

// refusedFunctions are scalar functions that read files, dictionaries
// (whose sources may be files, URLs or programs), Join tables or models
// from outside the query.
var refusedFunctions = map[string]string{
	"file":                     "reads files",
	"joinget":                  "reads Join tables",
	"joingetornull":            "reads Join tables",
	"catboostevaluate":         "loads a model from a file",
	"modelevaluate":            "loads a model",
	"addresstoline":            "reads the binary",
	"addresstolinewithinlines": "reads the binary",
	"addresstosymbol":          "reads the binary",
	"demangle":                 "is an introspection function",
}

// parsedLine is one line of an EXPLAIN AST dump.
type parsedLine struct {
	depth int
	kind  string // node type: Function, Literal, Identifier, SelectQuery, ...
	rest  string // after the type: a function's name, a literal, ...
}

func parseDumpLine(line string) parsedLine {
	trimmed := strings.TrimLeft(line, " ")
	p := parsedLine{depth: len(line) - len(trimmed)}
	p.kind, p.rest, _ = strings.Cut(trimmed, " ")
	return p
}

// firstWord is the name of a Function line: "count (children 1)" → count.
func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

// checkCanonical refuses a canonical form that is not one of the allowed
// kinds of statement. EXPLAIN parses some kinds of statement (CREATE, for
// one) without their INTO OUTFILE clause, which then belongs to the
// EXPLAIN itself and would write its output to the file: so only the
// kinds whose parse keeps their own output clause reach EXPLAIN.
func checkCanonical(canonical string) error {
	for _, p := range readOnlyPrefixes {
		if strings.HasPrefix(canonical, p) {
			return nil
		}
	}
	word, _, _ := strings.Cut(canonical, " ")
	return refuse("only read-only queries are allowed (SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN), not %s", word)
}

// checkTree walks an EXPLAIN AST dump. tableFunctions holds the lowercase
// names of every table function the engine has, formats those of its
// output formats.
func checkTree(dump []string, tableFunctions, formats map[string]bool) (kind, format string, err error) {
	if len(dump) == 0 {
		return "", "", refuse("the engine returned no syntax tree for the query")
	}
	lines := make([]parsedLine, len(dump))
	for i, l := range dump {
		lines[i] = parseDumpLine(l)
	}
	root := lines[0]
	if root.depth != 0 || !readOnlyKinds[root.kind] {
		return "", "", refuse("only read-only queries are allowed (SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN), not %s", root.kind)
	}
	// outputDepth is where the output clauses of the statement live:
	// INTO OUTFILE (a Literal), FORMAT (an Identifier), SETTINGS (a Set);
	// under EXPLAIN, at 1 for the EXPLAIN's own and 2 for its statement's.
	outputDepth := 1
	if root.kind == "Explain" {
		if err := checkExplain(root, lines); err != nil {
			return "", "", err
		}
		outputDepth = 2
	}
	for i, l := range lines[1:] {
		if l.depth == 0 {
			return "", "", errLineBreaks
		}
		if err := checkNode(l, i+1, root, outputDepth, tableFunctions); err != nil {
			return "", "", err
		}
		// Which format the output is in matters only for the answer's
		// Content-Type; no decision depends on it.
		if l.kind == "Identifier" && l.depth <= outputDepth && formats[strings.ToLower(firstWord(l.rest))] {
			format = firstWord(l.rest)
		}
	}
	if err := checkShape(lines); err != nil {
		return "", "", err
	}
	return root.kind, format, nil
}

var errLineBreaks = refuse("the query has identifiers or aliases with line breaks, which are not allowed")

// checkNode applies the rules that hold for every node.
func checkNode(l parsedLine, index int, root parsedLine, outputDepth int, tableFunctions map[string]bool) error {
	switch l.kind {
	case "Function":
		name := strings.ToLower(firstWord(l.rest))
		if why, ok := refusedFunctions[name]; ok {
			return refuse("the function %s is not allowed: it %s", firstWord(l.rest), why)
		}
		if strings.HasPrefix(name, "dict") {
			return refuse("dictionary functions (%s) are not allowed: a dictionary's source may be a file, a URL or a program", firstWord(l.rest))
		}
		if tableFunctions[name] && !allowedTableFunctions[name] {
			return refuse("the table function %s is not allowed: only %s", firstWord(l.rest), allowedTableFunctionList())
		}
	case "TableIdentifier":
		name := strings.ToLower(firstWord(l.rest))
		if why, ok := refusedTables[name]; ok {
			return refuse("the table %s is not allowed: %s", firstWord(l.rest), why)
		}
	case "Literal":
		if l.depth == 1 || l.depth == outputDepth {
			return refuse("INTO OUTFILE is not allowed")
		}
	case "Set":
		// EXPLAIN's own options (EXPLAIN header = 1, ...) are its first child.
		if root.kind == "Explain" && l.depth == 1 && index == 1 {
			return nil
		}
		return refuse("SETTINGS are not allowed in queries: the limits of this endpoint are fixed by its configuration")
	}
	return nil
}

// checkExplain allows EXPLAIN of one allowed statement, not of another
// EXPLAIN.
func checkExplain(root parsedLine, lines []parsedLine) error {
	variant := strings.TrimSpace(root.rest)
	if i := strings.Index(variant, " (children"); i >= 0 {
		variant = variant[:i]
	}
	if !explainKinds[variant] {
		return refuse("%s is not allowed (only %s)", variant, "EXPLAIN, EXPLAIN AST, SYNTAX, QUERY TREE, PLAN, PIPELINE, ESTIMATE")
	}
	for _, l := range lines[1:] {
		if l.depth != 1 || l.kind == "Set" {
			continue
		}
		if l.kind == "Explain" || !readOnlyKinds[l.kind] {
			return refuse("EXPLAIN of %s is not allowed", l.kind)
		}
		return nil
	}
	return refuse("the engine returned no statement under EXPLAIN")
}

// checkShape refuses a dump that is not a well-formed tree: each node's
// "(children N)" matches the lines under it. Only a line break inside an
// identifier or alias breaks this; refusing such queries costs analysts
// nothing.
func checkShape(lines []parsedLine) error {
	type node struct{ want, got int }
	var open []node // the ancestors of the current line, by depth
	closeTo := func(depth int) error {
		for len(open) > depth {
			n := open[len(open)-1]
			if n.got != n.want {
				return errLineBreaks
			}
			open = open[:len(open)-1]
		}
		return nil
	}
	for _, l := range lines {
		if l.depth > len(open) {
			return errLineBreaks
		}
		if err := closeTo(l.depth); err != nil {
			return err
		}
		if l.depth > 0 {
			open[l.depth-1].got++
		}
		open = append(open, node{want: childrenCount(l.rest)})
	}
	return closeTo(0)
}

// childrenCount reads the "(children N)" that ends a node's line.
func childrenCount(rest string) int {
	i := strings.LastIndex(rest, "(children ")
	if i < 0 || !strings.HasSuffix(rest, ")") {
		return 0
	}
	n, err := strconv.Atoi(rest[i+len("(children ") : len(rest)-1])
	if err != nil {
		return -1
	}
	return n
}

func allowedTableFunctionList() string {
	return "numbers, numbers_mt, zeros, zeros_mt, generate_series, primes, values and null are"
}
