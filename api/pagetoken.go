package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// PageTokens make and read the opaque page_token of AIP-158 pagination.
// A token holds a position (any JSON value the handler chooses), bound to
// the principal's scope and to the request's filters, and signed: a
// token made for other filters or for another tenant's token, or changed
// by the client, is refused with 400.
type PageTokens struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// PageTokenTTL is how long a page token is accepted.
const PageTokenTTL = 24 * time.Hour

// NewPageTokens signs with key; an empty key is a random one, good for
// this process only (then tokens do not survive a restart, nor move to
// another process behind a load balancer).
func NewPageTokens(key []byte) *PageTokens {
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	return &PageTokens{key: key, ttl: PageTokenTTL, now: time.Now}
}

type pageToken struct {
	Scope   string          `json:"s"`
	Filters string          `json:"f"`
	Issued  int64           `json:"t"`
	Pos     json.RawMessage `json:"p"`
}

// ErrPageToken is a page token that is not valid for the request.
var ErrPageToken = errors.New("page_token is not valid for this request: it was made for other filters or another token, has expired, or was changed; start again without it")

// Encode makes the token of position pos for p and filters (a canonical
// text of the request's filters, page_size excluded).
func (t *PageTokens) Encode(p Principal, filters string, pos any) (string, error) {
	raw, err := json.Marshal(pos)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(pageToken{Scope: p.Scope(), Filters: filters, Issued: t.now().Unix(), Pos: raw})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(t.sign(payload)), nil
}

// Decode reads a token made by Encode for the same scope and filters
// into pos; any mismatch is ErrPageToken.
func (t *PageTokens) Decode(token string, p Principal, filters string, pos any) error {
	body, sig, ok := strings.Cut(token, ".")
	if !ok || len(token) > 4096 {
		return ErrPageToken
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(body)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, t.sign(payload)) {
		return ErrPageToken
	}
	var pt pageToken
	if json.Unmarshal(payload, &pt) != nil || pt.Scope != p.Scope() || pt.Filters != filters {
		return ErrPageToken
	}
	if age := t.now().Sub(time.Unix(pt.Issued, 0)); age > t.ttl || age < -time.Minute {
		return ErrPageToken
	}
	if json.Unmarshal(pt.Pos, pos) != nil {
		return ErrPageToken
	}
	return nil
}

func (t *PageTokens) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte("flowhouse page token v1\x00"))
	m.Write(payload)
	return m.Sum(nil)[:16]
}
