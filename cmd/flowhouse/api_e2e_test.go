package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/tenant"
	"github.com/flowhouse/flowhouse/token"
)

// Two tenants whose data must never cross: every marker of one is looked
// for in every answer given to the other's tokens.
var (
	tenantA = isolated{name: "acme", exporter: "192.0.2.10", dst: "10.1.1.1", mac: "02:aa:00:00:00:01", vendor: "AcmeVendor"}
	tenantB = isolated{name: "globex", exporter: "198.51.100.10", dst: "10.2.2.2", mac: "02:bb:00:00:00:02", vendor: "GlobexVendor"}
)

type isolated struct {
	name, exporter, dst, mac, vendor string
	alertIDs                         []string
}

// markers are the texts that only the tenant's data holds.
func (d isolated) markers() []string {
	return append([]string{d.name, d.exporter, d.dst, d.mac, d.vendor}, d.alertIDs...)
}

// The matrix sends about 120 refused tokens from one address within
// seconds: the throttle of refusals (tested in internal/apitest) is off.
const apiE2EConfig = `
http:
  auth_failure_rate: 0
enrich:
  default_tenant: acme
  exporters:
    - match: 192.0.2.0/24
      tenant: acme
      name: edge-acme
    - match: 198.51.100.0/24
      tenant: globex
      name: edge-globex
rules:
  sql:
    - name: busy_destination
      interval: 1s
      tenants: [acme, globex]
      subject: [dst, exporter]
      query: |
        SELECT tenant, replaceRegexpOne(IPv6NumToString(dst_address), '^::ffff:', '') AS dst,
               replaceRegexpOne(IPv6NumToString(exporter_address), '^::ffff:', '') AS exporter, count() AS value
        FROM flows
        WHERE time_received >= now() - 3600
        GROUP BY tenant, dst, exporter
`

// apiWorld is a running serve with both tenants' data and a token of
// every kind the matrix tries.
type apiWorld struct {
	srv    *server
	config string // the configuration file, for flowhouse token
	client *apitest.Client
	tokens map[string]string // kind -> secret
	ids    map[string]string // kind -> token id
}

// Token kinds of the matrix.
const (
	kindNone, kindMalformed, kindChecksum = "no token", "malformed", "wrong checksum"
	kindRevoked, kindExpired              = "revoked", "expired"
	kindReadA, kindReadB                  = "read A", "read B"
	kindAdminA, kindAdminAll              = "admin A", "admin all"
)

var matrixKinds = []string{kindNone, kindMalformed, kindChecksum, kindRevoked, kindExpired, kindReadA, kindReadB, kindAdminA, kindAdminAll}

func newAPIWorld(t *testing.T, engine string) *apiWorld {
	cleanEnv(t)
	t.Setenv("FLOWHOUSE_TOKENS_GENERATED_KEY_FILE", filepath.Join(t.TempDir(), "tokens.key"))
	w := &apiWorld{srv: startServerWith(t, engine, apiE2EConfig), tokens: map[string]string{}, ids: map[string]string{},
		config: writeTemp(t, "flowhouse.yaml", apiE2EConfig)}
	w.client = apitest.NewClient(t, "http://"+w.srv.http)
	w.seed(t)

	mk := func(kind string, args ...string) {
		w.tokens[kind], w.ids[kind] = w.createToken(t, append(args, "--name", kind)...)
	}
	mk(kindReadA, "--tenant", tenantA.name, "--role", "read")
	mk(kindReadB, "--tenant", tenantB.name, "--role", "read")
	mk(kindAdminA, "--tenant", tenantA.name, "--role", "admin")
	mk(kindAdminAll, "--all-tenants", "--role", "admin")
	mk(kindRevoked, "--tenant", tenantA.name, "--role", "admin")
	if code, out, errs := runCLI(t, "--config", w.config, "token", "revoke", w.ids[kindRevoked]); code != 0 {
		t.Fatalf("token revoke: %d %s %s", code, out, errs)
	}
	w.tokens[kindExpired] = w.expiredToken(t)
	w.tokens[kindMalformed] = "fhp_not-a-token"
	// A typo in the checksum: another last character.
	good := w.tokens[kindAdminAll]
	typo := byte('A')
	if good[len(good)-1] == 'A' {
		typo = 'B'
	}
	w.tokens[kindChecksum] = good[:len(good)-1] + string(typo)

	// The rule has fired for both tenants once every alert is listed.
	admin := w.client.WithToken(good)
	testkit.Eventually(t, "the rule's alerts of both tenants", 60*time.Second, func() bool {
		var list struct {
			Alerts []struct{ ID, Tenant string } `json:"alerts"`
		}
		r := admin.Get("/api/v1/alerts?status=firing")
		if r.Status != 200 {
			return false
		}
		r.JSON(t, &list)
		tenantA.alertIDs, tenantB.alertIDs = nil, nil
		for _, a := range list.Alerts {
			switch a.Tenant {
			case tenantA.name:
				tenantA.alertIDs = append(tenantA.alertIDs, a.ID)
			case tenantB.name:
				tenantB.alertIDs = append(tenantB.alertIDs, a.ID)
			}
		}
		return len(tenantA.alertIDs) > 0 && len(tenantB.alertIDs) > 0
	})
	return w
}

