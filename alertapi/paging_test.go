package alertapi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

// Paging through alerts while alerts fire, change and resolve gives
// every alert that existed at the first page exactly once, and no alert
// twice.
func TestPagingWhileAlertsChange(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, db enginetest.Engine) {
		e := newEnv(t, db, api.DefaultConfig(), testConfig())
		for seed := range uint64(3) {
			t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
				for _, table := range tables {
					e.db.Exec(t, "TRUNCATE TABLE "+table)
				}
				pagingOnce(t, e, seed)
			})
		}
	})
}

// world is what the mutator evaluates: per tenant and rule, the subjects
// found.
type world map[[2]string][]string

func (w world) evaluate(e *env) {
	for k, subjects := range w {
		var ins []alerts.Instance
		for _, s := range subjects {
			ins = append(ins, inst(1, "dst_address", s))
		}
		e.evaluate(k[0], k[1], ins...)
	}
}

func pagingOnce(t *testing.T, e *env, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 7))
	w := world{}
	tenants, rules := []string{"a", "b"}, []string{"r0", "r1", "r2"}
	for i := range 30 + rnd.IntN(10) {
		k := [2]string{tenants[rnd.IntN(2)], rules[rnd.IntN(3)]}
		w[k] = append(w[k], fmt.Sprintf("10.0.%d.%d", seed, i))
	}
	// Alerts in a few different seconds, so that keys differ.
	for k := range w {
		e.evaluate(k[0], k[1])
	}
	w.evaluate(e)
	nextSecond(t)
	w.evaluate(e)
	e.settled(testConfig().StreamSettle)

	token := []string{apitest.ReadAll, apitest.ReadA}[seed%2]
	existing := map[string]bool{}
	for _, tn := range tenants {
		if token == apitest.ReadA && tn != "a" {
			continue
		}
		for _, a := range e.m.Active(tn) {
			existing[a.ID] = true
		}
	}

	// The mutator: each round, in a new second, every rule drops one
	// subject (it resolves), gains one (a new alert fires) and keeps the
	// others (their updated_at moves on); one alert is acknowledged.
	const maxRounds = 5
	var rounds atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		for rounds.Load() < maxRounds {
			select {
			case <-stop:
				return
			default:
			}
			now := time.Now().Unix()
			for time.Now().Unix() == now { // a change per second: updated_at moves
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			for k, subjects := range w {
				if len(subjects) > 1 {
					subjects = subjects[1:]
				}
				n++
				w[k] = append(subjects, fmt.Sprintf("10.1.%d.%d", seed, n))
			}
			w.evaluate(e)
			for _, tn := range tenants {
				if act := e.m.Active(tn); len(act) > 0 {
					a := act[rnd.IntN(len(act))]
					_, _ = e.m.Ack(context.Background(), tn, a.ID, "mutator", 0)
				}
			}
			e.flush()
			rounds.Add(1)
		}
	}()
	defer func() { close(stop); <-done }()

	seen := map[string]int{}
	size := 3 + rnd.IntN(5)
	next, pages := "", 0
	for {
		b := e.list(t, token, fmt.Sprintf("page_size=%d&page_token=%s", size, url.QueryEscape(next)))
		pages++
		for _, a := range b.Alerts {
			seen[a.ID]++
			if token == apitest.ReadA && a.Tenant != "a" {
				t.Errorf("tenant a's token listed %s of %s", a.ID, a.Tenant)
			}
		}
		if next = b.Next; next == "" {
			break
		}
		// Let the alerts change between pages (new alerts come after the
		// others: with no end to them, there would be no last page).
		r := rounds.Load()
		if r >= maxRounds {
			continue
		}
		testkit.Eventually(t, "a round of changes", 10*time.Second, func() bool { return rounds.Load() > r })
	}
	var missing, twice []string
	for id := range existing {
		if seen[id] != 1 {
			missing = append(missing, fmt.Sprintf("%s×%d", id, seen[id]))
		}
	}
	for id, n := range seen {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Errorf("%d pages of %d, %d rounds of changes: alerts of the start not listed once: %v; listed twice: %v",
			pages, size, rounds.Load(), missing, twice)
	}
	if rounds.Load() < maxRounds || pages < maxRounds {
		t.Errorf("%d pages, %d rounds: the test did not page through changes", pages, rounds.Load())
	}
	t.Logf("%d alerts at the start, %d listed in %d pages of %d during %d rounds", len(existing), len(seen), pages, size, rounds.Load())
}
