package collector

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
	"unicode"
)

// Config of the collector: where it listens and how it bounds its state.
type Config struct {
	// Listeners are UDP addresses; every listener accepts every protocol.
	Listeners []string `mapstructure:"listeners" yaml:"listeners"`
	// SocketsPerListener SO_REUSEPORT sockets share each address.
	SocketsPerListener int `mapstructure:"sockets_per_listener" yaml:"sockets_per_listener"`
	// ReceiveBufferBytes is the SO_RCVBUF asked of the kernel per socket.
	ReceiveBufferBytes int `mapstructure:"receive_buffer_bytes" yaml:"receive_buffer_bytes"`
	// Workers decode datagrams; one exporter is always handled by the same worker.
	Workers int `mapstructure:"workers" yaml:"workers"`
	// QueueLength bounds the datagrams waiting for each worker. 0 (the
	// default) sizes it from memory.limit (QueueLengthWithin); a Config
	// used as it is gets DefaultQueueLength.
	QueueLength int `mapstructure:"queue_length" yaml:"queue_length"`
	// ExporterQueueShare bounds each exporter's part of its worker's queue:
	// an exporter may have this many times the queue's free slots waiting
	// (a lone exporter can fill share/(1+share) of the queue). 0 turns the
	// bound off, letting one exporter fill the whole queue. The default, 4,
	// leaves an exporter that sends more datagrams than the others (sFlow
	// sends few flows per datagram) room for bursts: with a share of 1 and
	// a queue of 4096, one of eight flowgen exporters (sFlow) had 328
	// datagrams refused as queue_full at 300k flows/s on the embedded
	// engine, where the queue alone had lost none before the share.
	ExporterQueueShare float64 `mapstructure:"exporter_queue_share" yaml:"exporter_queue_share"`
	// TemplateTimeout expires NetFlow v9/IPFIX templates not refreshed in time.
	TemplateTimeout time.Duration `mapstructure:"template_timeout" yaml:"template_timeout"`
	// MaxTemplatesPerExporter bounds template memory against template floods.
	MaxTemplatesPerExporter int `mapstructure:"max_templates_per_exporter" yaml:"max_templates_per_exporter"`
	// MaxExporters bounds the exporters tracked; datagrams from more are dropped.
	MaxExporters int `mapstructure:"max_exporters" yaml:"max_exporters"`
	// TotalsIdleTimeout forgets a flow whose records carry only total
	// counters after this long without a report. It must outlast the
	// exporters' active timeout (Cisco's default is 30 min), or a long
	// flow's next report would count its whole total again.
	TotalsIdleTimeout time.Duration `mapstructure:"totals_idle_timeout" yaml:"totals_idle_timeout"`
	// MaxTotalsPerExporter bounds the flows of totals-only records
	// remembered per exporter (about 300 bytes each, measured); beyond it the least
	// recently reported of a few are forgotten.
	MaxTotalsPerExporter int `mapstructure:"max_totals_flows_per_exporter" yaml:"max_totals_flows_per_exporter"`
	// Sampling overrides or defaults the sampling rate per exporter prefix.
	Sampling []SamplingRule `mapstructure:"sampling" yaml:"sampling"`
	// StateFile keeps templates, options templates, sampling rates and
	// system init times across restarts, so that data is decoded at once
	// after a restart instead of being dropped as template_not_found
	// until each exporter sends its templates again (30 minutes, by
	// default, on Cisco devices). Empty: nothing is kept.
	StateFile string `mapstructure:"state_file" yaml:"state_file"`
	// ExtraFields map information elements the fixed set does not decode
	// to flows columns of their own (see ExtraField).
	ExtraFields []ExtraField `mapstructure:"extra_fields" yaml:"extra_fields"`
	// Name identifies this collector in the exporters table, where each
	// collector's snapshot of an exporter is its own row. Empty: the
	// host's name. Give each of several collectors its own.
	Name string `mapstructure:"name" yaml:"name"`
}

// SamplingRule sets the sampling rate of exporters in Prefix.
// With Override the rate replaces what the exporter says; otherwise it is
// used only when the exporter never says.
type SamplingRule struct {
	Prefix   string `mapstructure:"prefix" yaml:"prefix"`
	Rate     uint32 `mapstructure:"rate" yaml:"rate"`
	Override bool   `mapstructure:"override" yaml:"override"`
}

// DefaultConfig listens on the conventional ports of each protocol.
func DefaultConfig() Config {
	return Config{
		Listeners:               []string{":2055", ":4739", ":6343"},
		SocketsPerListener:      2,
		ReceiveBufferBytes:      32 << 20,
		Workers:                 2,
		ExporterQueueShare:      4,
		TemplateTimeout:         30 * time.Minute,
		MaxTemplatesPerExporter: 1024,
		MaxExporters:            10000,
		StateFile:               "./var/state/collector.state",
		TotalsIdleTimeout:       time.Hour,
		MaxTotalsPerExporter:    16384,
	}
}

