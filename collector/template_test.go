package collector

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// checkStore verifies that the scope lists and the map hold the same
// templates, each listed under its own domain and kind exactly once.
func checkStore(t *testing.T, s *templateStore) {
	t.Helper()
	listed := 0
	for sk, head := range s.scopes {
		if head == nil || head.prev != nil {
			t.Fatalf("scope %+v: bad head %+v", sk, head)
		}
		for tp := head; tp != nil; tp = tp.next {
			listed++
			if s.m[tp.key] != tp || tp.scope() != sk {
				t.Fatalf("scope %+v lists %+v, which the store does not hold there", sk, tp.key)
			}
			if tp.next != nil && tp.next.prev != tp {
				t.Fatalf("scope %+v: broken back link at %+v", sk, tp.key)
			}
		}
	}
	if listed != len(s.m) {
		t.Fatalf("%d templates listed, %d stored", listed, len(s.m))
	}
	for k, tp := range s.m {
		if tp.updatedMs < s.oldestMs {
			t.Fatalf("template %+v updated at %d, before oldestMs %d", k, tp.updatedMs, s.oldestMs)
		}
	}
}

// ids lists the stored template IDs as "domain/id" or "domain/id(o)".
func ids(s *templateStore) string {
	var out []string
	for k, tp := range s.m {
		o := ""
		if tp.options {
			o = "(o)"
		}
		out = append(out, fmt.Sprintf("%d/%d%s", k.domain, k.id, o))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestTemplateStoreWithdrawalsAndExpiry(t *testing.T) {
	key := func(domain uint32, id uint16) templateKey {
		return templateKey{version: 10, port: 1, domain: domain, id: id}
	}
	tmpl := func(options bool, atMs int64) *template {
		tp, _ := compileTemplate([]field{{ie: 8, length: 4}}, 0, options, atMs, nil)
		return tp
	}
	type op func(s *templateStore)
	add := func(domain uint32, id uint16, options bool, atMs int64) op {
		return func(s *templateStore) { s.add(key(domain, id), tmpl(options, atMs), atMs) }
	}
	tests := []struct {
		name string
		ops  []op
		want string
	}{
		{"withdraw all data keeps options and other domains", []op{
			add(1, 256, false, 0), add(1, 257, true, 0), add(1, 258, false, 0), add(2, 256, false, 0),
			func(s *templateStore) { s.withdrawAll(10, 1, 1, false) },
		}, "1/257(o) 2/256"},
		{"withdraw all options", []op{
			add(1, 256, false, 0), add(1, 257, true, 0), add(1, 258, true, 0),
			func(s *templateStore) { s.withdrawAll(10, 1, 1, true) },
		}, "1/256"},
		{"redefinition as options moves it to the options list", []op{
			add(1, 256, false, 0), add(1, 256, true, 0), add(1, 257, false, 0),
			func(s *templateStore) { s.withdrawAll(10, 1, 1, false) },
		}, "1/256(o)"},
		{"withdraw one from the middle of a list", []op{
			add(1, 256, false, 0), add(1, 257, false, 0), add(1, 258, false, 0),
			func(s *templateStore) { s.withdraw(key(1, 257)) },
			func(s *templateStore) { s.withdrawAll(10, 1, 1, false) },
			add(1, 259, false, 0),
		}, "1/259"},
		{"a full store makes room by expiring", []op{
			add(1, 256, false, 0), add(1, 257, false, 5000), add(1, 258, false, 5000), add(1, 259, false, 5000),
			add(1, 260, false, 61000), // 256 is older than the timeout
			add(1, 261, false, 61000), // full: nothing has expired
		}, "1/257 1/258 1/259 1/260"},
		{"an expired template read is gone from its list", []op{
			add(1, 256, false, 0), add(1, 257, false, 30000),
			func(s *templateStore) { s.get(key(1, 256), 61000) },
			func(s *templateStore) { s.withdrawAll(10, 1, 1, false) },
			add(1, 258, false, 61000),
		}, "1/258"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTemplateStore(4, 60000)
			for _, o := range tc.ops {
				o(s)
				checkStore(t, s)
			}
			if got := ids(s); got != tc.want {
				t.Errorf("stored %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTemplateRefreshKeepsTheCompiledTemplate(t *testing.T) {
	d := newTestDecoder()
	tmpl := newIPFIX(0, 0, 1).template(256, basicV4...).bytes()
	d.Decode(t0, exporterA, tmpl, nil)
	e := d.exporters[exporterA.Addr()]
	k := templateKey{version: 10, port: exporterA.Port(), domain: 1, id: 256}
	first := e.templates.m[k]
	d.Decode(t0.Add(time.Minute), exporterA, tmpl, nil)
	if got := e.templates.m[k]; got != first || got.updatedMs != t0.Add(time.Minute).UnixMilli() {
		t.Errorf("an identical definition was not a refresh: %p %+v, first %p", got, got, first)
	}
	d.Decode(t0.Add(2*time.Minute), exporterA, newIPFIX(0, 0, 1).template(256, basicV4[:3]...).bytes(), nil)
	if got := e.templates.m[k]; got == first || len(got.fields) != 3 {
		t.Errorf("a different definition did not replace the template: %+v", got)
	}
	checkStore(t, e.templates)
}
