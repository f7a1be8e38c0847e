// Package oui maps MAC addresses to their vendors with the IEEE registry
// as Debian's ieee-data package ships it: oui.csv (MA-L, 24-bit
// prefixes), mam.csv (MA-M, 28 bits) and oui36.csv (MA-S, 36 bits). The
// longest matching prefix wins; locally administered addresses have no
// vendor.
package oui

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Registry is read-only after Load and safe for concurrent use.
type Registry struct {
	l map[uint64]string // top 24 bits
	m map[uint64]string // top 28 bits
	s map[uint64]string // top 36 bits
}

// Files are the registry files read from a directory, with the prefix
// length in bits of each.
var Files = []struct {
	Name string
	Bits int
}{{"oui.csv", 24}, {"mam.csv", 28}, {"oui36.csv", 36}}

// Load reads the registry files found in dir; missing files are skipped,
// but at least one must be there.
func Load(dir string) (*Registry, error) {
	r := &Registry{l: map[uint64]string{}, m: map[uint64]string{}, s: map[uint64]string{}}
	found := 0
	for _, f := range Files {
		fh, err := os.Open(filepath.Join(dir, f.Name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("oui: %w", err)
		}
		err = r.read(fh, f.Bits)
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("oui: %s: %w", f.Name, err)
		}
		found++
	}
	if found == 0 {
		return nil, fmt.Errorf("oui: none of oui.csv, mam.csv, oui36.csv in %s (Debian: apt-get install ieee-data)", dir)
	}
	return r, nil
}

// Add registers a vendor for a prefix of 24, 28 or 36 bits given as hex
// digits (6, 7 or 9 of them).
func (r *Registry) Add(hexPrefix, vendor string) error {
	bits := len(hexPrefix) * 4
	v, err := strconv.ParseUint(hexPrefix, 16, 64)
	if err != nil {
		return fmt.Errorf("assignment %q is not hex", hexPrefix)
	}
	switch bits {
	case 24:
		r.l[v] = vendor
	case 28:
		r.m[v] = vendor
	case 36:
		r.s[v] = vendor
	default:
		return fmt.Errorf("assignment %q is not 6, 7 or 9 hex digits", hexPrefix)
	}
	return nil
}

// New returns an empty registry, for Add.
func New() *Registry {
	return &Registry{l: map[uint64]string{}, m: map[uint64]string{}, s: map[uint64]string{}}
}

func (r *Registry) read(rd io.Reader, bits int) error {
	cr := csv.NewReader(rd)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	interned := map[string]string{}
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if line == 1 && len(rec) > 1 && rec[1] == "Assignment" {
			continue
		}
		if len(rec) < 3 {
			continue
		}
		assign := strings.TrimSpace(rec[1])
		if len(assign)*4 != bits {
			continue
		}
		name := strings.TrimSpace(rec[2])
		if s, ok := interned[name]; ok {
			name = s
		} else {
			interned[name] = name
		}
		if err := r.Add(assign, name); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}

// Len is the number of prefixes known.
func (r *Registry) Len() int { return len(r.l) + len(r.m) + len(r.s) }

// Vendor of a MAC (48 bits in the low bits); "" when unknown, for 0,
// and for locally administered addresses.
func (r *Registry) Vendor(mac uint64) string {
	if r == nil || mac == 0 || LocallyAdministered(mac) {
		return ""
	}
	if v, ok := r.s[mac>>12]; ok {
		return v
	}
	if v, ok := r.m[mac>>20]; ok {
		return v
	}
	return r.l[mac>>24]
}

// LocallyAdministered reports whether the U/L bit (0x02 of the first
// octet) is set.
func LocallyAdministered(mac uint64) bool { return (mac>>40)&0x02 != 0 }
