package store

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/loopback"
)

// Config of the store: which database, how flows are batched into it and
// how long they are kept.
type Config struct {
	// Addr is the native protocol address (host:port) of a ClickHouse
	// server. Empty (the default) runs the embedded engine instead.
	Addr string `mapstructure:"addr" yaml:"addr"`
	// Embedded configures the embedded engine, used when Addr is empty.
	Embedded EmbeddedConfig `mapstructure:"embedded" yaml:"embedded"`
	// Database holds all flowhouse tables; it is created when missing.
	Database string `mapstructure:"database" yaml:"database"`
	// Cluster is the name of a cluster in the servers' <remote_servers>.
	// Empty (the default) is one server. Set, every table is made ON
	// CLUSTER with a Replicated engine, the flows tables sharded behind
	// Distributed fronts (dbapi.Layout), and inserts of flows wait until
	// every shard has its rows. A database is made in one mode for good:
	// there is no migration between them.
	Cluster string `mapstructure:"cluster" yaml:"cluster"`
	// ClusterInserts is how flows reach a cluster's shards: "shards" (the
	// default) sends each batch whole to one shard's flows_local, through
	// one of its replicas, learnt from system.clusters; "distributed"
	// sends every batch through the flows front, synchronously, for
	// collectors that cannot reach every node (see shards.go for the
	// measured difference).
	ClusterInserts string `mapstructure:"cluster_inserts" yaml:"cluster_inserts"`
	Username       string `mapstructure:"username" yaml:"username"`
	// Password is a secret (package secret: plain, enc:..., or read from
	// PasswordFile); config.Load hands it over as plain text, and
	// Config's LogValue never shows it.
	Password     string `mapstructure:"password" yaml:"password" secret:"true"`
	PasswordFile string `mapstructure:"password_file" yaml:"password_file"`
	// DialTimeout bounds connecting to the server.
	DialTimeout time.Duration `mapstructure:"dial_timeout" yaml:"dial_timeout"`
	// Compression of the native protocol: auto, lz4, zstd or none. auto
	// (the default) is none to a server on a loopback address, where
	// compressing only costs both ends CPU, and lz4 to any other. lz4 costs
	// little CPU and saves most of the bandwidth to a remote server.
	Compression string `mapstructure:"compression" yaml:"compression"`
	// InsertTimeout bounds one insert of one batch, retries excluded.
	InsertTimeout time.Duration `mapstructure:"insert_timeout" yaml:"insert_timeout"`

	// BatchRows flushes a batch when it holds this many flows.
	BatchRows int `mapstructure:"batch_rows" yaml:"batch_rows"`
	// BatchInterval flushes a batch this long after its first flow, if it
	// has not filled by then.
	BatchInterval time.Duration `mapstructure:"batch_interval" yaml:"batch_interval"`
	// Writers insert batches concurrently.
	Writers int `mapstructure:"writers" yaml:"writers"`
	// Retry of a failed insert.
	Retry RetryConfig `mapstructure:"retry" yaml:"retry"`
	// StopTimeout bounds flushing what is buffered when the store stops.
	StopTimeout time.Duration `mapstructure:"stop_timeout" yaml:"stop_timeout"`

	Retention RetentionConfig `mapstructure:"retention" yaml:"retention"`
}

