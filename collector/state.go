package collector

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net/netip"
)

// exporterState is what one exporter taught the collector that outlives a
// restart: what decoding its later datagrams needs.
type exporterState struct {
	addr      netip.Addr
	templates []savedTemplate
	rates     []savedRate
	sysInit   []savedInit
	ifNames   []InterfaceName
}

type savedTemplate struct {
	key       templateKey
	options   bool
	scopeLen  int
	updatedMs int64
	// fields is shared with the live template: a stored template's fields
	// are never changed (a redefinition is a new template), so a snapshot
	// need not copy them.
	fields []field
}

type savedRate struct{ domain, sampler, rate uint32 }

type savedInit struct {
	domain uint32
	ms     int64
}

// Bounds of the options-learned maps, shared by decoding and loading.
const (
	maxSystemInits = 4096
	maxIfNames     = 65536
)

// stateMarks count an exporter's changes of what it persists, so that the
// persister can tell without copying anything whether it changed.
// Template refreshes are counted apart: they change only a time, and are
// written less eagerly.
type stateMarks struct {
	templates, rates, options uint64
	refreshes                 uint64
}

func (m stateMarks) isZero() bool { return m == stateMarks{} }

// marks is called with e.mu held.
func (e *exporter) marks() stateMarks {
	return stateMarks{
		templates: e.templates.changes,
		rates:     e.sampling.changes,
		options:   e.optionsChanges,
		refreshes: e.templates.refreshes,
	}
}

// snapshot copies e's persisted state, without the templates expired at
// nowMs. It is called with e.mu held.
func (e *exporter) snapshot(nowMs int64) *exporterState {
	st := &exporterState{addr: e.addr}
	for _, t := range e.templates.m {
		if nowMs-t.updatedMs > e.templates.timeoutMs {
			continue
		}
		st.templates = append(st.templates, savedTemplate{
			key: t.key, options: t.options, scopeLen: t.scopeLen, updatedMs: t.updatedMs, fields: t.fields,
		})
	}
	for k, r := range e.sampling.rates {
		st.rates = append(st.rates, savedRate{domain: k.domain, sampler: k.sampler, rate: r})
	}
	for d, ms := range e.systemInitMs {
		st.sysInit = append(st.sysInit, savedInit{domain: d, ms: ms})
	}
	for _, n := range e.ifNames {
		st.ifNames = append(st.ifNames, n)
	}
	return st
}

// restore gives a new exporter, not yet shared, the state it had before
// the restart. Templates go through the store as live ones do, so a later
// redefinition, withdrawal or expiry treats them alike.
func (e *exporter) restore(st *exporterState, nowMs int64) {
	e.resumed = true
	for _, s := range st.templates {
		if nowMs-s.updatedMs > e.templates.timeoutMs || !e.templates.room(s.key, nowMs) {
			continue
		}
		// Compiled with the mappings of this start, which may differ from
		// those the template was first compiled with; and, as a definition
		// of this process, counted for its unknown fields.
		if t, ok := compileTemplate(s.fields, s.scopeLen, s.options, s.updatedMs, e.dec.extra); ok {
			if e.templates.add(s.key, t, nowMs) && !s.options {
				e.dec.metrics.unknownFields(t)
			}
		}
	}
	for _, r := range st.rates {
		e.sampling.learn(r.domain, r.sampler, r.rate)
	}
	for _, s := range st.sysInit {
		if len(e.systemInitMs) < maxSystemInits {
			e.systemInitMs[s.domain] = s.ms
		}
	}
	for _, n := range st.ifNames {
		if len(e.ifNames) < maxIfNames {
			n.Exporter = e.addr
			e.ifNames[n.IfIndex] = n
		}
	}
}

// alive reports whether any of st's templates is unexpired at nowMs.
func (st *exporterState) alive(nowMs, timeoutMs int64) bool {
	for _, t := range st.templates {
		if nowMs-t.updatedMs <= timeoutMs {
			return true
		}
	}
	return false
}

// stateLimits bound what a state file may restore, as live state is bounded.
type stateLimits struct {
	exporters int // in all (per worker, the decoder's max_exporters applies again)
	templates int
	timeoutMs int64
}

// loadedState is what a state file gave, and what of it was discarded.
type loadedState struct {
	exporters []*exporterState
	discarded map[string]int
}

func (l *loadedState) discard(reason string) { l.discarded[reason]++ }