// DefaultQueueLength is a worker's queue when neither queue_length nor a
// memory budget sizes it.
const DefaultQueueLength = 8192

// Queue lengths that a memory budget may give: below the minimum a
// worker stalled for a millisecond drops datagrams; beyond the maximum
// the queue only adds latency.
const (
	minQueueLength = 1024
	maxQueueLength = 1 << 16
)

// QueueBytes is the memory the workers' queues hold when every one is
// full of datagrams of the usual size (a 1500-byte MTU's; a bigger one
// takes its own size), for the memory budget.
func (c Config) QueueBytes() int64 {
	return int64(c.Workers) * int64(c.queueLength()) * smallDatagram
}

// QueueLengthWithin is the longest queue per worker whose datagrams fit
// in bytes, within 1024..65536.
func (c Config) QueueLengthWithin(bytes int64) int {
	n := bytes / (int64(max(c.Workers, 1)) * smallDatagram)
	return int(min(max(n, minQueueLength), maxQueueLength))
}

func (c Config) queueLength() int {
	if c.QueueLength == 0 {
		return DefaultQueueLength
	}
	return c.QueueLength
}

// Validate names the first wrong key and says what is wrong with it.
func (c Config) Validate() error {
	var errs []error
	if len(c.Name) > 128 || strings.ContainsFunc(c.Name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		errs = append(errs, fmt.Errorf("name: %q must be at most 128 printable characters", c.Name))
	}
	if len(c.Listeners) == 0 {
		errs = append(errs, errors.New("listeners: at least one address is required"))
	}
	for i, l := range c.Listeners {
		if _, err := netip.ParseAddrPort(normalizeListen(l)); err != nil {
			errs = append(errs, fmt.Errorf("listeners[%d]: %q is not host:port: %v", i, l, err))
		}
	}
	if c.SocketsPerListener < 1 || c.SocketsPerListener > 64 {
		errs = append(errs, fmt.Errorf("sockets_per_listener: %d is outside 1..64", c.SocketsPerListener))
	}
	if c.ReceiveBufferBytes < 0 {
		errs = append(errs, fmt.Errorf("receive_buffer_bytes: %d is negative", c.ReceiveBufferBytes))
	}
	if c.Workers < 1 || c.Workers > 256 {
		errs = append(errs, fmt.Errorf("workers: %d is outside 1..256", c.Workers))
	}
	if c.QueueLength < 0 {
		errs = append(errs, fmt.Errorf("queue_length: %d is negative (0 sizes the queues from memory.limit)", c.QueueLength))
	}
	// NaN passes every comparison, so it is named on its own.
	if !(c.ExporterQueueShare >= 0) || math.IsInf(c.ExporterQueueShare, 1) {
		errs = append(errs, fmt.Errorf("exporter_queue_share: %v must be a number from 0 (no bound) up", c.ExporterQueueShare))
	}
	if c.TemplateTimeout < time.Second {
		errs = append(errs, fmt.Errorf("template_timeout: %s is shorter than 1s", c.TemplateTimeout))
	}
	if c.MaxTemplatesPerExporter < 1 {
		errs = append(errs, fmt.Errorf("max_templates_per_exporter: %d must be at least 1", c.MaxTemplatesPerExporter))
	}
	if c.TotalsIdleTimeout < time.Second {
		errs = append(errs, fmt.Errorf("totals_idle_timeout: %s is shorter than 1s", c.TotalsIdleTimeout))
	}
	if c.MaxTotalsPerExporter < 1 {
		errs = append(errs, fmt.Errorf("max_totals_flows_per_exporter: %d must be at least 1", c.MaxTotalsPerExporter))
	}
	if c.MaxExporters < 1 {
		errs = append(errs, fmt.Errorf("max_exporters: %d must be at least 1", c.MaxExporters))
	}
	if c.StateFile != "" && (strings.HasSuffix(c.StateFile, "/") || filepath.Base(c.StateFile) == "." || filepath.Base(c.StateFile) == "..") {
		errs = append(errs, fmt.Errorf("state_file: %q names a directory; name a file (empty: keep no state)", c.StateFile))
	}
	for i, r := range c.Sampling {
		if _, err := netip.ParsePrefix(r.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("sampling[%d].prefix: %q is not a CIDR prefix: %v", i, r.Prefix, err))
		}
		if r.Rate < 1 {
			errs = append(errs, fmt.Errorf("sampling[%d].rate: must be at least 1", i))
		}
	}
	errs = append(errs, validateExtraFields(c.ExtraFields)...)
	return errors.Join(errs...)
}

// normalizeListen turns ":2055" into "0.0.0.0:2055" so it parses as an AddrPort.
func normalizeListen(s string) string {
	if len(s) > 0 && s[0] == ':' {
		return "0.0.0.0" + s
	}
	return s
}
