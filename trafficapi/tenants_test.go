package trafficapi

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
)

// TestTenantIsolation: tenants a and b each have an exporter at
// 192.0.2.1 and a host 10.0.0.1. A tenant token sees its own traffic
// only, whatever it filters by, and the totals are its own.
func TestTenantIsolation(t *testing.T) {
	h := hour()
	hr := rangeQ(h, h.Add(time.Hour))
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		insert(t, e, fixture(h))
		c := serve(t, DefaultConfig(), Deps{Reader: e.Reader})
		top := func(token, query string) TopAnswer {
			t.Helper()
			r := c.WithToken(token).Get("/api/v1/traffic/top?" + query)
			if r.Status != 200 {
				t.Fatalf("%s: %d %s", query, r.Status, r.Body)
			}
			var ans TopAnswer
			r.JSON(t, &ans)
			return ans
		}
		labels := func(ans TopAnswer) []string {
			var out []string
			for _, r := range ans.Rows {
				out = append(out, r.Key["tenant"].(string)+":"+r.Label)
			}
			return out
		}
		tests := []struct {
			name, token, query string
			rows               []string
			total              uint64
		}{
			{"a by exporter", apitest.ReadA, "by=exporter&" + hr, []string{"a:edge2", "a:edge1"}, 407000},
			{"a names its own tenant", apitest.ReadA, "by=exporter&tenant=a&" + hr, []string{"a:edge2", "a:edge1"}, 407000},
			{"a filters by the address b's exporter shares", apitest.ReadA, "by=exporter&exporter=192.0.2.1&" + hr, []string{"a:edge1"}, 107000},
			{"a filters by the host b shares", apitest.ReadA, "by=dst_address&address=10.0.0.1&" + hr, []string{"a:198.51.100.1"}, 102000},
			{"a's raw totals", apitest.ReadA, "by=src_address&" + hr, []string{"a:2001:db8::1", "a:10.0.0.1", "a:10.0.0.2"}, 407000},
			{"b by exporter", apitest.ReadB, "by=exporter&" + hr, []string{"b:b-edge"}, 1_000_000},
			{"b filters by a's other exporter", apitest.ReadB, "by=exporter&exporter=192.0.2.2&" + hr, nil, 0},
			{"all tenants: the same address twice", apitest.ReadAll, "by=exporter&" + hr, []string{"b:b-edge", "a:edge2", "a:edge1"}, 1_407_000},
			{"all tenants narrowed to b", apitest.ReadAll, "by=exporter&tenant=b&" + hr, []string{"b:b-edge"}, 1_000_000},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ans := top(tt.token, tt.query)
				if got := labels(ans); !slices.Equal(got, tt.rows) {
					t.Errorf("rows %v, want %v", got, tt.rows)
				}
				if ans.Total.Bytes != tt.total {
					t.Errorf("total %d bytes, want %d", ans.Total.Bytes, tt.total)
				}
			})
		}
		t.Run("series", func(t *testing.T) {
			for token, want := range map[string]uint64{apitest.ReadA: 407000, apitest.ReadB: 1_000_000, apitest.ReadAll: 1_407_000} {
				ans := getSeries(t, c.WithToken(token), "by=src_address&step=1m&"+hr)
				if ans.Total.Bytes != want {
					t.Errorf("%s: series total %d, want %d", token, ans.Total.Bytes, want)
				}
				for _, s := range ans.Series {
					if tn := s.Key["tenant"]; token == apitest.ReadA && !s.Other && tn != "a" {
						t.Errorf("%s: series of tenant %v", token, tn)
					}
				}
			}
		})
		t.Run("another tenant is not found, as one that does not exist", func(t *testing.T) {
			for _, path := range []string{"/api/v1/traffic/top?by=exporter&", "/api/v1/traffic/series?"} {
				other := c.WithToken(apitest.ReadA).Get(path + "tenant=b")
				none := c.WithToken(apitest.ReadA).Get(path + "tenant=nope")
				all := c.WithToken(apitest.ReadAll).Get(path + "tenant=nope")
				if other.Status != 404 || none.Status != 404 || all.Status != 404 || !bytes.Equal(other.Body, none.Body) || !bytes.Equal(other.Body, all.Body) {
					t.Errorf("%s: tenant=b %d %s, tenant=nope %d %s, all-tenants tenant=nope %d", path, other.Status, other.Body, none.Status, none.Body, all.Status)
				}
			}
		})
	})
}
