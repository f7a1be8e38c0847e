package collector

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
)

// The state file keeps what exporters taught the collector (templates,
// sampling rates, system init times, interface names) across restarts.
// It holds no flow data. Format version 1, big-endian throughout:
//
//	header    "FHCS", u16 format version (1), u16 reserved (0),
//	          i64 when written (Unix ms)
//	exporter  u8 tag 1, u8 address length (4 or 16), the address, then
//	          u32 count, that many templates:
//	            u16 protocol version (9: NetFlow v9, 10: IPFIX),
//	            u16 exporter source port, u32 observation domain / source ID,
//	            u16 template ID, u8 flags (bit 0: options template),
//	            u16 scope field count, i64 last definition or refresh
//	            (Unix ms), u16 field count, and per field u32 enterprise
//	            number, u16 information element, u16 length (65535:
//	            variable)
//	          u32 count, sampling rates: u32 domain, u32 sampler ID, u32 rate
//	          u32 count, system init times: u32 domain, i64 Unix ms
//	          u32 count, interface names: u32 ifIndex, u16 length, name,
//	          u16 length, description
//	end       u8 tag 0, u32 CRC-32C of every byte before it
//
// Nothing after the checksum is allowed. A reader of version 1 refuses
// any other version: a later format may change what the bytes mean.
const (
	stateMagic        = "FHCS"
	stateVersion      = 1
	stateHeaderLen    = 16
	stateTagEnd       = 0
	stateTagExporter  = 1
	stateFlagOptions  = 1
	templateEntryLen  = 21 // a template's bytes before its fields
	fieldEntryLen     = 8
	maxStateString    = 0xffff
	stateCorruptTrail = ".corrupt"
)

// maxTemplateFields is the most fields a template can have when it comes
// in a datagram; a state file claiming more was not written by us.
const maxTemplateFields = (maxDatagram - ipfixHeaderLen - setHeaderLen - templateHeaderLen) / fieldSpecLen

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Reasons a state file could not be loaded (the reason label of
// flowhouse_collector_state_load_errors_total).
const (
	StateUnreadable    = "unreadable"     // the file exists but cannot be opened or read
	StateCorrupt       = "corrupt"        // not a state file, a checksum mismatch, or bytes that cannot be what we write
	StateTruncated     = "truncated"      // the file ends before its end marker
	StateFutureVersion = "future_version" // written by a later flowhouse in a format this one does not know
)

// Reasons entries of a loaded state file were not restored (the reason
// label of flowhouse_collector_state_discarded_total).
const (
	DiscardExpired       = "expired"        // a template older than template_timeout
	DiscardExporterLimit = "exporter_limit" // beyond max_exporters
	DiscardTemplateLimit = "template_limit" // beyond max_templates_per_exporter
	DiscardLimit         = "limit"          // sampling rates, init times or names beyond the decoder's bounds
	DiscardInvalid       = "invalid"        // an entry no exporter could have taught us
)

// stateError is a state file that cannot be loaded, with its reason.
type stateError struct {
	reason string
	err    error
}

func (e *stateError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *stateError) Unwrap() error { return e.err }

func corrupt(format string, args ...any) error {
	return &stateError{reason: StateCorrupt, err: fmt.Errorf(format, args...)}
}

// stateEncoder writes the format above, checksumming as it goes.
type stateEncoder struct {
	w   *bufio.Writer
	crc hash.Hash32
	b   []byte
}

func (e *stateEncoder) flush() error {
	e.crc.Write(e.b)
	_, err := e.w.Write(e.b)
	e.b = e.b[:0]
	return err
}

// encodeState writes states to w in the current format.
func encodeState(w io.Writer, writtenMs int64, states []*exporterState) error {
	e := &stateEncoder{w: bufio.NewWriter(w), crc: crc32.New(castagnoli)}
	e.b = append(e.b, stateMagic...)
	e.b = binary.BigEndian.AppendUint16(e.b, stateVersion)
	e.b = binary.BigEndian.AppendUint16(e.b, 0)
	e.b = binary.BigEndian.AppendUint64(e.b, uint64(writtenMs))
	for _, st := range states {
		if err := e.flush(); err != nil {
			return err
		}
		e.exporter(st)
	}
	e.b = append(e.b, stateTagEnd)
	if err := e.flush(); err != nil {
		return err
	}
	if _, err := e.w.Write(binary.BigEndian.AppendUint32(nil, e.crc.Sum32())); err != nil {
		return err
	}
	return e.w.Flush()
}

func (e *stateEncoder) exporter(st *exporterState) {
	be := binary.BigEndian
	a := st.addr.AsSlice()
	e.b = append(append(e.b, stateTagExporter, byte(len(a))), a...)
	e.b = be.AppendUint32(e.b, uint32(len(st.templates)))
	for _, t := range st.templates {
		flags := byte(0)
		if t.options {
			flags = stateFlagOptions
		}
		e.b = be.AppendUint16(e.b, t.key.version)
		e.b = be.AppendUint16(e.b, t.key.port)
		e.b = be.AppendUint32(e.b, t.key.domain)
		e.b = be.AppendUint16(e.b, t.key.id)
		e.b = append(e.b, flags)
		e.b = be.AppendUint16(e.b, uint16(t.scopeLen))
		e.b = be.AppendUint64(e.b, uint64(t.updatedMs))
		e.b = be.AppendUint16(e.b, uint16(len(t.fields)))
		for _, f := range t.fields {
			e.b = be.AppendUint32(e.b, f.pen)
			e.b = be.AppendUint16(e.b, f.ie)
			e.b = be.AppendUint16(e.b, f.length)
		}
	}
	e.b = be.AppendUint32(e.b, uint32(len(st.rates)))
	for _, r := range st.rates {
		e.b = be.AppendUint32(be.AppendUint32(be.AppendUint32(e.b, r.domain), r.sampler), r.rate)
	}
	e.b = be.AppendUint32(e.b, uint32(len(st.sysInit)))
	for _, s := range st.sysInit {
		e.b = be.AppendUint64(be.AppendUint32(e.b, s.domain), uint64(s.ms))
	}
	e.b = be.AppendUint32(e.b, uint32(len(st.ifNames)))
	for _, n := range st.ifNames {
		e.b = be.AppendUint32(e.b, n.IfIndex)
		e.b = appendStateString(e.b, n.Name)
		e.b = appendStateString(e.b, n.Description)
	}
}

// appendStateString writes a u16 length and the string, cut to what the
// length can say (names come from fields of at most 65535 bytes anyway).
func appendStateString(b []byte, s string) []byte {
	if len(s) > maxStateString {
		s = s[:maxStateString]
	}
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// writeFileAtomic writes path so that it exists whole or not at all, with
// mode 0600: a temporary file beside it, fsync, rename, fsync of the
// directory. The reason says which step failed.
func writeFileAtomic(path string, write func(io.Writer) error) (reason string, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "mkdir", err
	}
	// CreateTemp makes the file 0600.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "create", err
	}
	tmp := f.Name()
	reason = "write"
	err = write(f)
	if err == nil {
		reason, err = "sync", f.Sync()
	}
	if cerr := f.Close(); err == nil {
		reason, err = "write", cerr
	}
	if err == nil {
		reason, err = "rename", os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return reason, err
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync() // the new name survives a crash
		d.Close()
		if err != nil {
			return "sync", err
		}
	}
	return "", nil
}

