package alertapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/alertapi"
	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

type sseEvent struct {
	id, event string
	change    alertapi.Change
}

// stream is one SSE connection read by a goroutine.
type stream struct {
	resp *http.Response
	raw  bytes.Buffer // everything read, for the OpenAPI check
	req  *http.Request

	mu     sync.Mutex
	events []sseEvent
	beats  int
	done   chan struct{}
}

func openStream(t *testing.T, e *env, token, query, lastID string) *stream {
	t.Helper()
	req, err := http.NewRequest("GET", e.base+"/api/v1/alerts/stream"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &stream{resp: resp, req: req, done: make(chan struct{})}
	go s.read(t)
	t.Cleanup(func() { resp.Body.Close(); <-s.done })
	return s
}

func (s *stream) read(t *testing.T) {
	defer close(s.done)
	sc := bufio.NewScanner(io.TeeReader(s.resp.Body, lockedWriter{s}))
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		switch {
		case line == "":
			if ev.event != "" {
				s.events = append(s.events, ev)
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ": heartbeat"):
			s.beats++
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(line[6:]), &ev.change); err != nil {
				t.Errorf("event data %q: %v", line, err)
			}
		}
		s.mu.Unlock()
	}
}

type lockedWriter struct{ s *stream }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.raw.Write(p)
}

func (s *stream) snapshot() ([]sseEvent, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sseEvent(nil), s.events...), s.beats
}

// waitFor waits for an event of alert id at version at least v.
func (s *stream) waitFor(t *testing.T, id string, v uint64) {
	t.Helper()
	testkit.Eventually(t, "event of "+id, 15*time.Second, func() bool {
		evs, _ := s.snapshot()
		for _, ev := range evs {
			if ev.change.ID == id && ev.change.Version >= v {
				return true
			}
		}
		return false
	})
}

func TestStream(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, db enginetest.Engine) {
		apiCfg := api.DefaultConfig()
		apiCfg.WriteTimeout = 2 * time.Second // a stream outlives it
		cfg := testConfig()
		cfg.StreamHeartbeat = time.Second
		e := newEnv(t, db, apiCfg, cfg)
		s := openStream(t, e, apitest.ReadA, "", "")
		seed(e)
		a1 := e.active("a", "192.0.2.1")
		s.waitFor(t, a1.ID, 1)

		// Resume: another connection from the last event gets what came
		// after it, nothing before.
		first, _ := s.snapshot()
		last := first[len(first)-1].id
		s.resp.Body.Close()
		<-s.done
		if _, err := e.m.Ack(context.Background(), "a", a1.ID, "alice", 0); err != nil {
			t.Fatal(err)
		}
		e.evaluate("b", "ddos", inst(31, "dst_address", "192.0.2.1"))
		s2 := openStream(t, e, apitest.ReadA, "", last)
		s2.waitFor(t, a1.ID, a1.Version+1)
		// The stream outlives the server's write timeout, beating.
		start := time.Now()
		testkit.Eventually(t, "heartbeats past the write timeout", 10*time.Second, func() bool {
			_, beats := s2.snapshot()
			return beats >= 1 && time.Since(start) > apiCfg.WriteTimeout+time.Second
		})
		second, _ := s2.snapshot()
		seen := map[string]bool{}
		for _, ev := range append(first, second...) {
			key := ev.change.ID + "@" + ev.change.UpdatedAt.String()
			if ev.change.Tenant != "a" {
				t.Errorf("tenant a's stream got %+v", ev.change)
			}
			if seen[ev.id] {
				t.Errorf("event %s (%s) twice", ev.id, key)
			}
			seen[ev.id] = true
		}
		for _, ev := range second {
			if !after(ev.id, last) {
				t.Errorf("resumed after %s, got %s again", last, ev.id)
			}
		}
		if ev := second[len(second)-1]; !ev.change.Acknowledged || ev.event != "alert" {
			t.Errorf("last event after the ack: %+v", ev)
		}

		// At most 4 streams per token: s2 and three more; the fifth is 429.
		for range 3 {
			openStream(t, e, apitest.ReadA, "?status=firing", "")
		}
		if r := e.c.WithToken(apitest.ReadA).Get("/api/v1/alerts/stream"); r.Status != http.StatusTooManyRequests {
			t.Errorf("fifth stream: %d %s, want 429", r.Status, r.Body)
		}

		// The server's stop ends the streams.
		if err := e.stop(); err != nil {
			t.Fatalf("stop with streams open: %v", err)
		}
		select {
		case <-s2.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the stream did not end when the server stopped")
		}
		s2.mu.Lock()
		raw := s2.raw.Bytes()
		s2.mu.Unlock()
		if err := e.c.Validator().Check(s2.req, nil, 200, s2.resp.Header, raw); err != nil {
			t.Error(err)
		}
	})
}

// after reports whether event id x comes after y: ids are
// written_at.version.id, in (written_at, id, version) order.
func after(x, y string) bool {
	px, py := strings.SplitN(x, ".", 3), strings.SplitN(y, ".", 3)
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	switch {
	case num(px[0]) != num(py[0]):
		return num(px[0]) > num(py[0])
	case px[2] != py[2]:
		return px[2] > py[2]
	}
	return num(px[1]) > num(py[1])
}
