package queryapi

import (
	"fmt"
	"strings"
)

// ReadOnlyStatements are the statements a query may start with (after
// comments and opening parentheses). DESC is DESCRIBE's short form.
var ReadOnlyStatements = []string{"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"}

// RefusedError is a query refused by CheckReadOnly.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// CheckReadOnly is the text check every query passes before it reaches an
// engine. It refuses:
//   - a statement that does not start with one of ReadOnlyStatements;
//   - more than one statement (chDB runs every statement of
//     "SELECT 1; DROP TABLE flows");
//   - INTO OUTFILE and the file() function, which chDB runs even at
//     readonly=1 (measured: they write and read any file the flowhouse
//     process may).
//
// It is a lexical check (comments, strings and quoted identifiers are
// understood), not a parser. The engines enforce read-only themselves as
// well: the embedded engine runs these queries on readonly=1 sessions,
// and `flowhouse query` asks a ClickHouse server for readonly=1.
func CheckReadOnly(query string) error {
	toks := lex(query)
	i := 0
	for i < len(toks) && toks[i].text == "(" && toks[i].kind == tokSymbol {
		i++
	}
	if i >= len(toks) {
		return &RefusedError{"empty query"}
	}
	first := toks[i]
	if first.kind != tokWord || !isOneOf(first.text, ReadOnlyStatements) {
		return &RefusedError{fmt.Sprintf("only read-only queries are allowed (%s), not %s", strings.Join(ReadOnlyStatements, ", "), describe(first))}
	}
	for j, t := range toks {
		switch {
		case t.kind == tokSymbol && t.text == ";":
			for _, rest := range toks[j+1:] {
				if rest.kind != tokSymbol || rest.text != ";" {
					return &RefusedError{"only one statement per query is allowed"}
				}
			}
		case t.kind == tokWord && strings.EqualFold(t.text, "INTO") && j+1 < len(toks) && toks[j+1].kind == tokWord && strings.EqualFold(toks[j+1].text, "OUTFILE"):
			return &RefusedError{"INTO OUTFILE is not allowed"}
		case (t.kind == tokWord || t.kind == tokQuotedIdent) && strings.EqualFold(t.text, "file") && j+1 < len(toks) && toks[j+1].kind == tokSymbol && toks[j+1].text == "(":
			return &RefusedError{"the file() function is not allowed"}
		}
	}
	return nil
}

// TrailingFormat is the format named by a FORMAT clause at the end of the
// query (before an optional SETTINGS clause and semicolons), or "".
func TrailingFormat(query string) string {
	toks := lex(query)
	for len(toks) > 0 && toks[len(toks)-1].kind == tokSymbol && toks[len(toks)-1].text == ";" {
		toks = toks[:len(toks)-1]
	}
	// Only at depth 0: a subquery's FORMAT is not the result's.
	depth := 0
	for j, t := range toks {
		if t.kind == tokSymbol {
			switch t.text {
			case "(":
				depth++
			case ")":
				depth--
			}
			continue
		}
		if depth != 0 || t.kind != tokWord || !strings.EqualFold(t.text, "FORMAT") || j+1 >= len(toks) {
			continue
		}
		name := toks[j+1]
		if name.kind != tokWord && name.kind != tokQuotedIdent {
			continue
		}
		if j+2 == len(toks) || (toks[j+2].kind == tokWord && strings.EqualFold(toks[j+2].text, "SETTINGS")) {
			return name.text
		}
	}
	return ""
}

func isOneOf(s string, set []string) bool {
	for _, x := range set {
		if strings.EqualFold(s, x) {
			return true
		}
	}
	return false
}

func describe(t token) string {
	if t.kind == tokWord {
		return strings.ToUpper(t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

type tokKind uint8

const (
	tokWord        tokKind = iota // keyword or identifier
	tokQuotedIdent                // `x` or "x", unquoted
	tokString                     // 'x'
	tokNumber
	tokSymbol // one character of punctuation
)

type token struct {
	kind tokKind
	text string
}

// lex splits ClickHouse SQL into tokens, dropping whitespace and comments
// (--, #, and nested /* */). An unterminated string or comment ends the
// input: the engine reports the syntax error.
func lex(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-', c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			depth := 0
			for i < len(s) {
				if s[i] == '/' && i+1 < len(s) && s[i+1] == '*' {
					depth++
					i += 2
				} else if s[i] == '*' && i+1 < len(s) && s[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'' || c == '`' || c == '"':
			var b strings.Builder
			i++
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == c {
					if i+1 < len(s) && s[i+1] == c { // doubled quote
						b.WriteByte(c)
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			kind := tokQuotedIdent
			if c == '\'' {
				kind = tokString
			}
			toks = append(toks, token{kind, b.String()})
		case isWordStart(c):
			j := i
			for j < len(s) && (isWordStart(s[j]) || (s[j] >= '0' && s[j] <= '9')) {
				j++
			}
			toks = append(toks, token{tokWord, s[i:j]})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && (isWordStart(s[j]) || (s[j] >= '0' && s[j] <= '9') || s[j] == '.') {
				j++
			}
			toks = append(toks, token{tokNumber, s[i:j]})
			i = j
		default:
			toks = append(toks, token{tokSymbol, string(c)})
			i++
		}
	}
	return toks
}

func isWordStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}
