package collector

import (
	"net/netip"

	"github.com/flowhouse/flowhouse/internal/nfmsg"
)

// msg is nfmsg's builder under the short names the collector's tests use.
type msg struct{ *nfmsg.Message }

// tf is a template field: IE, length, and optional enterprise number. It
// is the package's own type so that tests may write it unkeyed.
type tf struct {
	ie     uint16
	length uint16
	pen    uint32
}

func fieldsOf(fs []tf) []nfmsg.Field {
	out := make([]nfmsg.Field, len(fs))
	for i, f := range fs {
		out[i] = nfmsg.Field{IE: f.ie, Length: f.length, PEN: f.pen}
	}
	return out
}

func newIPFIX(exportSec, seq, domain uint32) *msg {
	return &msg{nfmsg.NewIPFIX(exportSec, seq, domain)}
}

func newNFv9(uptimeMs, unixSec, seq, sourceID uint32) *msg {
	return &msg{nfmsg.NewNFv9(uptimeMs, unixSec, seq, sourceID)}
}

func (m *msg) set(id uint16, body []byte) *msg { m.Set(id, body); return m }

func (m *msg) template(id uint16, fields ...tf) *msg { m.Template(id, fieldsOf(fields)...); return m }

func (m *msg) optionsTemplate(id uint16, scopes []tf, options []tf) *msg {
	m.OptionsTemplate(id, fieldsOf(scopes), fieldsOf(options))
	return m
}

func (m *msg) data(id uint16, records ...[]byte) *msg { m.Data(id, records...); return m }

func (m *msg) bytes() []byte { return m.Bytes() }

// rec concatenates big-endian values into a data record.
func rec(values ...any) []byte { return nfmsg.Record(values...) }

func netipAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
