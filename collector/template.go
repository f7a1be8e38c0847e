package collector

import (
	"github.com/netsampler/goflow2/v2/decoders/netflow"
)

// templateKey scopes a template: RFC 7011 section 8 makes template IDs
// local to the observation domain (v9: source ID) of one exporting process,
// which we identify by the exporter's source port.
type templateKey struct {
	version uint16
	port    uint16
	domain  uint32
	id      uint16
}

// template is a data or options template compiled for decoding: each field
// knows how to store its value, so a data record is decoded by walking the
// fields once, without allocating.
type template struct {
	fields    []field
	scopeLen  int // number of leading scope fields (options templates)
	minLen    int // bytes of a record with all variable-length fields empty
	variable  bool
	options   bool
	updatedMs int64
}

type field struct {
	ie     uint16 // information element ID, enterprise bit cleared
	pen    uint32 // enterprise number; 0 for IANA elements
	length uint16 // 0xffff: variable length (IPFIX)
}

const variableLength = 0xffff

// compileTemplate turns goflow2's parsed template into ours. A template
// whose records would occupy zero bytes is refused: decoding a data set
// against it would never advance (goflow2 v2.2.6 loops forever on it).
func compileTemplate(fields []netflow.Field, scopes int, options bool, nowMs int64) (*template, bool) {
	t := &template{
		fields:    make([]field, len(fields)),
		scopeLen:  scopes,
		options:   options,
		updatedMs: nowMs,
	}
	for i, f := range fields {
		t.fields[i] = field{ie: f.Type &^ 0x8000, length: f.Length}
		if f.PenProvided {
			t.fields[i].pen = f.Pen
		}
		if f.Length == variableLength {
			t.variable = true
			t.minLen++ // the one-byte length prefix
		} else {
			t.minLen += int(f.Length)
		}
	}
	if len(fields) == 0 || t.minLen == 0 {
		return nil, false
	}
	return t, true
}

// templateStore holds one exporter's templates, bounded in number, with
// expiry of templates not refreshed within the timeout.
type templateStore struct {
	max       int
	timeoutMs int64
	m         map[templateKey]*template
}

func newTemplateStore(max int, timeoutMs int64) *templateStore {
	return &templateStore{max: max, timeoutMs: timeoutMs, m: make(map[templateKey]*template)}
}

func (s *templateStore) len() int { return len(s.m) }

// add stores or redefines a template. It returns false when the exporter
// already has its maximum number of templates (a template flood).
func (s *templateStore) add(k templateKey, t *template, nowMs int64) bool {
	if _, exists := s.m[k]; !exists && len(s.m) >= s.max {
		s.expire(nowMs)
		if len(s.m) >= s.max {
			return false
		}
	}
	s.m[k] = t
	return true
}

func (s *templateStore) get(k templateKey, nowMs int64) *template {
	t := s.m[k]
	if t == nil {
		return nil
	}
	if nowMs-t.updatedMs > s.timeoutMs {
		delete(s.m, k)
		return nil
	}
	return t
}

func (s *templateStore) withdraw(k templateKey) { delete(s.m, k) }

// withdrawAll removes every template of a domain (IPFIX withdrawal of
// template ID 2 or 3: "all data templates" / "all options templates").
func (s *templateStore) withdrawAll(version, port uint16, domain uint32, options bool) {
	for k, t := range s.m {
		if k.version == version && k.port == port && k.domain == domain && t.options == options {
			delete(s.m, k)
		}
	}
}

func (s *templateStore) expire(nowMs int64) {
	for k, t := range s.m {
		if nowMs-t.updatedMs > s.timeoutMs {
			delete(s.m, k)
		}
	}
}
