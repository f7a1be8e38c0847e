package arch

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/flowhouse/flowhouse"

// root is the module's directory, two levels up from this package.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", dir, err)
	}
	return dir
}

// packages maps the import path of every package of the module to the
// module packages its production files import (tests excluded).
func packages(t *testing.T) map[string][]string {
	t.Helper()
	dir := root(t)
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "var" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		p, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		ip := module
		if rel != "." {
			ip += "/" + filepath.ToSlash(rel)
		}
		var own []string
		for _, imp := range p.Imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				own = append(own, imp)
			}
		}
		out[ip] = own
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 || out[module+"/collector"] == nil && out[module+"/flow"] == nil {
		t.Fatalf("found only %d packages under %s", len(out), dir)
	}
	return out
}

// deps is every module package p depends on, directly or not.
func deps(graph map[string][]string, p string) map[string][]string {
	// path[q] is one chain of imports from p to q.
	path := map[string][]string{}
	queue := []string{p}
	for len(queue) > 0 {
		q := queue[0]
		queue = queue[1:]
		for _, r := range graph[q] {
			if _, seen := path[r]; seen || r == p {
				continue
			}
			path[r] = append(slices.Clone(path[q]), r)
			queue = append(queue, r)
		}
	}
	return path
}

// within reports whether pkg is base or one of its subpackages.
func within(pkg, base string) bool {
	return pkg == module+"/"+base || strings.HasPrefix(pkg, module+"/"+base+"/")
}

// TestDataMovesOneWay: collector -> enrich -> store, and what all of them
// share sits below them. A package may not depend (directly or through
// another) on one that comes later in the path, nor on one beside it.
func TestDataMovesOneWay(t *testing.T) {
	graph := packages(t)
	forbidden := []struct{ pkg, dep string }{
		{"collector", "enrich"}, {"collector", "store"},
		{"enrich", "store"}, {"enrich", "collector"},
		{"store", "collector"}, {"store", "enrich"},
	}
	// The shared notions are below all three.
	for _, below := range []string{"flow", "tenant", "internal/dbapi"} {
		for _, above := range []string{"collector", "enrich", "store"} {
			forbidden = append(forbidden, struct{ pkg, dep string }{below, above})
		}
	}
	for p := range graph {
		for dep, chain := range deps(graph, p) {
			for _, f := range forbidden {
				if within(p, f.pkg) && within(dep, f.dep) {
					t.Errorf("%s must not depend on %s: %s -> %s", f.pkg, f.dep, p, strings.Join(chain, " -> "))
				}
			}
			if testSupport(dep) && !testSupport(p) {
				t.Errorf("%s is for tests, and production package %s depends on it: %s", dep, p, strings.Join(chain, " -> "))
			}
		}
	}
}

// longFunctions may be over maxFuncLines, each for its reason. Keep this
// list short: split a function rather than add it here.
var longFunctions = map[string]string{
	// One case per information element, on the hot path: a switch the
	// compiler turns into a jump table, which calls would slow down.
	"collector/record.go:decodeFlowRecord": "IPFIX/NetFlow v9 information elements, hot path",
	// One case per sFlow flow record type, on the hot path as well.
	"collector/sflow.go:decodeSFlowFlowSample": "sFlow flow records, hot path",
	// Scanning of the embedded engine's special column types; the schema
	// work rewrites this file.
}

// maxFuncLines is the longest a production function may be, from its
// func line to its closing brace.
const maxFuncLines = 100

// TestFunctionLength: no production function is over maxFuncLines lines
// unless longFunctions says why, and longFunctions names no function that
// is short enough (or gone).
func TestFunctionLength(t *testing.T) {
	dir := root(t)
	fset := token.NewFileSet()
	long := map[string]int{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "var" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > maxFuncLines {
				long[filepath.ToSlash(rel)+":"+fd.Name.Name] = n
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range long {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := longFunctions[name]; !ok {
			t.Errorf("%s is %d lines, over %d: split it (or, with a reason, add it to longFunctions)", name, long[name], maxFuncLines)
		} else {
			t.Logf("allowed: %s, %d lines", name, long[name])
		}
	}
	for name := range longFunctions {
		if _, ok := long[name]; !ok {
			t.Errorf("longFunctions names %s, which is no longer over %d lines (or is gone): remove it", name, maxFuncLines)
		}
	}
}

// testSupportPackages are imported by tests only: real servers, peers and
// engines started for a test, and helpers; and the bench, which starts
// them too. They may use each other.
var testSupportPackages = []string{"internal/testkit", "internal/apitest", "internal/chtest", "internal/chcluster", "internal/peers", "internal/enginetest", "internal/receivers", "internal/flowtest", "cmd/flowbench"}

func testSupport(pkg string) bool {
	for _, s := range testSupportPackages {
		if within(pkg, s) {
			return true
		}
	}
	return false
}