// EmbeddedConfig is the embedded engine: chDB, ClickHouse as a shared
// library loaded into the flowhouse process.
type EmbeddedConfig struct {
	// Path is the data directory. One process at a time may use it.
	Path string `mapstructure:"path" yaml:"path"`
	// Library is libchdb.so, installed by `make deps` (scripts/chdb.sh).
	Library string `mapstructure:"library" yaml:"library"`

	// HTTPListen is where `flowhouse serve` answers read-only
	// ClickHouse-compatible HTTP queries on the embedded engine (package
	// queryapi), and where `flowhouse query` looks for it. Empty turns
	// the endpoint off. Loopback by default: another address needs
	// HTTPToken.
	HTTPListen string `mapstructure:"http_listen" yaml:"http_listen"`
	// HTTPToken, when set, is required from every query: a Bearer token,
	// X-ClickHouse-Key, the password of Basic auth or a password= parameter.
	// A secret like Password: plain, enc:..., or read from HTTPTokenFile.
	HTTPToken     string `mapstructure:"http_token" yaml:"http_token" secret:"true"`
	HTTPTokenFile string `mapstructure:"http_token_file" yaml:"http_token_file"`
	// QueryTimeout bounds one query of the endpoint or of `flowhouse
	// query` (the engine's max_execution_time, and the wait for a free
	// connection).
	QueryTimeout time.Duration `mapstructure:"query_timeout" yaml:"query_timeout"`
	// QueryMaxResultBytes bounds one result (the engine's max_result_bytes
	// and the size of the formatted output).
	QueryMaxResultBytes int64 `mapstructure:"query_max_result_bytes" yaml:"query_max_result_bytes"`
	// QueryConcurrency is how many queries run at once; more wait.
	QueryConcurrency int `mapstructure:"query_concurrency" yaml:"query_concurrency"`
	// QueryMaxMemoryBytes bounds the memory of one query (the engine's
	// max_memory_usage). GROUP BY and ORDER BY spill to disk under the
	// data directory past half of it, so large aggregations still finish.
	QueryMaxMemoryBytes int64 `mapstructure:"query_max_memory_bytes" yaml:"query_max_memory_bytes"`
	// QueryMaxRowsToRead and QueryMaxBytesToRead bound what one query may
	// read from tables (max_rows_to_read, max_bytes_to_read); 0 is no
	// limit.
	QueryMaxRowsToRead  int64 `mapstructure:"query_max_rows_to_read" yaml:"query_max_rows_to_read"`
	QueryMaxBytesToRead int64 `mapstructure:"query_max_bytes_to_read" yaml:"query_max_bytes_to_read"`

	// EngineNice is the nice value (0..19) the engine's work runs at: its
	// merge threads (ClickHouse's os_threads_nice_value_merge_mutate) and
	// every insert (os_threads_priority, on OS threads kept for inserts).
	// The engine shares the CPU with the collector: engine work that takes
	// a core from the decode workers makes their queues overflow and
	// datagrams be dropped, while an insert that waits only queues its
	// batch, and past the queue's memory spills it to the disk spool,
	// which replays it later. Measured at 352k flows/s of a real capture
	// on 2 cores: 22% of datagrams dropped at 0, 2.8% at 10. 0 runs the
	// engine at the collector's priority.
	EngineNice int `mapstructure:"engine_nice" yaml:"engine_nice"`
}

// The values of Config.ClusterInserts.
const (
	ClusterInsertsShards      = "shards"
	ClusterInsertsDistributed = "distributed"
)

// Layout is where the tables are: one server, or the cluster.
func (c Config) Layout() dbapi.Layout { return dbapi.Layout{Cluster: c.Cluster, Database: c.Database} }

// serverSettings are the engine's server settings, name=value, given to
// it when it boots.
func (e EmbeddedConfig) serverSettings() []string {
	return []string{"os_threads_nice_value_merge_mutate=" + strconv.Itoa(e.EngineNice)}
}

// RetryConfig is an exponential backoff: Initial, doubled up to Max,
// given up after MaxElapsed (then the batch is dropped and counted).
// MaxElapsed 0 retries until the store stops.
type RetryConfig struct {
	Initial    time.Duration `mapstructure:"initial" yaml:"initial"`
	Max        time.Duration `mapstructure:"max" yaml:"max"`
	MaxElapsed time.Duration `mapstructure:"max_elapsed" yaml:"max_elapsed"`
}

// RetentionConfig says how long each table keeps rows; 0 keeps them
// forever. Servers with TTL enforce it with the table's TTL, set when the
// table is created; older servers get a job that drops whole partitions
// (days for flows and flows_1m, months for flows_1h) once they are older.
type RetentionConfig struct {
	Flows   time.Duration `mapstructure:"flows" yaml:"flows"`
	Flows1m time.Duration `mapstructure:"flows_1m" yaml:"flows_1m"`
	Flows1h time.Duration `mapstructure:"flows_1h" yaml:"flows_1h"`
	// CheckInterval is how often the partition-dropping job runs.
	CheckInterval time.Duration `mapstructure:"check_interval" yaml:"check_interval"`
}

const day = 24 * time.Hour

