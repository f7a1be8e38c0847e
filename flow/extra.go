package flow

import "fmt"

// The slots of Flow for information elements that the configuration maps
// to columns of their own (collector.extra_fields). They are fixed arrays
// so that a flow stays a value the hot path fills without allocating; a
// mapping takes the next free slot of its kind, in configuration order.
//
// Eight numbers cover what users ask for most in one deployment (the two
// NAPT ports, two or three MPLS labels, a couple of enterprise counters or
// IDs) and four addresses the NAT quad (post-NAT source and destination,
// IPv4 and IPv6). They cost 128 bytes of every Flow (464 to 592), which
// the decode benchmarks do not tell from noise; more would be paid by
// every flow of every deployment, mapped or not.
const (
	ExtraSlots     = 8
	ExtraAddrSlots = 4
)

// ExtraKind is how a mapped information element is read and stored.
type ExtraKind uint8

const (
	ExtraNone ExtraKind = iota
	ExtraIP             // 4 or 16 bytes, stored as Addr (IPv4 mapped)
	ExtraUint8
	ExtraUint16
	ExtraUint32
	ExtraUint64
	ExtraMAC       // 6 bytes, stored as MAC is
	ExtraMPLSLabel // a 3-byte label stack entry (RFC 3032), stored as its 20-bit label
)

var extraKindNames = [...]string{
	ExtraNone:      "",
	ExtraIP:        "ip",
	ExtraUint8:     "uint8",
	ExtraUint16:    "uint16",
	ExtraUint32:    "uint32",
	ExtraUint64:    "uint64",
	ExtraMAC:       "mac",
	ExtraMPLSLabel: "mpls_label",
}

// ExtraKindNames are the names ParseExtraKind accepts, as the
// configuration writes them.
func ExtraKindNames() []string { return append([]string(nil), extraKindNames[1:]...) }

// ParseExtraKind reads a kind by its configuration name.
func ParseExtraKind(s string) (ExtraKind, bool) {
	for k, name := range extraKindNames {
		if k != int(ExtraNone) && name == s {
			return ExtraKind(k), true
		}
	}
	return ExtraNone, false
}

func (k ExtraKind) String() string {
	if int(k) < len(extraKindNames) {
		return extraKindNames[k]
	}
	return fmt.Sprintf("ExtraKind(%d)", k)
}

// IsAddr reports whether the kind lives in ExtraAddr rather than Extra.
func (k ExtraKind) IsAddr() bool { return k == ExtraIP }

// ExtraColumn is a mapped column: its name, its kind, and the index of
// the slot holding it (in ExtraAddr for addresses, in Extra otherwise).
type ExtraColumn struct {
	Name string
	Kind ExtraKind
	Slot int
}

// LayoutExtra gives each kind its slot, in order; ok is false when the
// kinds need more slots than Flow has.
func LayoutExtra(kinds []ExtraKind) (slots []int, ok bool) {
	var addrs, nums int
	slots = make([]int, len(kinds))
	for i, k := range kinds {
		if k.IsAddr() {
			slots[i], addrs = addrs, addrs+1
		} else {
			slots[i], nums = nums, nums+1
		}
	}
	return slots, addrs <= ExtraAddrSlots && nums <= ExtraSlots
}
