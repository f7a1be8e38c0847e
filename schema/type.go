package schema

// Type is a column's ClickHouse type as DESCRIBE shows it, on current
// servers and on old ones (18.16), where the migrations render no IPv6
// and no LowCardinality (migrations/render.go: {{ip}} and {{lc}}).
type Type struct {
	name   string
	legacy string // the type on servers without the capability; "" when the same
	needs  capability
	// native is the type of the values a Native block carries for the
	// column: the engine converts them on insert where it differs (an
	// enum is sent as its number, Int8).
	native string
}

type capability uint8

const (
	always capability = iota
	needsIPv6
	needsLowCardinality
)

// Dialect is what a server has of the types that depend on it.
type Dialect struct {
	IPv6           bool
	LowCardinality bool
}

// Modern is every type as current servers have it.
var Modern = Dialect{IPv6: true, LowCardinality: true}

// The types of the flows table.
var (
	UInt8  = plain("UInt8")
	UInt16 = plain("UInt16")
	UInt32 = plain("UInt32")
	UInt64 = plain("UInt64")
	// DateTime is seconds since 1970, UTC.
	DateTime = plain("DateTime('UTC')")
	// IP is an IPv6 address, IPv4 mapped into it; FixedString(16) holding
	// the same 16 bytes on servers without IPv6.
	IP = Type{name: "IPv6", legacy: "FixedString(16)", needs: needsIPv6, native: "IPv6"}
	// LowCardinalityString is a string with few distinct values.
	LowCardinalityString = Type{name: "LowCardinality(String)", legacy: "String", needs: needsLowCardinality, native: "LowCardinality(String)"}
)

func plain(name string) Type { return Type{name: name, native: name} }

// Enum8 is Enum8(values), values as in the DDL: 'name' = number, ...
func Enum8(values string) Type {
	return Type{name: "Enum8(" + values + ")", native: "Int8"}
}

// In is the type on a server of dialect d.
func (t Type) In(d Dialect) string {
	switch {
	case t.needs == needsIPv6 && !d.IPv6, t.needs == needsLowCardinality && !d.LowCardinality:
		return t.legacy
	}
	return t.name
}

func (t Type) String() string { return t.name }

// Native is the type of the column's values in Native blocks.
func (t Type) Native() string { return t.native }
