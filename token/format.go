package token

import (
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/flowhouse/flowhouse/api"
)

// The secret's shape, GitHub's scheme: a prefix that secret scanners
// match (fhp_[0-9A-Za-z]{42}), random base62 characters, and the CRC32 of
// those, so that a mistyped or truncated token is refused before any
// lookup and a scanner can tell a token from random text.
const (
	// Prefix starts every token: "flowhouse personal".
	Prefix = "fhp_"
	// RandomLen base62 characters carry 36*log2(62) ≈ 214 random bits.
	RandomLen = 36
	// ChecksumLen base62 characters hold a CRC32 (62^6 > 2^32).
	ChecksumLen = 6
	// Len is the whole token's length.
	Len = len(Prefix) + RandomLen + ChecksumLen
	// IDPrefix starts every public token id.
	IDPrefix = "tok_"
	// idRandomLen base62 characters follow IDPrefix (71 bits: ids never
	// collide in practice, and they are not secrets).
	idRandomLen = 12
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomBase62 is n characters drawn uniformly from base62 with
// crypto/rand. A byte is kept only below 248 = 4*62, so that b%62 is
// unbiased; the rest are drawn again.
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("token: random: %w", err)
		}
		for _, b := range buf {
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out), nil
}

// checksum is the CRC32 (IEEE) of random in ChecksumLen base62
// characters, most significant first, zero-padded.
func checksum(random string) string {
	v := crc32.ChecksumIEEE([]byte(random))
	var out [ChecksumLen]byte
	for i := ChecksumLen - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
	return string(out[:])
}

// Generate returns a new token secret.
func Generate() (string, error) {
	r, err := randomBase62(RandomLen)
	if err != nil {
		return "", err
	}
	return Prefix + r + checksum(r), nil
}

// newID returns a new public token id.
func newID() (string, error) {
	r, err := randomBase62(idRandomLen)
	if err != nil {
		return "", err
	}
	return IDPrefix + r, nil
}

// Parse checks a presented token's shape and checksum, without any
// lookup: a wrong prefix, length or character is TokenMalformed, a
// checksum that does not match (a typo, a truncation) TokenChecksum.
func Parse(tok string) error {
	if len(tok) != Len || !strings.HasPrefix(tok, Prefix) {
		return &api.TokenError{Reason: api.TokenMalformed}
	}
	body := tok[len(Prefix):]
	for i := 0; i < len(body); i++ {
		if !isBase62(body[i]) {
			return &api.TokenError{Reason: api.TokenMalformed}
		}
	}
	random, sum := body[:RandomLen], body[RandomLen:]
	if checksum(random) != sum {
		return &api.TokenError{Reason: api.TokenChecksum}
	}
	return nil
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// ValidID reports whether id has the shape of a public token id, so that
// a lookup is not even tried for anything else.
func ValidID(id string) bool {
	if len(id) != len(IDPrefix)+idRandomLen || !strings.HasPrefix(id, IDPrefix) {
		return false
	}
	for i := len(IDPrefix); i < len(id); i++ {
		if !isBase62(id[i]) {
			return false
		}
	}
	return true
}
