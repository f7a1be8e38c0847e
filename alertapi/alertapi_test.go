package alertapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/alertapi"
	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
)

// seed fires: tenant a: ddos on 192.0.2.1 and 192.0.2.2, util on
// exporter 198.51.100.1; tenant b: ddos on 192.0.2.1 (the same address:
// tenants reuse address space).
func seed(e *env) map[string]string {
	e.evaluate("a", "ddos", inst(10, "dst_address", "192.0.2.1"), inst(20, "dst_address", "192.0.2.2"))
	e.evaluate("a", "util", inst(0.9, "exporter_address", "198.51.100.1", "if_index", "7", "direction", "in"))
	e.evaluate("b", "ddos", inst(30, "dst_address", "192.0.2.1"))
	e.flush()
	return map[string]string{
		"a1": e.active("a", "192.0.2.1").ID, "a2": e.active("a", "192.0.2.2").ID,
		"au": e.active("a", "198.51.100.1").ID, "b1": e.active("b", "192.0.2.1").ID,
	}
}

func TestTenantIsolation(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, db enginetest.Engine) {
		e := newEnv(t, db, api.DefaultConfig(), testConfig())
		id := seed(e)
		lists := []struct {
			name, token, query string
			want               []string
		}{
			{"a sees its own", apitest.ReadA, "", sorted(id["a1"], id["a2"], id["au"])},
			{"b sees its own", apitest.ReadB, "", sorted(id["b1"])},
			{"a naming b gets nothing", apitest.ReadA, "tenant=b", nil},
			{"a naming a tenant that does not exist gets nothing", apitest.ReadA, "tenant=zzz", nil},
			{"a naming itself", apitest.ReadA, "tenant=a", sorted(id["a1"], id["a2"], id["au"])},
			{"a's subject filter finds only a's", apitest.ReadA, "subject=192.0.2.1", sorted(id["a1"])},
			{"b filtering on a's rule and exporter", apitest.ReadB, "rule=util", nil},
			{"b filtering on a's exporter", apitest.ReadB, "exporter=198.51.100.1", nil},
			{"all tenants", apitest.ReadAll, "", sorted(id["a1"], id["a2"], id["au"], id["b1"])},
			{"all tenants, b only", apitest.ReadAll, "tenant=b", sorted(id["b1"])},
			{"all tenants, by address", apitest.ReadAll, "subject=dst_address:192.0.2.1", sorted(id["a1"], id["b1"])},
		}
		for _, tc := range lists {
			t.Run(tc.name, func(t *testing.T) {
				b := e.list(t, tc.token, tc.query)
				if join(ids(b.Alerts)) != join(tc.want) || b.Next != "" {
					t.Errorf("got %s (next %q), want %v", describe(b.Alerts), b.Next, tc.want)
				}
			})
		}
		byID := []struct {
			name, token, method, path string
			status                    int
		}{
			{"a gets its alert", apitest.ReadA, "GET", "/api/v1/alerts/" + id["a1"], 200},
			{"a gets b's alert: 404", apitest.ReadA, "GET", "/api/v1/alerts/" + id["b1"], 404},
			{"an unknown id: the same 404", apitest.ReadA, "GET", "/api/v1/alerts/0123456789abcdef-01234567", 404},
			{"admin a acks b's alert: 404", apitest.AdminA, "POST", "/api/v1/alerts/" + id["b1"] + "/ack", 404},
			{"admin a unacks b's alert: 404", apitest.AdminA, "DELETE", "/api/v1/alerts/" + id["b1"] + "/ack", 404},
			{"read a acks its alert: 403", apitest.ReadA, "POST", "/api/v1/alerts/" + id["a1"] + "/ack", 403},
			{"all tenants get b's alert", apitest.ReadAll, "GET", "/api/v1/alerts/" + id["b1"], 200},
			{"admin all acks b's alert", apitest.AdminAll, "POST", "/api/v1/alerts/" + id["b1"] + "/ack", 200},
		}
		var notFound []byte
		for _, tc := range byID {
			t.Run(tc.name, func(t *testing.T) {
				r := e.c.WithToken(tc.token).Do(tc.method, tc.path, nil)
				if r.Status != tc.status {
					t.Fatalf("%d %s, want %d", r.Status, r.Body, tc.status)
				}
				if r.Status == 404 {
					// Another tenant's alert and no alert are answered alike.
					if notFound != nil && string(r.Body) != string(notFound) {
						t.Errorf("404 body %s differs from %s", r.Body, notFound)
					}
					notFound = r.Body
				}
			})
		}
	})
}

