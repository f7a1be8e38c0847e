package lifecycle

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type registry []string

func (r *registry) AddCheck(name string, _ func(context.Context) error) { *r = append(*r, name) }

func TestStartInOrderStopInReverse(t *testing.T) {
	var order []string
	comp := func(name string, startErr, stopErr error) Component {
		return Component{
			Name:   name,
			Start:  func(context.Context) error { order = append(order, "start "+name); return startErr },
			Stop:   func(context.Context) error { order = append(order, "stop "+name); return stopErr },
			Checks: []Check{{Name: name + "-ready"}},
		}
	}
	for _, tc := range []struct {
		name       string
		components []Component
		startErr   string
		stopErr    string
		want       string
		checks     string
	}{
		{"all start, all stop", []Component{comp("store", nil, nil), comp("enrich", nil, nil), comp("collector", nil, nil)},
			"", "", "start store,start enrich,start collector,stop collector,stop enrich,stop store", "store-ready,enrich-ready,collector-ready"},
		{"a failed start stops the started", []Component{comp("store", nil, nil), comp("enrich", errors.New("boom"), nil), comp("collector", nil, nil)},
			"start enrich: boom", "", "start store,start enrich,stop store", "store-ready,enrich-ready"},
		{"stop errors are named and joined, every stop runs", []Component{comp("store", nil, errors.New("flush")), comp("api", nil, errors.New("close"))},
			"", "stop api: close\nstop store: flush", "start store,start api,stop api,stop store", "store-ready,api-ready"},
		{"nil start and stop", []Component{{Name: "hook"}, comp("store", nil, nil)},
			"", "", "start store,stop store", "store-ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order = nil
			var reg registry
			r := New(nil, &reg)
			err := r.Start(context.Background(), tc.components...)
			if (err == nil) != (tc.startErr == "") || (err != nil && err.Error() != tc.startErr) {
				t.Fatalf("Start: %v, want %q", err, tc.startErr)
			}
			if err == nil {
				err = r.Stop(context.Background())
				if (err == nil) != (tc.stopErr == "") || (err != nil && err.Error() != tc.stopErr) {
					t.Fatalf("Stop: %v, want %q", err, tc.stopErr)
				}
			}
			if got := strings.Join(order, ","); got != tc.want {
				t.Errorf("order %s\nwant  %s", got, tc.want)
			}
			if got := strings.Join(reg, ","); got != tc.checks {
				t.Errorf("checks %s, want %s", got, tc.checks)
			}
			if err := r.Stop(context.Background()); err != nil {
				t.Errorf("a second Stop: %v", err)
			}
		})
	}
}
