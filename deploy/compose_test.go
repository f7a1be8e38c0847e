package deploy

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFiles are flowhouse's compose files, from this directory.
var composeFiles = []string{"../docker-compose.yml", "cluster/docker-compose.yml"}

// composeName is a compose file's name in subtests.
var composeName = map[string]string{"../docker-compose.yml": "single", "cluster/docker-compose.yml": "cluster"}

// TestComposeConfig runs Debian's docker-compose on each file: it checks
// the schema and the interpolation, and needs no Docker engine.
func TestComposeConfig(t *testing.T) {
	bin := requireTool(t, "docker-compose")
	for _, f := range composeFiles {
		cmd := exec.Command(bin, "-f", f, "config", "-q")
		// The defaults in the files, not whatever this shell has.
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("docker-compose -f %s config -q: %v\n%s", f, err, out)
		}
	}
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Hostname    string            `yaml:"hostname"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
}

// interpolation is compose's ${NAME} and ${NAME:-default}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// readCompose parses a compose file as docker-compose would with none of
// its variables set: anchors and merge keys resolved, ${X:-d} as d.
func readCompose(t *testing.T, path string) composeFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = interpolation.ReplaceAll(data, []byte("$3"))
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

// containerPorts are a service's published container ports, "2055/udp".
func (s composeService) containerPorts() []string {
	var out []string
	for _, p := range s.Ports {
		spec, proto, ok := strings.Cut(p, "/")
		if !ok {
			proto = "tcp"
		}
		out = append(out, spec[strings.LastIndex(spec, ":")+1:]+"/"+proto)
	}
	slices.Sort(out)
	return out
}

// mounts maps each volume's container path to its source.
func (s composeService) mounts() map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			out[parts[1]] = parts[0]
		}
	}
	return out
}

// collector is a flowhouse service of a compose file, as it would start.
type collector struct {
	name string
	env  map[string]string // the image's ENV, then the service's
	svc  composeService
}

func collectors(t *testing.T, f composeFile) []collector {
	var out []collector
	for name, s := range f.Services {
		if s.Build == nil {
			continue
		}
		env := imageEnv(t)
		for k, v := range s.Environment {
			env[k] = v
		}
		out = append(out, collector{name, env, s})
	}
	slices.SortFunc(out, func(a, b collector) int { return strings.Compare(a.name, b.name) })
	return out
}

// TestComposeFiles: every flowhouse service starts with the variables it
// is given, publishes exactly the ports it listens on, keeps its spool
// and collector state on a volume of its own, and reaches a ClickHouse
// service of the same file.
func TestComposeFiles(t *testing.T) {
	for _, path := range composeFiles {
		t.Run(composeName[path], func(t *testing.T) {
			f := readCompose(t, path)
			cs := collectors(t, f)
			if len(cs) == 0 {
				t.Fatal("no flowhouse service (one with build:)")
			}
			spools := map[string]string{}
			rulesOn := 0
			for _, c := range cs {
				where := path + " " + c.name
				cfg := loadEnv(t, where, c.env)
				if got, want := c.svc.containerPorts(), listenPorts(t, cfg); !slices.Equal(got, want) {
					t.Errorf("%s: publishes %v, listens on %v", where, got, want)
				}
				mounts := c.svc.mounts()
				var targets []string
				for target, source := range mounts {
					targets = append(targets, target)
					if other, dup := spools[source]; dup {
						t.Errorf("%s: volume %s is %s's too: each collector needs its own spool", where, source, other)
					}
					spools[source] = c.name
				}
				for _, p := range []string{cfg.Spool.Dir, cfg.Collector.StateFile} {
					if !covered(p, targets) {
						t.Errorf("%s: %s is on no volume (%v): it would be lost with the container", where, p, targets)
					}
				}
				host, _, _ := strings.Cut(cfg.ClickHouse.Addr, ":")
				if _, ok := f.Services[host]; !ok {
					t.Errorf("%s: clickhouse.addr %q is no service of the file", where, cfg.ClickHouse.Addr)
				}
				if c.env["FLOWHOUSE_RULES_ENABLED"] != "false" {
					rulesOn++
				}
			}
			if rulesOn != 1 {
				t.Errorf("%d collectors run the rules (rules.enabled), want exactly 1", rulesOn)
			}
			if len(cs) > 1 {
				checkCluster(t, path, f, cs)
			}
		})
	}
}

// chConfig is what the tests read of a ClickHouse config.d file.
type chConfig struct {
	RemoteServers struct {
		Clusters []struct {
			XMLName xml.Name
			Shards  []struct {
				Replicas []struct {
					Host string `xml:"host"`
					Port int    `xml:"port"`
				} `xml:"replica"`
			} `xml:"shard"`
		} `xml:",any"`
	} `xml:"remote_servers"`
	Macros struct {
		Shard   string `xml:"shard"`
		Replica string `xml:"replica"`
	} `xml:"macros"`
	ZooKeeper []struct {
		Host string `xml:"host"`
		Port int    `xml:"port"`
	} `xml:"zookeeper>node"`
}

// serverConfig merges the config.d files mounted into a server service.
func serverConfig(t *testing.T, dir string, s composeService) chConfig {
	t.Helper()
	var merged chConfig
	for target, source := range s.mounts() {
		if !strings.HasPrefix(target, "/etc/clickhouse-server/config.d/") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, source))
		if err != nil {
			t.Fatal(err)
		}
		var c chConfig
		if err := xml.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		if len(c.RemoteServers.Clusters) > 0 {
			merged.RemoteServers = c.RemoteServers
		}
		if c.Macros.Shard != "" || c.Macros.Replica != "" {
			merged.Macros = c.Macros
		}
		if len(c.ZooKeeper) > 0 {
			merged.ZooKeeper = c.ZooKeeper
		}
	}
	return merged
}

// checkCluster: the collectors name the cluster the servers define, write
// to a node of it, and every node's macros say where it is in that
// cluster, no two alike.
func checkCluster(t *testing.T, path string, f composeFile, cs []collector) {
	t.Helper()
	dir := filepath.Dir(path)
	// host:port of each replica -> "shard index/replica name" it must have.
	want := map[string]string{}
	seen := map[string]string{}
	var cluster string
	for name, s := range f.Services {
		if !strings.HasPrefix(s.Image, "clickhouse/clickhouse-server") {
			continue
		}
		c := serverConfig(t, dir, s)
		if len(c.RemoteServers.Clusters) != 1 {
			t.Fatalf("%s: %d clusters in remote_servers, want 1", name, len(c.RemoteServers.Clusters))
		}
		cl := c.RemoteServers.Clusters[0]
		for i, sh := range cl.Shards {
			for _, r := range sh.Replicas {
				want[fmt.Sprintf("%s:%d", r.Host, r.Port)] = strconv.Itoa(i + 1)
			}
		}
		if cluster != "" && cluster != cl.XMLName.Local {
			t.Errorf("%s: cluster %q, other servers have %q", name, cl.XMLName.Local, cluster)
		}
		cluster = cl.XMLName.Local
		self := s.Hostname + ":9000"
		if shard, ok := want[self]; !ok {
			t.Errorf("%s: %s is not in remote_servers", name, self)
		} else if c.Macros.Shard != shard {
			t.Errorf("%s: macro shard %q, remote_servers has it in shard %s", name, c.Macros.Shard, shard)
		}
		key := c.Macros.Shard + "/" + c.Macros.Replica
		if other, dup := seen[key]; dup || c.Macros.Replica == "" {
			t.Errorf("%s: macros shard/replica %q, the same as %q's (or empty)", name, key, other)
		}
		seen[key] = name
		for _, zk := range c.ZooKeeper {
			if _, ok := f.Services[zk.Host]; !ok {
				t.Errorf("%s: zookeeper node %s is no service", name, zk.Host)
			}
		}
	}
	for _, c := range cs {
		if got := c.env["FLOWHOUSE_CLICKHOUSE_CLUSTER"]; got != cluster {
			t.Errorf("%s: clickhouse.cluster %q, the servers define %q", c.name, got, cluster)
		}
		if _, ok := want[c.env["FLOWHOUSE_CLICKHOUSE_ADDR"]]; !ok {
			t.Errorf("%s: clickhouse.addr %s is no replica of %s", c.name, c.env["FLOWHOUSE_CLICKHOUSE_ADDR"], cluster)
		}
	}
	if len(seen) != len(want) || len(want) != 4 {
		t.Errorf("%d servers with macros for %d replicas in remote_servers, want 2 shards x 2 replicas", len(seen), len(want))
	}
}
