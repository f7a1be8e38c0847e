package store_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/store"
)

// A batch larger than one Native block is sent in several blocks of one
// INSERT: every row arrives once, with its columns still aligned across
// block boundaries, and the server makes one part of it, as it did of
// one block.
func TestInsertFlowsInBlocksIsOneAlignedPart(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	// Merges would hide how many parts the insert made.
	if err := db.Exec(ctx, "SYSTEM STOP MERGES flows"); err != nil {
		t.Fatal(err)
	}
	const n = 2*8192 + 17 // two full blocks and a short one
	fs := benchFlows(n)
	var wantAE0 uint64
	for i := range fs {
		fs[i].Bytes = uint64(i + 1) // the row's identity
		if fs[i].InIfName == "ae0" {
			wantAE0 += fs[i].Bytes
		}
	}
	batch := store.NewFlowBatch(n)
	batch.Append(fs)
	if err := db.InsertFlows(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var rows, sum, distinct, ae0, distinctSrc, parts uint64
	if err := store.QueryRow(ctx, db, []any{&rows, &sum, &distinct, &ae0, &distinctSrc},
		"SELECT count(), sum(bytes), uniqExact(bytes), sumIf(bytes, in_if_name = 'ae0'), uniqExact(src_address) FROM flows"); err != nil {
		t.Fatal(err)
	}
	if err := store.QueryRow(ctx, db, []any{&parts},
		"SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'flows' AND active"); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name      string
		got, want uint64
	}{
		{"rows", rows, n},
		{"sum of row identities", sum, n * (n + 1) / 2},
		{"distinct rows", distinct, n},
		{"bytes of rows whose in_if_name is ae0 (strings aligned with rows)", ae0, wantAE0},
		{"distinct src_address (addresses aligned with rows)", distinctSrc, n},
		{"active parts", parts, 1},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s = %d, want %d", w.name, w.got, w.want)
		}
	}
}

// proxy forwards to upstream. After the first limit bytes from the
// client (limit >= 0) it stops reading from it, like a server that hangs
// in the middle of an INSERT; drop closes the connections it carries, as
// a server restart does, and new ones are forwarded again.
func proxy(t *testing.T, upstream string, limit int64) (addr string, drop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	drop = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	t.Cleanup(func() { ln.Close(); drop() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			go func() { io.Copy(c, u); c.Close() }()
			if limit >= 0 {
				go io.CopyN(u, c, limit) // then nothing more is read
			} else {
				go func() { io.Copy(u, c); u.Close() }()
			}
		}
	}()
	return ln.Addr().String(), drop
}

// A server that stops reading while the blocks of an INSERT are flushed
// fails the insert within insert_timeout instead of holding the writer.
func TestInsertFlowsToAStalledServerTimesOut(t *testing.T) {
	_, cfg := migratedDB(t)
	cfg.Addr, _ = proxy(t, cfg.Addr, 256<<10) // the handshake and first queries pass
	cfg.InsertTimeout = 2 * time.Second
	ctx := context.Background()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	batch := store.NewFlowBatch(600000)
	batch.Append(benchFlows(600000)) // compressed, more than the sockets' buffers take
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		ictx, cancel := context.WithTimeout(ctx, cfg.InsertTimeout)
		defer cancel()
		done <- db.InsertFlows(ictx, batch)
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("insert into a stalled server succeeded")
		}
		t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(30 * time.Second):
		t.Fatal("insert into a stalled server still blocked after 30s (insert_timeout 2s)")
	}
}
