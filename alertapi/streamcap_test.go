package alertapi

import (
	"testing"

	"github.com/flowhouse/flowhouse/api"
)

// Streams are capped per token and, for a tenant's tokens together, at
// four tokens' worth: minted tokens do not multiply them.
func TestStreamCaps(t *testing.T) {
	h := &Handlers{cfg: Config{MaxStreamsPerToken: 2}, streams: map[string]int{}}
	token := func(i int) api.Principal {
		return api.Principal{TokenID: string(rune('a' + i)), Tenant: "acme", Role: api.RoleRead}
	}
	if !h.acquire(token(0)) || !h.acquire(token(0)) || h.acquire(token(0)) {
		t.Fatal("a token's third stream was not refused, or one of its first two was")
	}
	opened := 2
	for i := 1; i < 10; i++ {
		for h.acquire(token(i)) {
			opened++
		}
	}
	if opened != 8 {
		t.Errorf("the tenant's tokens opened %d streams together, want 8", opened)
	}
	all := api.Principal{TokenID: "all", AllTenants: true, Role: api.RoleRead}
	if !h.acquire(all) {
		t.Error("an all-tenants token is refused by a tenant's cap")
	}
	h.release(token(0))
	if !h.acquire(token(5)) {
		t.Error("a released stream does not free the tenant's cap")
	}
}
