package inventoryapi

import (
	"fmt"
	"slices"
	"testing"
)

// Pairing the observations of two exporters that hear each other: each
// pair of observations of one cable is one link, whatever the order.
func TestPairLinks(t *testing.T) {
	o := func(from, to string, idx uint32, name, port string) obs {
		r := neighborRow{}
		r.Protocol, r.LocalInterface = "lldp", NeighborInterface{IfIndex: idx, Name: name}
		r.Remote.PortID = port
		return obs{neighborRow: r, from: from, to: to}
	}
	ab := func(idx uint32, name, port string) obs { return o("A", "B", idx, name, port) }
	ba := func(idx uint32, name, port string) obs { return o("B", "A", idx, name, port) }
	for _, tt := range []struct {
		name   string
		ab, ba []obs
		want   []string
	}{
		{"one cable, port IDs that name nothing (MACs)", []obs{ab(1, "ge-0/0/1", "aa:bb")}, []obs{ba(11, "Gi0/1", "cc:dd")},
			[]string{"A1:cc:dd-B11:aa:bb/2"}},
		{"two cables, by interface name", []obs{ab(1, "ge-0/0/1", "Gi0/2"), ab(2, "ge-0/0/2", "Gi0/1")},
			[]obs{ba(11, "Gi0/1", "ge-0/0/2"), ba(12, "Gi0/2", "ge-0/0/1")},
			[]string{"A1:ge-0/0/1-B12:Gi0/2/2", "A2:ge-0/0/2-B11:Gi0/1/2"}},
		{"two cables, by locally assigned port ID (the ifIndex)", []obs{ab(1, "", "12"), ab(2, "", "11")},
			[]obs{ba(11, "", "2"), ba(12, "", "1")},
			[]string{"A1:1-B12:12/2", "A2:2-B11:11/2"}},
		{"two cables, one heard back", []obs{ab(1, "ge-0/0/1", "Gi0/1"), ab(2, "ge-0/0/2", "Gi0/2")}, []obs{ba(12, "Gi0/2", "ge-0/0/2")},
			[]string{"A1:-B-:Gi0/1/1", "A2:ge-0/0/2-B12:Gi0/2/2"}},
		{"heard one way only", []obs{ab(1, "ge-0/0/1", "Gi0/1")}, nil, []string{"A1:-B-:Gi0/1/1"}},
		{"heard the other way only", nil, []obs{ba(11, "Gi0/1", "ge-0/0/1")}, []string{"B11:-A-:ge-0/0/1/1"}},
		{"two each way that name nothing: not guessed", []obs{ab(1, "x", "p"), ab(2, "y", "q")}, []obs{ba(11, "z", "r"), ba(12, "w", "s")},
			[]string{"A1:-B-:p/1", "A2:-B-:q/1", "B11:-A-:r/1", "B12:-A-:s/1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, l := range pairLinks(tt.ab, tt.ba) {
				end := func(e LinkEnd) string {
					if e.IfIndex == nil {
						return e.Node + "-:" + e.PortID
					}
					return fmt.Sprintf("%s%d:%s", e.Node, *e.IfIndex, e.PortID)
				}
				got = append(got, fmt.Sprintf("%s-%s/%d", end(l.From), end(l.To), l.Observations))
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("links %q, want %q", got, tt.want)
			}
		})
	}
}
