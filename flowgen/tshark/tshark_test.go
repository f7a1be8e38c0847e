package tshark

import (
	"context"
	"errors"
	"testing"
)

func TestMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := Path(); !errors.Is(err, ErrMissing) {
		t.Fatalf("Path: %v", err)
	}
	if _, err := Summarize(context.Background(), "x.pcap", 2055, CFlow, ""); !errors.Is(err, ErrMissing) {
		t.Fatalf("Summarize: %v", err)
	}
}