// decodeState reads a state file, keeping no more than lim allows and
// dropping templates expired at nowMs. The whole file is checked before
// anything is returned: a file that fails its checksum gives nothing.
func decodeState(r io.Reader, lim stateLimits, nowMs int64) (*loadedState, error) {
	d := &stateDecoder{r: bufio.NewReader(r), crc: crc32.New(castagnoli)}
	out := &loadedState{discarded: make(map[string]int)}
	d.header()
	seen := make(map[netip.Addr]bool)
	for d.err == nil {
		switch tag := d.u8(); {
		case d.err != nil:
		case tag == stateTagEnd:
			d.trailer()
			if d.err != nil {
				return nil, d.err
			}
			return out, nil
		case tag == stateTagExporter:
			addr := d.addr()
			keep := d.err == nil && !seen[addr] && len(out.exporters) < lim.exporters
			switch {
			case d.err != nil:
			case seen[addr]:
				out.discard(DiscardInvalid)
			case !keep:
				out.discard(DiscardExporterLimit)
			}
			st := d.exporter(addr, keep, lim, nowMs, out)
			if keep && d.err == nil {
				seen[addr] = true
				out.exporters = append(out.exporters, st)
			}
		default:
			d.err = corrupt("record tag %d", tag)
		}
	}
	return nil, d.err
}

// exporter reads one exporter's entries after its address; with keep
// false it reads them only to find the next exporter.
func (d *stateDecoder) exporter(addr netip.Addr, keep bool, lim stateLimits, nowMs int64, out *loadedState) *exporterState {
	st := &exporterState{addr: addr}
	d.templates(st, keep, lim, nowMs, out)
	for n := d.u32(); n > 0 && d.err == nil; n-- {
		r := savedRate{domain: d.u32(), sampler: d.u32(), rate: d.u32()}
		switch {
		case !keep:
		case r.rate == 0:
			out.discard(DiscardInvalid)
		case len(st.rates) >= maxSamplers:
			out.discard(DiscardLimit)
		default:
			st.rates = append(st.rates, r)
		}
	}
	for n := d.u32(); n > 0 && d.err == nil; n-- {
		s := savedInit{domain: d.u32(), ms: d.i64()}
		if keep && len(st.sysInit) >= maxSystemInits {
			out.discard(DiscardLimit)
		} else if keep {
			st.sysInit = append(st.sysInit, s)
		}
	}
	for n := d.u32(); n > 0 && d.err == nil; n-- {
		idx := d.u32()
		room := keep && len(st.ifNames) < maxIfNames
		if keep && !room {
			out.discard(DiscardLimit)
		}
		name, desc := d.str(room), d.str(room)
		if room && d.err == nil {
			st.ifNames = append(st.ifNames, InterfaceName{Exporter: addr, IfIndex: idx, Name: name, Description: desc})
		}
	}
	return st
}

// templates reads an exporter's templates, keeping the valid, unexpired
// ones up to the limit.
func (d *stateDecoder) templates(st *exporterState, keep bool, lim stateLimits, nowMs int64, out *loadedState) {
	keys := make(map[templateKey]bool)
	for n := d.u32(); n > 0 && d.err == nil; n-- {
		b := d.next(templateEntryLen)
		if b == nil {
			return
		}
		be := binary.BigEndian
		t := savedTemplate{
			key: templateKey{
				version: be.Uint16(b), port: be.Uint16(b[2:]), domain: be.Uint32(b[4:]), id: be.Uint16(b[8:]),
			},
			options:   b[10]&stateFlagOptions != 0,
			scopeLen:  int(be.Uint16(b[11:])),
			updatedMs: int64(be.Uint64(b[13:])),
		}
		nf := int(d.u16())
		// Fields are read into scratch and copied only when kept, so
		// templates beyond the limit cost no memory.
		collect := keep && nf <= maxTemplateFields
		d.fields = d.fields[:0]
		for i := 0; i < nf && d.err == nil; i++ {
			f := field{pen: d.u32(), ie: d.u16(), length: d.u16()}
			if collect {
				d.fields = append(d.fields, f)
			}
		}
		if !keep || d.err != nil {
			continue
		}
		t.fields = d.fields
		t.updatedMs = min(t.updatedMs, nowMs) // a clock set back must not make a template immortal
		switch {
		case !collect || !validTemplate(&t) || keys[t.key]:
			out.discard(DiscardInvalid)
		case nowMs-t.updatedMs > lim.timeoutMs:
			out.discard(DiscardExpired)
		case len(st.templates) >= lim.templates:
			out.discard(DiscardTemplateLimit)
		default:
			t.fields = append([]field(nil), d.fields...)
			keys[t.key] = true
			st.templates = append(st.templates, t)
		}
	}
}

// validTemplate reports whether an exporter could have taught us t.
func validTemplate(t *savedTemplate) bool {
	if t.key.version != 9 && t.key.version != 10 || t.key.id < 256 || t.scopeLen > len(t.fields) {
		return false
	}
	if !t.options && t.scopeLen != 0 {
		return false
	}
	if minLen, _ := recordLength(t.fields); len(t.fields) == 0 || minLen == 0 {
		return false
	}
	for _, f := range t.fields {
		// IPFIX keeps the enterprise bit in pen; v9 vendor types keep it.
		if (t.key.version != 9 && f.ie&0x8000 != 0) || (t.key.version == 9 && f.pen != 0) {
			return false
		}
	}
	return true
}