func TestFilters(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, db enginetest.Engine) {
		e := newEnv(t, db, api.DefaultConfig(), testConfig())
		id := seed(e)
		nextSecond(t)
		// a2 goes (resolves at once: keep_firing_for 0), a1 turns critical.
		crit := inst(10, "dst_address", "192.0.2.1")
		crit.Severity = "critical"
		e.evaluate("a", "ddos", crit)
		e.flush()
		resolved := e.list(t, apitest.ReadA, "status=resolved").Alerts
		if len(resolved) != 1 || resolved[0].EndsAt == nil || resolved[0].FiredAt == nil {
			t.Fatalf("resolved: %s", describe(resolved))
		}
		since := url.QueryEscape(resolved[0].UpdatedAt.Format("2006-01-02T15:04:05Z07:00"))
		for _, tc := range []struct {
			query string
			want  []string
		}{
			{"status=firing", sorted(id["a1"], id["au"])},
			{"status=resolved", sorted(id["a2"])},
			{"status=firing,resolved", sorted(id["a1"], id["a2"], id["au"])},
			{"status=firing&status=resolved", sorted(id["a1"], id["a2"], id["au"])},
			{"status=pending", nil},
			{"severity=critical", sorted(id["a1"])},
			{"severity=warning&status=firing", sorted(id["au"])},
			{"rule=ddos", sorted(id["a1"], id["a2"])},
			{"rule=util", sorted(id["au"])},
			{"exporter=198.51.100.1", sorted(id["au"])},
			{"exporter=::ffff:198.51.100.1", sorted(id["au"])},
			{"exporter=198.51.100.2", nil},
			{"subject=192.0.2.2", sorted(id["a2"])},
			{"subject=dst_address:192.0.2.2", sorted(id["a2"])},
			{"subject=src_address:192.0.2.2", nil},
			{"subject=if_index:7&subject=direction:in", sorted(id["au"])},
			{"subject=if_index:7&subject=direction:out", nil},
			{"subject=7", sorted(id["au"])},
			{"since=" + since, sorted(id["a1"], id["a2"])},
			{"until=" + since, sorted(id["au"])},
		} {
			t.Run(tc.query, func(t *testing.T) {
				if got := e.list(t, apitest.ReadA, tc.query).Alerts; join(ids(got)) != join(tc.want) {
					t.Errorf("got %s, want %v", describe(got), tc.want)
				}
			})
		}
	})
}

// Bad input is a 400 (or 404 for ids), never a 5xx, never an engine's
// text; and it finds nothing it should not.
func TestBadInput(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, db enginetest.Engine) {
		e := newEnv(t, db, api.DefaultConfig(), testConfig())
		id := seed(e)
		inject := []string{"'", "' OR 1=1 --", "a') OR ('1'='1", `\'; DROP TABLE alerts; --`, "1; SELECT * FROM system.tables",
			"{x:String}", "$$x$$", "?", "\x00", "%", strings.Repeat("x", 2000)}
		c := e.c.WithToken(apitest.AdminA)
		check := func(t *testing.T, r apitest.Response, want ...int) {
			t.Helper()
			ok := false
			for _, w := range want {
				ok = ok || r.Status == w
			}
			body := string(r.Body)
			if !ok || r.ErrorCode() == "" && r.Status >= 400 {
				t.Errorf("%d %s, want %v", r.Status, body, want)
			}
			// The engines' error texts, the queries' own words (the inputs
			// are echoed, so not their words).
			for _, leak := range []string{"DB::Exception", "Code:", "code: ", "argMax", "alert_versions", "FROM alerts", "toDateTime"} {
				if r.Status >= 400 && strings.Contains(body, leak) {
					t.Errorf("answer leaks %q: %s", leak, body)
				}
			}
		}
		for _, v := range inject {
			q := url.QueryEscape(v)
			for _, param := range []string{"status", "severity", "rule", "exporter", "since", "until", "page_token", "page_size"} {
				check(t, c.Get("/api/v1/alerts?"+param+"="+q), 400)
			}
			// Values of these are data: they match nothing, bound as
			// arguments.
			for _, param := range []string{"subject", "tenant"} {
				r := c.Get("/api/v1/alerts?" + param + "=" + q)
				check(t, r, 200, 400)
				if r.Status == 200 && strings.Contains(string(r.Body), `"id"`) {
					t.Errorf("%s=%q found alerts: %s", param, v, r.Body)
				}
			}
			for _, param := range []string{"status", "severity", "rule"} {
				check(t, c.Get("/api/v1/alerts/stream?"+param+"="+q), 400)
			}
			p := url.PathEscape(v)
			check(t, c.Get("/api/v1/alerts/"+p), 404, 400)
			check(t, c.Do("POST", "/api/v1/alerts/"+p+"/ack", nil), 404, 400)
			check(t, c.Do("DELETE", "/api/v1/alerts/"+p+"/ack", nil), 404, 400)
			if !strings.ContainsAny(v, "\x00\n") {
				check(t, c.Do("POST", "/api/v1/alerts/"+id["a1"]+"/ack", nil, "If-Match", v), 412, 400)
			}
		}
		for _, tc := range []struct{ name, path string }{
			{"unknown parameter", "/api/v1/alerts?colour=red"},
			{"page size 0", "/api/v1/alerts?page_size=0"},
			{"page size 1001", "/api/v1/alerts?page_size=1001"},
			{"until before since", "/api/v1/alerts?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z"},
			{"nine subjects", "/api/v1/alerts?" + strings.Repeat("subject=a&", 9)},
			{"subject without a value", "/api/v1/alerts?subject=dst_address:"},
			{"a repeated rule", "/api/v1/alerts?rule=a&rule=b"},
			{"stream with an unknown parameter", "/api/v1/alerts/stream?subject=x"},
		} {
			t.Run(tc.name, func(t *testing.T) { check(t, c.Get(tc.path), 400) })
		}
		r := c.Do("POST", "/api/v1/alerts/"+id["a1"]+"/ack", map[string]string{"commnet": "x"})
		check(t, r, 400)
		r = c.Do("POST", "/api/v1/alerts/"+id["a1"]+"/ack", map[string]string{"comment": strings.Repeat("x", 1001)})
		check(t, r, 400)
		r = c.Get("/api/v1/alerts/stream", "Last-Event-ID", "1.2.' OR 1=1")
		check(t, r, 400)
	})
}