// DefaultConfig runs the embedded engine on ./var/data (no server to set
// up), batches 50k flows or 1 s, keeps raw flows 30 days, minute rollups
// 90 days and hourly rollups 2 years.
func DefaultConfig() Config {
	return Config{
		Embedded: EmbeddedConfig{
			Path:    "./var/data",
			Library: "./var/lib/libchdb.so",

			HTTPListen:          "127.0.0.1:8123",
			QueryTimeout:        60 * time.Second,
			QueryMaxResultBytes: 100 << 20,
			QueryConcurrency:    2,
			QueryMaxMemoryBytes: 1 << 30,
			QueryMaxRowsToRead:  2_000_000_000,
			QueryMaxBytesToRead: 200 << 30,
			EngineNice:          10,
		},
		Database:       "flowhouse",
		Username:       "default",
		DialTimeout:    5 * time.Second,
		Compression:    "auto",
		ClusterInserts: ClusterInsertsShards,
		InsertTimeout:  30 * time.Second,
		BatchRows:      50000,
		BatchInterval:  time.Second,
		Writers:        2,
		Retry: RetryConfig{
			Initial:    500 * time.Millisecond,
			Max:        30 * time.Second,
			MaxElapsed: 5 * time.Minute,
		},
		StopTimeout: 10 * time.Second,
		Retention: RetentionConfig{
			Flows:         30 * day,
			Flows1m:       90 * day,
			Flows1h:       2 * 365 * day,
			CheckInterval: time.Hour,
		},
	}
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate names the first wrong key and says what is wrong with it.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		// The embedded engine: its keys matter only then.
		if c.Embedded.Path == "" {
			errs = append(errs, errors.New("embedded.path: required when addr is empty (the embedded engine's data directory)"))
		}
		if c.Embedded.Library == "" {
			errs = append(errs, errors.New("embedded.library: required when addr is empty (path of libchdb.so, installed by scripts/chdb.sh install)"))
		}
		errs = append(errs, c.Embedded.validateQuery()...)
		if c.Embedded.EngineNice < 0 || c.Embedded.EngineNice > 19 {
			errs = append(errs, fmt.Errorf("embedded.engine_nice: %d is outside 0..19 (a nice value: higher runs the engine's merges and inserts at a lower priority)", c.Embedded.EngineNice))
		}
	} else if host, port, err := net.SplitHostPort(c.Addr); err != nil || host == "" {
		errs = append(errs, fmt.Errorf("addr: %q is not host:port", c.Addr))
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		errs = append(errs, fmt.Errorf("addr: port %q is not 1..65535", port))
	}
	if c.Cluster != "" && c.Addr == "" {
		errs = append(errs, fmt.Errorf("cluster: %q needs addr: the embedded engine is one process, not a cluster", c.Cluster))
	} else if c.Cluster != "" && !identifier.MatchString(c.Cluster) {
		errs = append(errs, fmt.Errorf("cluster: %q must be letters, digits and _, not starting with a digit (a name in the servers' remote_servers)", c.Cluster))
	}
	if c.ClusterInserts != ClusterInsertsShards && c.ClusterInserts != ClusterInsertsDistributed {
		errs = append(errs, fmt.Errorf("cluster_inserts: %q is not shards or distributed", c.ClusterInserts))
	}
	if !identifier.MatchString(c.Database) {
		errs = append(errs, fmt.Errorf("database: %q must be letters, digits and _, not starting with a digit", c.Database))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dial_timeout: %s must be positive", c.DialTimeout))
	}
	if _, ok := compressionMethods[c.Compression]; !ok && c.Compression != "auto" {
		errs = append(errs, fmt.Errorf("compression: %q is not auto, lz4, zstd or none", c.Compression))
	}
	if c.InsertTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("insert_timeout: %s is shorter than 100ms", c.InsertTimeout))
	}
	if c.BatchRows < 1 {
		errs = append(errs, fmt.Errorf("batch_rows: %d must be at least 1", c.BatchRows))
	} else if c.BatchRows > 10_000_000 {
		errs = append(errs, fmt.Errorf("batch_rows: %d is more than 10000000", c.BatchRows))
	}
	if c.BatchInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("batch_interval: %s is shorter than 10ms", c.BatchInterval))
	}
	if c.Writers < 1 || c.Writers > 64 {
		errs = append(errs, fmt.Errorf("writers: %d is outside 1..64", c.Writers))
	}
	if c.Retry.Initial <= 0 {
		errs = append(errs, fmt.Errorf("retry.initial: %s must be positive", c.Retry.Initial))
	}
	if c.Retry.Max < c.Retry.Initial {
		errs = append(errs, fmt.Errorf("retry.max: %s is shorter than retry.initial %s", c.Retry.Max, c.Retry.Initial))
	}
	if c.Retry.MaxElapsed < 0 {
		errs = append(errs, fmt.Errorf("retry.max_elapsed: %s is negative", c.Retry.MaxElapsed))
	}
	if c.StopTimeout <= 0 {
		errs = append(errs, fmt.Errorf("stop_timeout: %s must be positive", c.StopTimeout))
	}
	for _, r := range []struct {
		key string
		d   time.Duration
	}{
		{"retention.flows", c.Retention.Flows},
		{"retention.flows_1m", c.Retention.Flows1m},
		{"retention.flows_1h", c.Retention.Flows1h},
	} {
		if r.d != 0 && r.d < time.Hour {
			errs = append(errs, fmt.Errorf("%s: %s must be 0 (keep forever) or at least 1h", r.key, r.d))
		}
	}
	if c.Retention.CheckInterval < time.Second {
		errs = append(errs, fmt.Errorf("retention.check_interval: %s is shorter than 1s", c.Retention.CheckInterval))
	}
	return errors.Join(errs...)
}

