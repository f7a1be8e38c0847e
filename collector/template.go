package collector

import (
	"math"
	"slices"
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
	fields []field
	// extra is where each field mapped by extra_fields goes, by the
	// field's index; nil when no field of the template is mapped, so that
	// templates without mapped fields cost what they did.
	extra     []extraSlot
	scopeLen  int // number of leading scope fields (options templates)
	minLen    int // bytes of a record with all variable-length fields empty
	variable  bool
	options   bool
	updatedMs int64

	// key and the links of its scope's list (see templateStore.scopes)
	// are set while the template is stored.
	key        templateKey
	prev, next *template
}

type field struct {
	pen    uint32 // enterprise number; 0 for IANA elements
	ie     uint16 // information element ID, enterprise bit cleared
	length uint16 // 0xffff: variable length (IPFIX)
}

const variableLength = 0xffff

// compileTemplate turns a parsed template into one that decodes; fields
// is copied, and the fields of a data template that extra maps get their
// slots (options records never become flows). A template whose records
// would occupy zero bytes is refused: decoding a data set against it
// would never advance (goflow2 v2.2.6 loops forever on it).
func compileTemplate(fields []field, scopes int, options bool, nowMs int64, extra map[penIE]extraSlot) (*template, bool) {
	minLen, variable := recordLength(fields)
	if len(fields) == 0 || minLen == 0 {
		return nil, false
	}
	var slots []extraSlot
	for i := range fields {
		if len(extra) == 0 || options {
			break
		}
		if x, ok := extra[penIE{pen: fields[i].pen, ie: fields[i].ie}]; ok {
			if slots == nil {
				slots = make([]extraSlot, len(fields))
			}
			slots[i] = x
		}
	}
	return &template{
		fields:    append([]field(nil), fields...),
		extra:     slots,
		scopeLen:  scopes,
		minLen:    minLen,
		variable:  variable,
		options:   options,
		updatedMs: nowMs,
	}, true
}

// recordLength returns the bytes of a record with all variable-length
// fields empty, and whether it has any.
func recordLength(fields []field) (minLen int, variable bool) {
	for _, f := range fields {
		if f.length == variableLength {
			variable = true
			minLen++ // the one-byte length prefix
		} else {
			minLen += int(f.length)
		}
	}
	return minLen, variable
}

// templateStore holds one exporter's templates, bounded in number, with
// expiry of templates not refreshed within the timeout.
//
// No operation visits more templates than it removes, give or take one scan
// per millisecond: a datagram of withdrawals, or of templates sent to a full
// store, would otherwise scan the whole store once per 4-byte record, which
// made such datagrams cost 300 to 700 times what real ones cost per byte.
type templateStore struct {
	max       int
	timeoutMs int64
	m         map[templateKey]*template
	// scopes heads a list of the templates of each domain and kind, linked
	// through the templates themselves, so that "withdraw all" visits only
	// what it withdraws and storing a template allocates nothing more.
	scopes map[scopeKey]*template
	// oldestMs is at most the oldest updatedMs in m: until it is older
	// than the timeout, nothing can have expired and expire need not look.
	oldestMs int64
	// changes counts templates stored and removed, refreshes templates
	// defined again as they were: the persister compares them (see
	// stateMarks) instead of the templates.
	changes, refreshes uint64
}

// scopeKey is what an IPFIX "withdraw all" names: every data template, or
// every options template, of one observation domain.
type scopeKey struct {
	version uint16
	port    uint16
	domain  uint32
	options bool
}

func newTemplateStore(max int, timeoutMs int64) *templateStore {
	return &templateStore{
		max:       max,
		timeoutMs: timeoutMs,
		m:         make(map[templateKey]*template),
		scopes:    make(map[scopeKey]*template),
		oldestMs:  math.MaxInt64,
	}
}

func (s *templateStore) len() int { return len(s.m) }

func (t *template) scope() scopeKey {
	return scopeKey{version: t.key.version, port: t.key.port, domain: t.key.domain, options: t.options}
}

// room reports whether k can be stored: it is stored already, or the store
// has room once expired templates are gone.
func (s *templateStore) room(k templateKey, nowMs int64) bool {
	if _, exists := s.m[k]; exists || len(s.m) < s.max {
		return true
	}
	s.expire(nowMs)
	return len(s.m) < s.max
}

// refresh renews a stored template that is defined again as it was, which
// is what exporters do every few seconds, without compiling it again.
func (s *templateStore) refresh(k templateKey, fields []field, scopes int, options bool, nowMs int64) bool {
	t := s.m[k]
	if t == nil || t.scopeLen != scopes || t.options != options || !slices.Equal(t.fields, fields) {
		return false
	}
	t.updatedMs = nowMs
	s.refreshes++
	return true
}

// add stores or redefines a template. It returns false when the exporter
// already has its maximum number of templates (a template flood).
func (s *templateStore) add(k templateKey, t *template, nowMs int64) bool {
	if !s.room(k, nowMs) {
		return false
	}
	if old := s.m[k]; old != nil {
		s.unlink(old)
	}
	s.m[k] = t
	t.key = k
	sk := t.scope()
	t.prev, t.next = nil, s.scopes[sk]
	if t.next != nil {
		t.next.prev = t
	}
	s.scopes[sk] = t
	s.oldestMs = min(s.oldestMs, t.updatedMs)
	s.changes++
	return true
}

func (s *templateStore) get(k templateKey, nowMs int64) *template {
	t := s.m[k]
	if t == nil {
		return nil
	}
	if nowMs-t.updatedMs > s.timeoutMs {
		s.remove(t)
		return nil
	}
	return t
}

func (s *templateStore) withdraw(k templateKey) {
	if t := s.m[k]; t != nil {
		s.remove(t)
	}
}

// withdrawAll removes every template of a domain (IPFIX withdrawal of
// template ID 2 or 3: "all data templates" / "all options templates").
func (s *templateStore) withdrawAll(version, port uint16, domain uint32, options bool) {
	sk := scopeKey{version: version, port: port, domain: domain, options: options}
	head, ok := s.scopes[sk]
	if !ok {
		return
	}
	for t := head; t != nil; t = t.next {
		delete(s.m, t.key)
	}
	delete(s.scopes, sk)
	s.changes++
}

func (s *templateStore) remove(t *template) {
	delete(s.m, t.key)
	s.unlink(t)
	s.changes++
}

func (s *templateStore) unlink(t *template) {
	if t.next != nil {
		t.next.prev = t.prev
	}
	switch {
	case t.prev != nil:
		t.prev.next = t.next
	case t.next != nil:
		s.scopes[t.scope()] = t.next
	default:
		delete(s.scopes, t.scope())
	}
	t.prev, t.next = nil, nil
}

// expire removes the templates not refreshed within the timeout. It scans
// only when the oldest may have expired, and leaves oldestMs exact, so the
// next scan waits for the next template to age out.
func (s *templateStore) expire(nowMs int64) {
	if nowMs-s.oldestMs <= s.timeoutMs {
		return
	}
	s.oldestMs = math.MaxInt64
	for _, t := range s.m {
		if nowMs-t.updatedMs > s.timeoutMs {
			s.remove(t)
		} else {
			s.oldestMs = min(s.oldestMs, t.updatedMs)
		}
	}
}
