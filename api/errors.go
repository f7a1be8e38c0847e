package api

import (
	"github.com/gin-gonic/gin"
)

// Error codes of the project-wide error shape. Handlers may add their own;
// codes are lower_snake_case and stable (clients match on them).
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeInternal         = "internal"
	CodeUnavailable      = "unavailable"
	CodeNotReady         = "not_ready"
	CodeRateLimited      = "rate_limited"
	CodePrecondition     = "precondition_failed"
)

// ErrorBody is the JSON of every error response:
//
//	{"error": {"code": "not_found", "message": "..."}}
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError answers with status and the project's error shape, and stops
// the handler chain. The message is for people; never put secrets or
// internal details (SQL, stack traces) in it.
func WriteError(c *gin.Context, status int, code, message string) {
	c.Abort()
	// PureJSON: messages name things like <token>, which plain JSON would
	// escape as \u003c for browsers that the API does not serve HTML to.
	c.PureJSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}