// validateQuery checks the query endpoint's keys. Listening on anything
// but a loopback address without a token is an error: anyone who can
// reach the port could read every flow.
func (e EmbeddedConfig) validateQuery() []error {
	var errs []error
	if e.HTTPListen != "" {
		host, port, err := net.SplitHostPort(e.HTTPListen)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("embedded.http_listen: %q is not host:port (empty turns the query endpoint off)", e.HTTPListen))
		} else if !loopback.Host(host) && e.HTTPToken == "" && e.HTTPTokenFile == "" {
			errs = append(errs, fmt.Errorf("embedded.http_listen: %q is not a loopback address, so embedded.http_token is required (anyone who reaches the port could read every flow); set it or embedded.http_token_file, or listen on 127.0.0.1", e.HTTPListen))
		}
	}
	if e.QueryTimeout < time.Second {
		errs = append(errs, fmt.Errorf("embedded.query_timeout: %s is shorter than 1s", e.QueryTimeout))
	}
	if e.QueryMaxResultBytes < 1024 {
		errs = append(errs, fmt.Errorf("embedded.query_max_result_bytes: %d is less than 1024", e.QueryMaxResultBytes))
	}
	if e.QueryMaxMemoryBytes < 16<<20 {
		errs = append(errs, fmt.Errorf("embedded.query_max_memory_bytes: %d is less than 16 MiB (16777216)", e.QueryMaxMemoryBytes))
	}
	if e.QueryMaxRowsToRead < 0 {
		errs = append(errs, fmt.Errorf("embedded.query_max_rows_to_read: %d is negative (0 is no limit)", e.QueryMaxRowsToRead))
	}
	if e.QueryMaxBytesToRead < 0 {
		errs = append(errs, fmt.Errorf("embedded.query_max_bytes_to_read: %d is negative (0 is no limit)", e.QueryMaxBytesToRead))
	}
	if e.QueryConcurrency < 1 || e.QueryConcurrency > 64 {
		errs = append(errs, fmt.Errorf("embedded.query_concurrency: %d is outside 1..64", e.QueryConcurrency))
	}
	return errs
}

// LogValue keeps the password out of logs.
func (c Config) LogValue() slog.Value {
	password := ""
	if c.Password != "" {
		password = "REDACTED"
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("embedded_path", c.Embedded.Path),
		slog.String("database", c.Database),
		slog.String("username", c.Username),
		slog.String("password", password),
		slog.Int("batch_rows", c.BatchRows),
		slog.Duration("batch_interval", c.BatchInterval),
		slog.Int("writers", c.Writers),
	)
}

// WireCompression is the compression inserts and queries use: Compression,
// with auto resolved by the server's address. Measured on one machine with
// the server on loopback (bench/results/profile.md): lz4 was two thirds of
// the insert path's CPU, and the server, sharing the cores, stored 65%
// more flows per second without it.
func (c Config) WireCompression() string {
	if c.Compression != "auto" {
		return c.Compression
	}
	if host, _, err := net.SplitHostPort(c.Addr); err == nil && loopback.Host(host) {
		return "none"
	}
	return "lz4"
}
