package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/config"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, COPY, ...
	args string
}

// stage is a FROM and the instructions after it.
type stage struct {
	from, name string
	body       []instruction
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []stage
	var line string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if line == "" && (text == "" || strings.HasPrefix(text, "#")) {
			continue
		}
		if more, ok := strings.CutSuffix(text, "\\"); ok {
			line += more + " "
			continue
		}
		line += text
		cmd, args, _ := strings.Cut(line, " ")
		line = ""
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
		case len(stages) > 0:
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// all is the arguments of every instruction cmd of s.
func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// env is s's ENV, in the NAME=value form.
func (s stage) env(t *testing.T) map[string]string {
	out := map[string]string{}
	for _, args := range s.all("ENV") {
		for _, kv := range strings.Fields(args) {
			name, value, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("ENV %q: only the NAME=value form is read", args)
			}
			out[name] = value
		}
	}
	return out
}

// imageEnv is the final image's environment, which compose services built
// from it start with.
func imageEnv(t *testing.T) map[string]string {
	stages := parseDockerfile(t, "../Dockerfile")
	return stages[len(stages)-1].env(t)
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, "../Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	final := stages[len(stages)-1]
	if strings.HasPrefix(final.from, "golang") {
		t.Errorf("final stage FROM %s: the toolchain must not be in the image", final.from)
	}

	users := final.all("USER")
	if len(users) != 1 {
		t.Fatalf("final stage has USER %q, want exactly one", users)
	}
	uid, gid, _ := strings.Cut(users[0], ":")
	for _, id := range []string{uid, gid} {
		if id == "" || id == "0" || strings.Trim(id, "0123456789") != "" {
			t.Errorf("USER %s: want numeric non-root UID:GID (Kubernetes' runAsNonRoot checks a number)", users[0])
		}
	}

	hc := final.all("HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatalf("HEALTHCHECK %q, want one", hc)
	}
	_, execForm, ok := strings.Cut(hc[0], "CMD ")
	var argv []string
	if !ok || json.Unmarshal([]byte(execForm), &argv) != nil || len(argv) < 2 || argv[1] != "health" {
		t.Errorf("HEALTHCHECK %q: want the exec form running `flowhouse health` (the image has no shell)", hc[0])
	}

	cfg := loadEnv(t, "Dockerfile ENV", final.env(t))
	var exposed []string
	for _, e := range final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(e)...)
	}
	slices.Sort(exposed)
	if want := listenPorts(t, cfg); !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, want flowhouse's listen ports %v", exposed, want)
	}
	if host := strings.TrimSuffix(cfg.HTTP.Listen, ":8080"); host != "0.0.0.0" {
		t.Errorf("http.listen %q in the image: published ports reach only 0.0.0.0", cfg.HTTP.Listen)
	}
	checkCopies(t, stages)
	checkDockerignore(t)
}

// checkCopies: every COPY from the build context names a file of the
// repository, and the MAC vendor files land where enrich looks for them.
func checkCopies(t *testing.T, stages []stage) {
	t.Helper()
	ouiDir := strings.TrimSuffix(config.Default().Enrich.OUIDir, "/")
	var oui bool
	for _, s := range stages {
		for _, args := range s.all("COPY") {
			f := strings.Fields(args)
			var from bool
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				from = from || strings.HasPrefix(f[0], "--from=")
				f = f[1:]
			}
			dest := strings.TrimSuffix(f[len(f)-1], "/")
			if from {
				oui = oui || (dest == ouiDir && strings.Contains(f[0], "ieee-data"))
				continue
			}
			for _, src := range f[:len(f)-1] {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("COPY %s: %v", args, err)
				}
			}
		}
	}
	if !oui {
		t.Errorf("no COPY of ieee-data to %s (enrich.oui_dir's default)", ouiDir)
	}
}

// checkDockerignore: var/ holds the embedded engine's 570 MB library and
// make run's data, which must not be sent as build context.
func checkDockerignore(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for _, want := range []string{"var/", ".git"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
