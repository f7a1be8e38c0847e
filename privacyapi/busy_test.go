package privacyapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/tenant"
)

// While max_exports run, another export is 429 before it takes a
// database connection: a client that stops reading holds one.
func TestExportBusy(t *testing.T) {
	ts, err := tenant.New(tenant.Config{Default: "a"})
	if err != nil {
		t.Fatal(err)
	}
	h := New(DefaultConfig(), Deps{Tenants: ts})
	h.exports <- struct{}{} // an export running
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest(http.MethodGet, "/api/v1/tenants/a/export", nil)
	c.Params = gin.Params{{Key: "tenant", Value: "a"}}
	api.WithPrincipal(c, api.Principal{TokenID: "tok_x", AllTenants: true, Role: api.RoleAdmin})
	h.export(c)
	var body api.ErrorBody
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != http.StatusTooManyRequests || body.Error.Code != CodeExportBusy || w.Header().Get("Retry-After") == "" {
		t.Errorf("%d %s Retry-After %q, want 429 %s with Retry-After", w.Code, w.Body, w.Header().Get("Retry-After"), CodeExportBusy)
	}
}
