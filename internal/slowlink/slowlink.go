// Package slowlink is a TCP proxy on loopback that passes what clients
// send at a bounded rate, all connections together: in front of a
// database server it makes a server that takes inserts slower than they
// come, but takes them (not down). Tests and flowbench use it to make
// backpressure real.
package slowlink

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// chunk is the most one read passes at once, and the limiter's burst.
const chunk = 16 << 10

// Link forwards connections on a loopback port to a target, throttling
// the client-to-target direction (an insert's data); answers pass freely.
type Link struct {
	ln     net.Listener
	target string
	lim    *rate.Limiter
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	passed atomic.Int64
}

// New listens on 127.0.0.1 and forwards to target at bytesPerSec.
func New(target string, bytesPerSec int) (*Link, error) {
	if bytesPerSec < 1 {
		return nil, fmt.Errorf("slowlink: %d bytes/s must be positive", bytesPerSec)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("slowlink: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{ln: ln, target: target, lim: rate.NewLimiter(rate.Limit(bytesPerSec), chunk),
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is where clients connect, host:port.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// SetRate changes the rate for what is sent from now on.
func (l *Link) SetRate(bytesPerSec int) { l.lim.SetLimit(rate.Limit(max(bytesPerSec, 1))) }

// Rate is the current rate in bytes/s.
func (l *Link) Rate() int { return int(l.lim.Limit()) }

// Passed is how many bytes clients have sent through the link, so a
// caller can size the rate from what its requests weigh.
func (l *Link) Passed() int64 { return l.passed.Load() }

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close() // the client sees the target refuse
			continue
		}
		if !l.track(c, s) {
			return
		}
		l.wg.Add(2)
		go func() { defer l.wg.Done(); l.throttledCopy(s, c); l.drop(s); l.drop(c) }()
		go func() { defer l.wg.Done(); io.Copy(c, s); l.drop(c); l.drop(s) }()
	}
}

func (l *Link) track(cs ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		l.conns[c] = struct{}{}
	}
	return true
}

func (l *Link) drop(c net.Conn) {
	c.Close()
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

func (l *Link) throttledCopy(dst, src net.Conn) {
	buf := make([]byte, chunk)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if l.lim.WaitN(l.ctx, n) != nil {
				return
			}
			// Counted before the write: the target may answer (an echo
			// does) before Write returns, and a caller that saw the
			// answer must see the bytes counted.
			l.passed.Add(int64(n))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				l.passed.Add(-int64(n))
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops listening, cuts every connection and waits for its
// goroutines.
func (l *Link) Close() error {
	l.mu.Lock()
	l.cancel()
	err := l.ln.Close()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}