// createToken runs flowhouse token create with the world's
// configuration (its tenants) and returns the secret and id it printed.
func (w *apiWorld) createToken(t *testing.T, args ...string) (secret, id string) {
	t.Helper()
	code, out, errs := runCLI(t, append([]string{"--config", w.config, "token", "create"}, args...)...)
	s, i := secretLine.FindStringSubmatch(out), idLine.FindStringSubmatch(out)
	if code != 0 || s == nil || i == nil {
		t.Fatalf("token create %q: exit %d\n%s%s", args, code, out, errs)
	}
	return s[1], i[1]
}

// expiredToken is a real token of tenant A that expired a minute ago:
// made by a store of the same database whose clock is in the past.
func (w *apiWorld) expiredToken(t *testing.T) string {
	t.Helper()
	tenants, err := tenant.New(w.srv.cfg.Enrich.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-3 * time.Minute)
	s, err := token.New(w.srv.cfg.Tokens, token.Deps{DB: w.srv.db, Tenants: tenants, Secrets: w.srv.cfg.Enrich.Secrets,
		Now: func() time.Time { return past }})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := s.Create(context.Background(), token.Spec{Name: kindExpired, Tenant: tenantA.name, Role: api.RoleAdmin,
		Expires: 2 * time.Minute, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// seed writes each tenant's flows, exporter statistics and devices
// through the store, as the collector and enrichment would.
func (w *apiWorld) seed(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	caps, err := dbapi.DetectCapabilities(ctx, w.srv.db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b := store.NewFlowBatch(64)
	var stats []flow.ExporterStats
	for _, d := range []isolated{tenantA, tenantB} {
		exp := flow.AddrFromNetip(netip.MustParseAddr(d.exporter))
		for i := range 20 {
			ms := now.Add(-time.Duration(i) * time.Second).UnixMilli()
			b.Append([]flow.Flow{{TimeReceivedMs: ms, TimeStartMs: ms - 1000, TimeEndMs: ms, Protocol: flow.ProtoIPFIX,
				ExporterAddr: exp, ExporterName: "edge-" + d.name, Tenant: d.name, SamplingRate: 1,
				SrcAddr: flow.AddrFromNetip(netip.MustParseAddr("10.9.9.9")), DstAddr: flow.AddrFromNetip(netip.MustParseAddr(d.dst)),
				SrcPort: 40000, DstPort: 443, IPProto: 6, IPVersion: 4, Bytes: 1500, Packets: 1, InIf: 1, OutIf: 2}})
		}
		stats = append(stats, flow.ExporterStats{Addr: exp, Protocols: []string{"ipfix"}, Datagrams: 20, Flows: 20})
		addr := "toFixedString(IPv6StringToNum('::ffff:" + d.exporter + "'), 16)"
		if caps.IPv6 {
			addr = "toIPv6('::ffff:" + d.exporter + "')"
		}
		for _, q := range []string{
			fmt.Sprintf(`INSERT INTO devices (tenant, mac, vendor, first_seen, last_seen, last_exporter_address, last_if_index, updated_at)
				SELECT '%s', MACStringToNum('%s'), '%s', now() - 3600, now(), %s, 1, now()`, d.name, d.mac, d.vendor, addr),
			fmt.Sprintf(`INSERT INTO interfaces (tenant, exporter_address, if_index, if_name, updated_at)
				SELECT '%s', %s, 1, 'ge-%s', now()`, d.name, addr, d.name),
		} {
			if err := w.srv.db.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.srv.db.InsertFlows(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.db.InsertExporterStats(ctx, now, stats); err != nil {
		t.Fatal(err)
	}
}

// endpoint is one operation of the API as the matrix exercises it, on a
// resource of tenant A.
type endpoint struct {
	method, route string // the route as the OpenAPI document names it
	path          string // the request path (with query) for tenant A's resource
	body          any
	admin         bool // read tokens are refused (403)
	allTenants    bool // tenant-scoped admins are refused (403)
	byKey         bool // names a resource of A: tenant B's token gets 404
	ok            int  // the success status
	stream        bool // an event stream: read briefly, then closed
	public        bool // answered without a token
	showsA        bool // its success answer to A's tokens holds A's data
	fresh         func(t *testing.T, w *apiWorld) string
}

// want is the status a token of kind gets.
func (e endpoint) want(kind string) int {
	if e.public {
		return e.ok
	}
	switch kind {
	case kindNone, kindMalformed, kindChecksum, kindRevoked, kindExpired:
		return http.StatusUnauthorized
	case kindReadA, kindReadB:
		if e.admin || (e.method != http.MethodGet && e.method != http.MethodHead) {
			return http.StatusForbidden
		}
		if kind == kindReadB && e.byKey {
			return http.StatusNotFound
		}
	case kindAdminA:
		if e.allTenants {
			return http.StatusForbidden
		}
	}
	return e.ok
}

func (w *apiWorld) endpoints() []endpoint {
	alertA := tenantA.alertIDs[0]
	freshToken := func(t *testing.T, w *apiWorld) string {
		_, id := w.createToken(t, "--tenant", tenantA.name, "--role", "read", "--name", "to revoke")
		return "/api/v1/tokens/" + id
	}
	return []endpoint{
		{method: "GET", route: "/openapi.json", path: "/api/v1/openapi.json", public: true, ok: 200},
		{method: "GET", route: "/alerts", path: "/api/v1/alerts?page_size=100", showsA: true, ok: 200},
		{method: "GET", route: "/alerts/stream", path: "/api/v1/alerts/stream", showsA: true, ok: 200, stream: true},
		{method: "GET", route: "/alerts/{id}", path: "/api/v1/alerts/" + alertA, byKey: true, showsA: true, ok: 200},
		{method: "POST", route: "/alerts/{id}/ack", path: "/api/v1/alerts/" + alertA + "/ack", body: map[string]string{"comment": "on it"}, byKey: true, ok: 200},
		{method: "DELETE", route: "/alerts/{id}/ack", path: "/api/v1/alerts/" + alertA + "/ack", byKey: true, ok: 200},
		{method: "GET", route: "/exporters", path: "/api/v1/exporters", showsA: true, ok: 200},
		{method: "GET", route: "/exporters/{addr}", path: "/api/v1/exporters/" + tenantA.exporter, byKey: true, showsA: true, ok: 200},
		{method: "GET", route: "/exporters/{addr}/interfaces", path: "/api/v1/exporters/" + tenantA.exporter + "/interfaces", byKey: true, showsA: true, ok: 200},
		{method: "GET", route: "/exporters/{addr}/neighbors", path: "/api/v1/exporters/" + tenantA.exporter + "/neighbors", byKey: true, ok: 200},
		{method: "GET", route: "/topology", path: "/api/v1/topology", ok: 200},
		{method: "GET", route: "/devices", path: "/api/v1/devices", showsA: true, ok: 200},
		{method: "GET", route: "/devices/{mac}", path: "/api/v1/devices/" + tenantA.mac, byKey: true, showsA: true, ok: 200},
		{method: "GET", route: "/tenants", path: "/api/v1/tenants", admin: true, showsA: true, ok: 200},
		{method: "GET", route: "/traffic/top", path: "/api/v1/traffic/top?by=dst_address", showsA: true, ok: 200},
		{method: "GET", route: "/traffic/series", path: "/api/v1/traffic/series?step=1m", ok: 200},
		{method: "POST", route: "/sql", path: "/api/v1/sql", body: map[string]string{"query": "SELECT tenant, count() FROM flows GROUP BY tenant"}, admin: true, allTenants: true, ok: 200},
		{method: "GET", route: "/tenants/{tenant}/export", path: "/api/v1/tenants/" + tenantA.name + "/export", admin: true, byKey: true, showsA: true, ok: 200},
		{method: "GET", route: "/tenants/{tenant}/data/jobs", path: "/api/v1/tenants/" + tenantA.name + "/data/jobs", admin: true, byKey: true, ok: 200},
		{method: "GET", route: "/tokens", path: "/api/v1/tokens", admin: true, ok: 200},
		{method: "POST", route: "/tokens", path: "/api/v1/tokens", body: map[string]string{"name": "made in the matrix", "tenant": tenantA.name, "role": "read", "expires_in": "1d"}, admin: true, ok: 201},
		{method: "GET", route: "/tokens/self", path: "/api/v1/tokens/self", ok: 200},
		{method: "DELETE", route: "/tokens/{id}", admin: true, byKey: true, ok: 200, fresh: freshToken},
		// Deleting A's data comes last: the job it makes is read after it.
		{method: "DELETE", route: "/tenants/{tenant}/data", path: "/api/v1/tenants/" + tenantA.name + "/data", admin: true, byKey: true, ok: 202},
		{method: "GET", route: "/tenants/{tenant}/data/jobs/{id}", admin: true, byKey: true, ok: 200},
	}
}

// The auth matrix: every operation of the OpenAPI document, with every
// kind of token, answers the status its role and scope allow, and no
// answer to one tenant's token holds a datum of the other tenant —
// including errors, counts, streams and exports.
func TestAPIAuthMatrix(t *testing.T) {
	for _, engine := range []string{"embedded", "server"} {
		t.Run(engine, func(t *testing.T) { testAuthMatrix(t, engine) })
	}
}

func testAuthMatrix(t *testing.T, engine string) {
	w := newAPIWorld(t, engine)
	eps := w.endpoints()
	checkCoversDocument(t, w, eps)

	var jobID string
	for _, e := range eps {
		var row []string
		for _, kind := range matrixKinds {
			path := e.path
			if e.fresh != nil {
				path = e.fresh(t, w)
			}
			if e.route == "/tenants/{tenant}/data/jobs/{id}" {
				path = "/api/v1/tenants/" + tenantA.name + "/data/jobs/" + jobID
			}
			status, body := w.call(t, kind, e, path)
			row = append(row, fmt.Sprintf("%s %d (%d bytes)", kind, status, len(body)))
			if want := e.want(kind); status != want {
				t.Errorf("%s %s with %s: %d, want %d\n%.300s", e.method, e.route, kind, status, want, body)
			}
			w.checkNoLeak(t, kind, e.method+" "+path, body)
			if e.showsA && (kind == kindReadA || kind == kindAdminA) && status == e.ok &&
				!slices.ContainsFunc(tenantA.markers(), func(m string) bool { return strings.Contains(string(body), m) }) {
				t.Errorf("%s %s with %s: no datum of tenant A in the answer\n%.300s", e.method, path, kind, body)
			}
			if e.route == "/tenants/{tenant}/data" && status == http.StatusAccepted && jobID == "" {
				var job struct{ ID string }
				_ = json.Unmarshal(body, &job)
				jobID = job.ID
			}
		}
		t.Logf("%s %s: %s", e.method, e.route, strings.Join(row, ", "))
	}
	if jobID == "" {
		t.Error("no deletion job was made")
	}
}

// checkCoversDocument fails when the served document has an operation
// the matrix does not try: a new endpoint must join the matrix.
func checkCoversDocument(t *testing.T, w *apiWorld, eps []endpoint) {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	w.client.Get("/api/v1/openapi.json").JSON(t, &doc)
	var missing []string
	for route, ops := range doc.Paths {
		for method := range ops {
			m := strings.ToUpper(method)
			if !slices.ContainsFunc(eps, func(e endpoint) bool { return e.method == m && e.route == route }) {
				missing = append(missing, m+" "+route)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("operations of the OpenAPI document the auth matrix does not try: %v", missing)
	}
}

// call sends one request of the matrix; a stream is read for a moment.
func (w *apiWorld) call(t *testing.T, kind string, e endpoint, path string) (int, []byte) {
	t.Helper()
	c := w.client.WithToken(w.tokens[kind])
	if !e.stream {
		r := c.Do(e.method, path, e.body)
		return r.Status, r.Body
	}
	// Long enough for the stream's first poll past its settle time.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, e.method, "http://"+w.srv.http+path, nil)
	if tok := w.tokens[kind]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Last-Event-ID", "1.0.0000000000000000-00000000") // from the start: every change the token may see
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("stream with %s: %v", kind, err)
	}
	defer resp.Body.Close()
	var got []byte
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() { // until the deadline cuts the stream
		got = append(append(got, sc.Bytes()...), '\n')
	}
	return resp.StatusCode, got
}

// checkNoLeak fails when an answer to a tenant-scoped token holds a
// marker of the other tenant that the request did not itself carry.
func (w *apiWorld) checkNoLeak(t *testing.T, kind, request string, body []byte) {
	t.Helper()
	var other isolated
	switch kind {
	case kindReadA, kindAdminA:
		other = tenantB
	case kindReadB:
		other = tenantA
	default:
		return
	}
	for _, m := range other.markers() {
		if strings.Contains(string(body), m) && !strings.Contains(request, m) {
			t.Errorf("%s with %s: the answer holds %q, a datum of tenant %s\n%.400s", request, kind, m, other.name, body)
		}
	}
}

// injections are hostile values for every parameter: SQL, ClickHouse
// query parameters and heredocs, NUL, Unicode spaces, overlong text.
var injections = []string{
	`' OR 1=1 --`, `1; DROP TABLE flows`, `1) UNION SELECT * FROM system.users --`, `{x:String}`, `$$ SELECT 1 $$`,
	"a\x00b", "\u00a0OR\u2003 1=1", `\'`, `%27%20OR%201=1`, `file('/etc/passwd')`, strings.Repeat("9", 2000),
}

// injectedErrorText is what would show that input reached the engine
// as SQL, or that an error leaked its internals.
var injectedErrorText = []string{"DB::Exception", "Code: ", "SYNTAX_ERROR", "Syntax error", "goroutine ", "panic", "clickhouse"}

// Every query and path parameter of every read of the document, with
// each hostile value: a 4xx (or an answer that ignores it as data),
// never a 5xx, never the engine's error text.
func TestAPIInjections(t *testing.T) {
	w := newAPIWorld(t, "embedded")
	admin := w.client.WithToken(w.tokens[kindAdminAll])
	doc := w.client.Validator().Doc()
	tried := 0
	for _, e := range w.endpoints() {
		if e.method != http.MethodGet || e.stream || e.public || e.path == "" {
			continue
		}
		op := doc.Paths.Find(e.route).GetOperation(e.method)
		if op == nil {
			t.Fatalf("%s %s is not in the document", e.method, e.route)
		}
		base, _, _ := strings.Cut(e.path, "?")
		for _, pr := range op.Parameters {
			p := pr.Value
			for _, bad := range injections {
				var path string
				switch p.In {
				case "query":
					sep := "?"
					if strings.Contains(e.path, "?") {
						sep = "&"
					}
					path = e.path + sep + url.QueryEscape(p.Name) + "=" + url.QueryEscape(bad)
				case "path":
					path = strings.Replace(e.path, pathValue(e, p.Name), url.PathEscape(bad), 1)
				default:
					continue
				}
				tried++
				r := admin.Get(path)
				if r.Status >= 500 {
					t.Errorf("%s with %s=%q: %d\n%.300s", base, p.Name, bad, r.Status, r.Body)
				}
				for _, leak := range injectedErrorText {
					if strings.Contains(string(r.Body), leak) {
						t.Errorf("%s with %s=%q: the answer holds %q\n%.300s", base, p.Name, bad, leak, r.Body)
					}
				}
			}
		}
	}
	t.Logf("%d hostile requests", tried)
	// The tables are intact.
	var n uint64
	if err := dbapi.QueryRow(context.Background(), w.srv.db, []any{&n}, "SELECT count() FROM flows"); err != nil || n != 40 {
		t.Errorf("flows after the injections: %d, %v; want 40", n, err)
	}
}

// pathValue is the value of path parameter name in the endpoint's path
// for tenant A's resource.
func pathValue(e endpoint, name string) string {
	switch name {
	case "id":
		return tenantA.alertIDs[0]
	case "addr":
		return tenantA.exporter
	case "mac":
		return tenantA.mac
	case "tenant":
		return tenantA.name
	}
	return "\x00no such parameter"
}
