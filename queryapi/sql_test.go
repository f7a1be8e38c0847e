package queryapi

import "testing"

func TestCheckReadOnly(t *testing.T) {
	for _, q := range []string{
		"SELECT 1",
		"  select 1;",
		"-- comment\nSELECT 1 ;;",
		"/* a /* nested */ comment */ WITH 1 AS x SELECT x",
		"(SELECT 1) UNION ALL (SELECT 2)",
		"SHOW TABLES", "DESCRIBE TABLE flows", "desc flows", "EXPLAIN SELECT 1", "EXISTS TABLE flows",
		"SELECT 'a; DROP TABLE flows'",
		"SELECT `file` FROM t",               // a column named file
		"SELECT 'file(x)', \"into\" outfile", // in strings and identifiers
		"SELECT 1 # DROP\n",
	} {
		if err := CheckReadOnly(q); err != nil {
			t.Errorf("CheckReadOnly(%q) = %v, want nil", q, err)
		}
	}
	for q, want := range map[string]string{
		"":                                  "empty query",
		"-- only a comment":                 "empty query",
		"INSERT INTO flows VALUES (1)":      "not INSERT",
		"drop table flows":                  "not DROP",
		"/* SELECT */ ALTER TABLE x":        "not ALTER",
		"SET readonly = 0":                  "not SET",
		"SYSTEM SHUTDOWN":                   "not SYSTEM",
		"SELECT 1; DROP TABLE flows":        "one statement",
		"SELECT 1; SELECT 2":                "one statement",
		"SELECT 1 INTO OUTFILE '/tmp/x'":    "INTO OUTFILE",
		"SELECT file('/etc/passwd')":        "file()",
		"SELECT `file` ('/etc/passwd')":     "file()",
		"SELECT * FROM FILE('/etc/passwd')": "file()",
		"'SELECT'":                          `not "SELECT"`,
	} {
		err := CheckReadOnly(q)
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("CheckReadOnly(%q) = %v, want an error with %q", q, err, want)
		}
	}
}

func TestTrailingFormat(t *testing.T) {
	for q, want := range map[string]string{
		"SELECT 1":                                    "",
		"SELECT 1 FORMAT JSON":                        "JSON",
		"SELECT 1 format CSVWithNames;":               "CSVWithNames",
		"SELECT 1 FORMAT JSONEachRow SETTINGS a=1":    "JSONEachRow",
		"SELECT format FROM t":                        "",
		"SELECT * FROM (SELECT 1 FORMAT TSV) WHERE 1": "",
		"SELECT 1 FORMAT `TSV` -- trailing comment":   "TSV",
		"SELECT 'FORMAT JSON'":                        "",
	} {
		if got := TrailingFormat(q); got != want {
			t.Errorf("TrailingFormat(%q) = %q, want %q", q, got, want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
