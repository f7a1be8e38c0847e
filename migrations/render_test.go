package migrations

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestSplitStatements(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{"one", "SELECT 1;\n", []string{"SELECT 1"}},
		{"no final semicolon", "SELECT 1", []string{"SELECT 1"}},
		{"comments and blanks", "-- a comment\n\nCREATE TABLE x (\n  a UInt8 -- trailing\n);\n\n-- more\nSELECT 2;\n",
			[]string{"CREATE TABLE x (\n  a UInt8 -- trailing\n)", "SELECT 2"}},
		{"semicolon inside a line stays", "SELECT ';' AS x;\n", []string{"SELECT ';' AS x"}},
		{"empty statement from empty template", "CREATE TABLE t (a UInt8)\n\n;\n", []string{"CREATE TABLE t (a UInt8)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := splitStatements(tc.in)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestInterval(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{30 * 24 * time.Hour, "INTERVAL 30 DAY"},
		{36 * time.Hour, "INTERVAL 36 HOUR"},
		{90 * time.Minute, "INTERVAL 5400 SECOND"},
		{1500 * time.Millisecond, "INTERVAL 2 SECOND"},
	} {
		if got := interval(tc.in); got != tc.want {
			t.Errorf("interval(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"no version", fstest.MapFS{"flows.sql": {Data: []byte("SELECT 1;")}}, "want NNNN_name.sql"},
		{"duplicate version", fstest.MapFS{
			"0001_a.sql": {Data: []byte("SELECT 1;")},
			"0001_b.sql": {Data: []byte("SELECT 1;")},
		}, "same version"},
		{"bad template", fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT {{nosuchfunc}};")}}, "0001_a.sql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	ms, err := load(fstest.MapFS{
		"0002_b.sql": {Data: []byte("SELECT 2;")},
		"0001_a.sql": {Data: []byte("SELECT 1;")},
	})
	if err != nil || len(ms) != 2 || ms[0].Version != 1 || ms[1].Name != "b" || ms[0].Checksum == ms[1].Checksum {
		t.Fatalf("load: %+v, %v", ms, err)
	}
}
