package trafficapi

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

var (
	readmeURL  = regexp.MustCompile(`"http://127\.0\.0\.1:8080(/api/v1/traffic/[^"]+)"`)
	readmeBack = regexp.MustCompile(`\$\(\(H - (\d+)\*(\d+)\)\)|\$\(\(H - (\d+)\)\)`)
)

// TestREADMEExamples runs README's curl examples as written, with the
// shell's $H (now, on the hour) worked out here.
func TestREADMEExamples(t *testing.T) {
	block := testkit.READMEBlock(t, "## Traffic API", "sh")
	urls := readmeURL.FindAllStringSubmatch(block, -1)
	if len(urls) < 6 {
		t.Fatalf("README's traffic examples: %d curl lines, want 6", len(urls))
	}
	h := time.Now().Unix() / 3600 * 3600
	expand := func(u string) string {
		u = readmeBack.ReplaceAllStringFunc(u, func(m string) string {
			p := readmeBack.FindStringSubmatch(m)
			if p[3] != "" {
				n, _ := strconv.ParseInt(p[3], 10, 64)
				return strconv.FormatInt(h-n, 10)
			}
			a, _ := strconv.ParseInt(p[1], 10, 64)
			b, _ := strconv.ParseInt(p[2], 10, 64)
			return strconv.FormatInt(h-a*b, 10)
		})
		return strings.ReplaceAll(u, "$H", strconv.FormatInt(h, 10))
	}
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		insert(t, e, fixture(hour()))
		c := serve(t, DefaultConfig(), Deps{Reader: e.Reader}).WithToken(apitest.ReadA)
		for _, m := range urls {
			path := expand(m[1])
			r := c.Get(path)
			if r.Status != 200 {
				t.Errorf("%s: %d %s", path, r.Status, r.Body)
				continue
			}
			var ans struct {
				Source string `json:"source"`
			}
			r.JSON(t, &ans)
			if strings.Contains(m[1], "7*86400") && ans.Source != "flows_1h" {
				t.Errorf("%s: source %s, README says flows_1h", path, ans.Source)
			}
		}
	})
}
