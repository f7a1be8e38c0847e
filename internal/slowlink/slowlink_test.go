package slowlink

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// Bytes pass unchanged both ways; Close cuts the connections it holds.
func TestForwardsBothWaysAndCloses(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	l, err := New(echo.Addr().String(), 10<<20)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("flowhouse "), 10000) // more than one chunk
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes changed on the way")
	}
	if got := l.Passed(); got != int64(len(msg)) {
		t.Errorf("Passed = %d, want %d", got, len(msg))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(got); err == nil {
		t.Error("the connection is still open after Close")
	}
	if _, err := net.Dial("tcp", l.Addr()); err == nil {
		t.Error("still listening after Close")
	}
}

func TestRejectsNoRate(t *testing.T) {
	if _, err := New("127.0.0.1:1", 0); err == nil {
		t.Error("New with 0 bytes/s: no error")
	}
}
