package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Source is where the value came from: "config PATH", "environment", or
	// "" for a value that the section's validation rejected.
	Source string
	// Line in the file, when the problem is in the file (0 otherwise).
	Line int
	// Key is the full key path, e.g. "collector.workers" or
	// "collector.sampling[0].rate"; "" when the problem is not about one key.
	Key string
	// Message says what is wrong; it starts with the key when there is one.
	// It never contains the value of a secret.
	Message string
}

func (p Problem) Error() string {
	switch {
	case p.Source == "":
		return p.Message
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.Source, p.Line, p.Message)
	default:
		return p.Source + ": " + p.Message
	}
}

// Error is what Load and Validate return: every problem found, in file
// order, then environment, then validation by section.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each Problem.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// problems collects Problems and turns them into an *Error.
type problems struct {
	list    []Problem
	secrets []string // values to scrub from every message
}

func (ps *problems) add(source string, line int, key, format string, args ...any) {
	ps.list = append(ps.list, Problem{Source: source, Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
}

// addSecret remembers a secret value so that no message can show it.
func (ps *problems) addSecret(v string) {
	if v != "" {
		ps.secrets = append(ps.secrets, v)
	}
}

// minScrubLen is the length from which a secret is removed wherever it
// appears in a message.
const minScrubLen = 4

// err returns nil or an *Error with every secret value replaced by "***".
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	// Longest first, so that a secret containing another is replaced whole.
	sort.Slice(ps.secrets, func(i, j int) bool { return len(ps.secrets[i]) > len(ps.secrets[j]) })
	out := make([]Problem, len(ps.list))
	for i, p := range ps.list {
		for _, s := range ps.secrets {
			if len(s) >= minScrubLen {
				p.Message = strings.ReplaceAll(p.Message, s, redactedValue)
			} else {
				// Replacing "a" everywhere would garble every message:
				// short secrets are replaced where quoted, as values are.
				p.Message = strings.ReplaceAll(p.Message, strconv.Quote(s), strconv.Quote(redactedValue))
			}
		}
		out[i] = p
	}
	return &Error{Problems: out}
}

// splitErrors flattens errors.Join trees (as Validate functions return
// them) into their leaves, one problem each.
func splitErrors(err error) []error {
	if err == nil {
		return nil
	}
	if multi, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range multi.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// describe shows a value in a message: quoted and shortened, or not at all
// when it is secret.
func describe(n *node, value string) string {
	if n.secret {
		return "the (secret) value"
	}
	const max = 64
	if len(value) > max {
		value = value[:max] + "..."
	}
	return strconv.Quote(value)
}

// suggest returns the candidate closest to s, or "" when none is close
// enough to be a likely typo.
func suggest(s string, candidates []string) string {
	best, bestDist := "", -1
	limit := 1 + len(s)/4
	for _, c := range candidates {
		if strings.EqualFold(c, s) {
			return c
		}
		d := editDistance(s, c)
		if d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes cost 1.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// didYouMean formats a suggestion for a message.
func didYouMean(s string, candidates []string, quote bool) string {
	c := suggest(s, candidates)
	if c == "" {
		return ""
	}
	if quote {
		c = strconv.Quote(c)
	}
	return " (did you mean " + c + "?)"
}
