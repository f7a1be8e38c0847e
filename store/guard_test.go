package store

import (
	"strings"
	"testing"
)

// Dumps below are what EXPLAIN AST printed on the embedded engine
// (26.7) for the query in each comment.
func TestCheckTree(t *testing.T) {
	tableFunctions := map[string]bool{"file": true, "numbers": true, "url": true, "remote": true}
	formats := map[string]bool{"json": true, "tsv": true}
	for _, tc := range []struct {
		name   string
		dump   string
		kind   string // accepted as; "" when refused
		format string
		refuse string
	}{
		{"select from numbers", `SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Function count (children 1)
     ExpressionList
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function numbers (children 1)
       ExpressionList (children 1)
        Literal UInt64_10`, "SelectWithUnionQuery", "", ""},
		{"FORMAT JSON", `SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Identifier JSON`, "SelectWithUnionQuery", "JSON", ""},
		{"LIMIT and OFFSET are literals under SelectQuery", `SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 3)
   ExpressionList (children 1)
    Literal UInt64_1
   Literal UInt64_2
   Literal UInt64_5`, "SelectWithUnionQuery", "", ""},
		{"INTO OUTFILE", `SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Literal '/tmp/x'`, "", "", "INTO OUTFILE"},
		{"INTO OUTFILE of DESCRIBE", `DescribeQuery (children 2)
 TableExpression (children 1)
  TableIdentifier system.one
 Literal '/tmp/x'`, "", "", "INTO OUTFILE"},
		{"INTO OUTFILE of the statement under EXPLAIN", `Explain EXPLAIN AST (children 1)
 SelectWithUnionQuery (children 2)
  ExpressionList (children 1)
   SelectQuery (children 1)
    ExpressionList (children 1)
     Literal UInt64_1
  Literal '/tmp/x'`, "", "", "INTO OUTFILE"},
		{"EXPLAIN options and its FORMAT", `Explain EXPLAIN PIPELINE (children 3)
 Set
 SelectWithUnionQuery (children 1)
  ExpressionList (children 1)
   SelectQuery (children 1)
    ExpressionList (children 1)
     Literal UInt64_1
 Identifier JSON`, "Explain", "JSON", ""},
		{"EXPLAIN of EXPLAIN", `Explain EXPLAIN AST (children 1)
 Explain EXPLAIN AST (children 1)
  SelectWithUnionQuery (children 1)
   ExpressionList (children 1)
    SelectQuery (children 1)
     ExpressionList (children 1)
      Literal UInt64_1`, "", "", "EXPLAIN of Explain"},
		{"EXPLAIN of CREATE", `Explain EXPLAIN SYNTAX (children 2)
 CreateQuery t (children 1)
  Identifier t
 Literal '/tmp/x'`, "", "", "EXPLAIN of CreateQuery"},
		{"SETTINGS in a subquery", `SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Subquery (children 1)
       SelectWithUnionQuery (children 1)
        ExpressionList (children 1)
         SelectQuery (children 2)
          ExpressionList (children 1)
           Literal UInt64_1
          Set`, "", "", "SETTINGS"},
		{"scalar file()", `SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function file (children 1)
     ExpressionList (children 1)
      Literal '/etc/passwd'`, "", "", "function file"},
		{"table function in capitals", `SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function URL (children 1)
       ExpressionList (children 1)
        Literal 'http://x'`, "", "", "table function URL"},
		{"dictGet", `SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function dictGetString (children 1)
     ExpressionList`, "", "", "dictionary"},
		{"an identifier with a line break", `SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Identifier a
 Function numbers
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier system.one`, "", "", "line breaks"},
		{"an alias faking a children count", `SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function sum (alias q) (children 0)
 Literal 'x') (children 1)
     ExpressionList (children 1)
      Literal UInt64_1`, "", "", ""},
		{"a second root", "ShowTables\nShowTables", "", "", "line breaks"},
		{"SHOW CREATE TABLE with FORMAT", `ShowCreateTableQuery system one (children 3)
 Identifier system
 Identifier one
 Identifier JSON`, "ShowCreateTableQuery", "JSON", ""},
		{"CREATE", "CreateQuery t (children 1)\n Identifier t", "", "", "not CreateQuery"},
		{"empty", "", "", "", "no syntax tree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dump []string
			if tc.dump != "" {
				dump = strings.Split(tc.dump, "\n")
			}
			kind, format, err := checkTree(dump, tableFunctions, formats)
			if tc.kind == "" {
				var refused *RefusedError
				if err == nil || !asRefused(err, &refused) || (tc.refuse != "" && !strings.Contains(err.Error(), tc.refuse)) {
					t.Fatalf("got %s %q %v, want a refusal with %q", kind, format, err, tc.refuse)
				}
				return
			}
			if err != nil || kind != tc.kind || format != tc.format {
				t.Fatalf("got %s %q %v, want %s %q", kind, format, err, tc.kind, tc.format)
			}
		})
	}
}

func asRefused(err error, target **RefusedError) bool {
	r, ok := err.(*RefusedError)
	*target = r
	return ok
}

func TestCheckCanonical(t *testing.T) {
	for q, ok := range map[string]bool{
		"SELECT 1": true, "WITH 1 AS x SELECT x": true, "SHOW TABLES": true, "DESCRIBE TABLE t": true,
		"EXISTS TABLE t": true, "EXPLAIN SELECT 1": true, "(SELECT 1) UNION ALL (SELECT 2)": true,
		"CREATE TABLE t (`a` Int8) ENGINE = Memory INTO OUTFILE 'x'": false, "INSERT INTO t VALUES": false,
		"SET readonly = 0": false, "SYSTEM SHUTDOWN": false, "SELECTX": false,
	} {
		if err := checkCanonical(q); (err == nil) != ok {
			t.Errorf("checkCanonical(%q) = %v, want ok=%v", q, err, ok)
		}
	}
}
