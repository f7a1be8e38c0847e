package token

import (
	"errors"
	"hash/crc32"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/flowhouse/flowhouse/api"
)

// scanner is the pattern secret scanners are given.
var scanner = regexp.MustCompile(`^fhp_[0-9A-Za-z]{42}$`)

// refChecksum is the checksum computed another way: math/big's base 62
// (digits, then lower case, then upper case) mapped to base62's order.
func refChecksum(random string) string {
	s := big.NewInt(int64(crc32.ChecksumIEEE([]byte(random)))).Text(62)
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsLower(r):
			return unicode.ToUpper(r)
		case unicode.IsUpper(r):
			return unicode.ToLower(r)
		}
		return r
	}, s)
	return strings.Repeat("0", ChecksumLen-len(s)) + s
}

func reason(err error) string {
	var te *api.TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	if err != nil {
		return "not a TokenError: " + err.Error()
	}
	return ""
}

// swap replaces the character at i by another base62 character.
func swap(tok string, i int) string {
	c := byte('a')
	if tok[i] == 'a' {
		c = 'b'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

func TestParse(t *testing.T) {
	good, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	// Known answers, computed with Python's zlib.crc32: the standard
	// check value CRC32("123456789") = 0xCBF43926, and one whose base62
	// form starts with a zero.
	for in, want := range map[string]string{"123456789": "3jZRME", strings.Repeat("0", RandomLen): "0etOEM"} {
		if got, ref := checksum(in), refChecksum(in); got != want || ref != want {
			t.Fatalf("checksum(%q) = %q, reference %q, want %q", in, got, ref, want)
		}
	}
	random := strings.Repeat("0", RandomLen)
	tests := []struct {
		name, tok, reason string
	}{
		{"generated", good, ""},
		{"fixed, checksum with a leading zero", Prefix + random + "0etOEM", ""},
		{"fixed, checksum without its leading zero", Prefix + random + "etOEM0", api.TokenChecksum},
		{"empty", "", api.TokenMalformed},
		{"prefix only", Prefix, api.TokenMalformed},
		{"other prefix", "ghp_" + good[4:], api.TokenMalformed},
		{"upper-case prefix", "FHP_" + good[4:], api.TokenMalformed},
		{"one character short", good[:Len-1], api.TokenMalformed},
		{"one character more", good + "a", api.TokenMalformed},
		{"a character outside base62", good[:10] + "-" + good[11:], api.TokenMalformed},
		{"a non-ASCII character", good[:10] + "é" + good[12:], api.TokenMalformed},
		{"a space inside", good[:10] + " " + good[11:], api.TokenMalformed},
		{"a typo in the random part", swap(good, 10), api.TokenChecksum},
		{"a typo in the first random character", swap(good, len(Prefix)), api.TokenChecksum},
		{"a typo in the checksum", swap(good, Len-1), api.TokenChecksum},
		{"two characters transposed", transpose(good, 20), api.TokenChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reason(Parse(tt.tok)); got != tt.reason {
				t.Errorf("Parse(%q) = %q, want %q", tt.tok, got, tt.reason)
			}
		})
	}
}

// transpose swaps the characters at i and i+1, making sure they differ.
func transpose(tok string, i int) string {
	for ; tok[i] == tok[i+1]; i++ {
	}
	b := []byte(tok)
	b[i], b[i+1] = b[i+1], b[i]
	return string(b)
}

// Every generated token has the scanners' shape, parses, and is new;
// its random characters are uniform over base62 (a modulo without
// rejection would give the first 8 characters 25% more).
func TestGenerate(t *testing.T) {
	const n = 6000 // 216 000 random characters: 3 484 of each expected
	seen := map[string]bool{}
	counts := map[byte]int{}
	for range n {
		tok, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !scanner.MatchString(tok) || Parse(tok) != nil || seen[tok] {
			t.Fatalf("%q: scanner %v, Parse %v, seen before %v", tok, scanner.MatchString(tok), Parse(tok), seen[tok])
		}
		if got := tok[len(Prefix)+RandomLen:]; got != refChecksum(tok[len(Prefix):len(Prefix)+RandomLen]) {
			t.Fatalf("%q: checksum %q, reference %q", tok, got, refChecksum(tok[len(Prefix):len(Prefix)+RandomLen]))
		}
		seen[tok] = true
		for i := len(Prefix); i < len(Prefix)+RandomLen; i++ {
			counts[tok[i]]++
		}
	}
	want := float64(n*RandomLen) / 62
	if len(counts) != 62 {
		t.Errorf("%d distinct characters, want 62", len(counts))
	}
	for c, got := range counts {
		// ±10% is about 6 standard deviations.
		if float64(got) < 0.9*want || float64(got) > 1.1*want {
			t.Errorf("character %q drawn %d times, want %.0f ±10%%", c, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{id, true}, {"tok_abcdefABCDEF", true}, {"tok_abcdefABCDE", false}, {"tok_abcdefABCDEF0", false},
		{"tik_abcdefABCDEF", false}, {"tok_abcdef-BCDEF", false}, {"", false}, {"tok_read_a", false},
	} {
		if got := ValidID(tt.id); got != tt.ok {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.ok)
		}
	}
}

// Parse accepts exactly the tokens of the scanners' shape whose checksum
// (computed independently) holds, and never panics.
func FuzzParse(f *testing.F) {
	for range 3 {
		tok, _ := Generate()
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		err := Parse(tok)
		r := reason(err)
		shaped := scanner.MatchString(tok)
		switch {
		case !shaped && r != api.TokenMalformed:
			t.Fatalf("Parse(%q) = %q, want malformed", tok, r)
		case shaped && tok[len(Prefix)+RandomLen:] == refChecksum(tok[len(Prefix):len(Prefix)+RandomLen]) && err != nil:
			t.Fatalf("Parse(%q) = %q, want nil", tok, r)
		case shaped && tok[len(Prefix)+RandomLen:] != refChecksum(tok[len(Prefix):len(Prefix)+RandomLen]) && r != api.TokenChecksum:
			t.Fatalf("Parse(%q) = %q, want checksum", tok, r)
		}
	})
}