func TestETagsAndAcks(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, db enginetest.Engine) {
		e := newEnv(t, db, api.DefaultConfig(), testConfig())
		id := seed(e)
		c := e.c.WithToken(apitest.AdminA)
		list := c.Get("/api/v1/alerts")
		listTag := list.Header.Get("ETag")
		if r := c.Get("/api/v1/alerts", "If-None-Match", listTag); r.Status != http.StatusNotModified || len(r.Body) != 0 {
			t.Fatalf("list with its ETag: %d %s, want 304", r.Status, r.Body)
		}
		one := c.Get("/api/v1/alerts/" + id["a1"])
		var detail alertapi.AlertDetail
		one.JSON(t, &detail)
		tag := one.Header.Get("ETag")
		if tag != `"v1"` || detail.Alert.Version != 1 || len(detail.Events) != 1 || detail.Events[0].FromStatus != nil || detail.Events[0].ToStatus != "firing" {
			t.Fatalf("alert: ETag %s, %+v", tag, detail)
		}
		if r := c.Get("/api/v1/alerts/"+id["a1"], "If-None-Match", tag); r.Status != http.StatusNotModified {
			t.Fatalf("alert with its ETag: %d, want 304", r.Status)
		}
		// The alert changes (an evaluation): the old ETag no longer holds.
		e.evaluate("a", "ddos", inst(11, "dst_address", "192.0.2.1"), inst(20, "dst_address", "192.0.2.2"))
		if r := c.Do("POST", "/api/v1/alerts/"+id["a1"]+"/ack", nil, "If-Match", tag); r.Status != http.StatusPreconditionFailed ||
			r.ErrorCode() != api.CodePrecondition || r.Header.Get("ETag") != `"v2"` {
			t.Fatalf("ack with a stale If-Match: %d %s ETag %s, want 412 with the current ETag", r.Status, r.Body, r.Header.Get("ETag"))
		}
		r := c.Do("POST", "/api/v1/alerts/"+id["a1"]+"/ack", map[string]string{"comment": "on it"}, "If-Match", `"v2"`)
		var acked alertapi.Alert
		r.JSON(t, &acked)
		if r.Status != 200 || !acked.Acknowledged || acked.AcknowledgedBy != "admin a" || acked.AcknowledgedAt == nil ||
			acked.Version != 3 || r.Header.Get("ETag") != `"v3"` {
			t.Fatalf("ack: %d %s", r.Status, r.Body)
		}
		// Acknowledging again changes nothing; without If-Match any version goes.
		if r := c.Do("POST", "/api/v1/alerts/"+id["a1"]+"/ack", nil); r.Status != 200 || r.Header.Get("ETag") != `"v3"` {
			t.Fatalf("second ack: %d %s", r.Status, r.Body)
		}
		e.flush()
		var after alertapi.AlertDetail
		c.Get("/api/v1/alerts/"+id["a1"]).JSON(t, &after)
		if last := after.Events[len(after.Events)-1]; last.Kind != "ack" || last.Actor != "admin a" || last.Note != "on it" || !after.Alert.Acknowledged {
			t.Fatalf("after the ack: %+v", after)
		}
		if r := c.Get("/api/v1/alerts", "If-None-Match", listTag); r.Status != 200 {
			t.Fatalf("list after changes with the old ETag: %d, want 200", r.Status)
		}
		r = c.Do("DELETE", "/api/v1/alerts/"+id["a1"]+"/ack", nil, "If-Match", `"v3"`)
		var unacked alertapi.Alert
		r.JSON(t, &unacked)
		if r.Status != 200 || unacked.Acknowledged || unacked.AcknowledgedAt != nil || unacked.Version != 4 {
			t.Fatalf("unack: %d %s", r.Status, r.Body)
		}
		// a2 resolves: it can no longer be acknowledged.
		e.evaluate("a", "ddos", inst(11, "dst_address", "192.0.2.1"))
		e.flush()
		if r := c.Do("POST", "/api/v1/alerts/"+id["a2"]+"/ack", nil); r.Status != http.StatusConflict || r.ErrorCode() != api.CodeConflict {
			t.Fatalf("ack of a resolved alert: %d %s, want 409", r.Status, r.Body)
		}
	})
}