// stateDecoder reads the format above from a stream, so a file costs the
// memory of what is kept from it, not of its size.
type stateDecoder struct {
	r   *bufio.Reader
	crc hash.Hash32
	buf [64]byte
	err error
	// fields is scratch for the template being read.
	fields []field
}

// next returns the next n (at most 64) bytes, or nil once reading failed.
func (d *stateDecoder) next(n int) []byte {
	if d.err != nil {
		return nil
	}
	b := d.buf[:n]
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail(err)
		return nil
	}
	d.crc.Write(b)
	return b
}

func (d *stateDecoder) fail(err error) {
	if d.err != nil {
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = &stateError{reason: StateTruncated, err: errors.New("the file ends before its end marker")}
	} else if _, ok := err.(*stateError); !ok {
		err = &stateError{reason: StateUnreadable, err: err}
	}
	d.err = err
}

func (d *stateDecoder) u8() uint8 {
	if b := d.next(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *stateDecoder) u16() uint16 {
	if b := d.next(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *stateDecoder) u32() uint32 {
	if b := d.next(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *stateDecoder) i64() int64 {
	if b := d.next(8); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

// str reads a u16-length string; keep false discards it without allocating.
func (d *stateDecoder) str(keep bool) string {
	n := int(d.u16())
	if d.err != nil {
		return ""
	}
	if !keep {
		d.skip(n)
		return ""
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail(err)
		return ""
	}
	d.crc.Write(b)
	return string(b)
}

func (d *stateDecoder) skip(n int) {
	for n > 0 && d.err == nil {
		k := min(n, len(d.buf))
		d.next(k)
		n -= k
	}
}

// header reads and checks the file header.
func (d *stateDecoder) header() {
	b := d.next(stateHeaderLen)
	if b == nil {
		return
	}
	if string(b[:4]) != stateMagic {
		d.err = corrupt("not a flowhouse collector state file (magic %q)", b[:4])
		return
	}
	switch v := binary.BigEndian.Uint16(b[4:]); {
	case v == 0:
		d.err = corrupt("format version 0")
	case v > stateVersion:
		d.err = &stateError{reason: StateFutureVersion, err: fmt.Errorf("format version %d; this flowhouse reads version %d", v, stateVersion)}
	}
}

// trailer checks the checksum after the end tag and that nothing follows.
func (d *stateDecoder) trailer() {
	if d.err != nil {
		return
	}
	want := d.crc.Sum32()
	var b [4]byte
	if _, err := io.ReadFull(d.r, b[:]); err != nil {
		d.fail(err)
		return
	}
	if got := binary.BigEndian.Uint32(b[:]); got != want {
		d.err = corrupt("checksum %08x, the content sums to %08x", got, want)
		return
	}
	if _, err := d.r.ReadByte(); err == nil {
		d.err = corrupt("bytes after the checksum")
	} else if !errors.Is(err, io.EOF) {
		d.fail(err)
	}
}

// addr reads an exporter's address.
func (d *stateDecoder) addr() netip.Addr {
	n := int(d.u8())
	if d.err != nil {
		return netip.Addr{}
	}
	if n != 4 && n != 16 {
		d.err = corrupt("an exporter address of %d bytes", n)
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(d.next(n))
	return a
}
