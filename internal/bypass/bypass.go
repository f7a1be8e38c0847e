// Package bypass is the regression corpus of attempts to get past the
// read-only query policy of the embedded engine (store.ReadOnly), and the
// file watch that proves no attempt touched a file. The tests of queryapi
// (over HTTP) and of flowhouse query run every case.
package bypass

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

//go:embed corpus.txt
var corpus string

// Separators are what the corpus puts between tokens: every Unicode
// space and invisible code point (ClickHouse's lexer skips several that
// a byte-level lexer takes for part of an identifier), and comments of
// all three kinds.
func Separators() []string {
	seps := []string{" ", "\t", "\n", "\r\n", "\f", "\v", "/**/", "/* /* nested */ */", "--c\n", "#c\n", "  \t\n "}
	for _, r := range []rune{
		0x0085, 0x00A0, 0x1680, 0x180E, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006,
		0x2007, 0x2008, 0x2009, 0x200A, 0x200B, 0x200C, 0x200D, 0x2028, 0x2029, 0x202F, 0x205F,
		0x2060, 0x3000, 0xFEFF, 0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164,
		0xFFA0, 0x2061, 0x2062, 0x2063, 0x2064, 0x206A, 0x206F,
	} {
		seps = append(seps, string(r), " "+string(r)+" ")
	}
	return seps
}

// Targets are the files the corpus tries to read and write.
type Targets struct {
	Dir     string // the watched directory
	Canary  string // a file in Dir to read
	Written string // a file in Dir to create
	WD      string // the working directory, for the relative paths
}

// NewTargets makes dir's canary file, holding content.
func NewTargets(dir, content string) (Targets, error) {
	wd, err := os.Getwd()
	if err != nil {
		return Targets{}, err
	}
	t := Targets{Dir: dir, Canary: filepath.Join(dir, "canary"), Written: filepath.Join(dir, "written"), WD: wd}
	return t, os.WriteFile(t.Canary, []byte(content+"\n"), 0o644)
}

// Case is one attempt.
type Case struct {
	Name  string // line number and separator
	Query string
	// ParserMayRefuse: the engine's parser may refuse it (a syntax error)
	// before the policy sees it.
	ParserMayRefuse bool
	// Sep is the separator used, "" for a template without {S}.
	Sep string
}

// Cases expands the corpus for t.
func Cases(t Targets) []Case {
	relCanary, _ := filepath.Rel(t.WD, t.Canary)
	relWritten, _ := filepath.Rel(t.WD, t.Written)
	var hex strings.Builder
	for _, b := range []byte(t.Canary) {
		fmt.Fprintf(&hex, `\x%02X`, b)
	}
	fill := strings.NewReplacer("{F}", t.Canary, "{R}", relCanary, "{FX}", hex.String(), "{D}", t.Dir,
		"{O}", t.Written, "{RO}", relWritten)
	var out []Case
	lines := strings.Split(corpus, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// A template continues on lines that start with a space.
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") {
			i++
			line += "\n" + lines[i]
		}
		c := Case{Query: fill.Replace(line)}
		if rest, ok := strings.CutPrefix(c.Query, "! "); ok {
			c.Query, c.ParserMayRefuse = rest, true
		}
		if !strings.Contains(c.Query, "{S}") {
			c.Name = fmt.Sprintf("corpus.txt:%d", i+1)
			out = append(out, c)
			continue
		}
		for _, sep := range Separators() {
			e := c
			e.Sep = sep
			e.Query = strings.ReplaceAll(c.Query, "{S}", sep)
			e.Name = fmt.Sprintf("corpus.txt:%d sep %+q", i+1, sep)
			out = append(out, e)
		}
	}
	return out
}

// Watch reports every open, read, write or creation of a file in a
// directory, through inotify: a file read by the engine shows as an open,
// even when nothing of it reaches the answer.
type Watch struct {
	fd int
}

// NewWatch watches dir. Make the files first: the watch reports what is
// done after it starts.
func NewWatch(dir string) (*Watch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	mask := uint32(unix.IN_OPEN | unix.IN_ACCESS | unix.IN_MODIFY | unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_DELETE)
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	return &Watch{fd: fd}, nil
}

// Events drains what happened since the last call: "OPEN canary", ...
func (w *Watch) Events() ([]string, error) {
	var out []string
	buf := make([]byte, 64*1024)
	for {
		n, err := unix.Read(w.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("inotify read: %w", err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			out = append(out, eventName(ev.Mask)+" "+name)
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

func eventName(mask uint32) string {
	var names []string
	for _, m := range []struct {
		bit  uint32
		name string
	}{{unix.IN_OPEN, "OPEN"}, {unix.IN_ACCESS, "READ"}, {unix.IN_MODIFY, "WRITE"}, {unix.IN_CREATE, "CREATE"},
		{unix.IN_MOVED_TO, "MOVED_TO"}, {unix.IN_ATTRIB, "ATTRIB"}, {unix.IN_DELETE, "DELETE"}} {
		if mask&m.bit != 0 {
			names = append(names, m.name)
		}
	}
	return strings.Join(names, "|")
}

// Close stops the watch.
func (w *Watch) Close() error { return unix.Close(w.fd) }
