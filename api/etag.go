package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// JSONWithETag answers v as JSON with a strong ETag of its bytes; a
// request whose If-None-Match holds that ETag gets 304 and no body, so
// that a poller whose data has not changed costs one query and no
// transfer.
func JSONWithETag(c *gin.Context, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		_ = c.Error(err)
		WriteError(c, http.StatusInternalServerError, CodeInternal, "internal server error")
		return
	}
	tag := ETagOf(body)
	c.Header("ETag", tag)
	c.Header("Cache-Control", "private, no-cache")
	if ETagMatches(c.GetHeader("If-None-Match"), tag) {
		c.Status(http.StatusNotModified)
		c.Writer.WriteHeaderNow()
		return
	}
	c.Data(status, "application/json; charset=utf-8", body)
}

// ETagOf is a strong ETag of bytes.
func ETagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// ETagMatches reports whether a If-None-Match or If-Match header value
// (a list of tags, or *) holds tag. Weak tags compare by their value, as
// If-None-Match does (RFC 9110 13.1.2).
func ETagMatches(header, tag string) bool {
	for _, h := range strings.Split(header, ",") {
		h = strings.TrimSpace(h)
		if h == "*" || strings.TrimPrefix(h, "W/") == tag {
			return true
		}
	}
	return false
}
