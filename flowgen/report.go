package flowgen

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Counts is what was sent, as encoded in the records (unscaled by the
// sampling rate). For sFlow, a flow is a flow sample, its bytes the IP
// total length of the sampled packet and its packets 1.
type Counts struct {
	Datagrams    uint64 `json:"datagrams,omitempty"`
	PayloadBytes uint64 `json:"payload_bytes,omitempty"` // UDP payload bytes of the datagrams
	Flows        uint64 `json:"flows"`
	Bytes        uint64 `json:"bytes"`
	Packets      uint64 `json:"packets"`
	IPv6Flows    uint64 `json:"ipv6_flows"`
	IPv6Bytes    uint64 `json:"ipv6_bytes"`
	IPv6Packets  uint64 `json:"ipv6_packets"`
}

func (c *Counts) addFlow(v6 bool, bytes, packets uint64) {
	c.Flows++
	c.Bytes += bytes
	c.Packets += packets
	if v6 {
		c.IPv6Flows++
		c.IPv6Bytes += bytes
		c.IPv6Packets += packets
	}
}

func (c *Counts) merge(o *Counts) {
	c.Datagrams += o.Datagrams
	c.PayloadBytes += o.PayloadBytes
	c.Flows += o.Flows
	c.Bytes += o.Bytes
	c.Packets += o.Packets
	c.IPv6Flows += o.IPv6Flows
	c.IPv6Bytes += o.IPv6Bytes
	c.IPv6Packets += o.IPv6Packets
}

// Report says exactly what a run sent. Datagrams that could not be sent
// are in Unsent and nowhere else.
type Report struct {
	Seed            uint64            `json:"seed"`
	Target          string            `json:"target"`
	Sent            bool              `json:"sent_udp"`
	VirtualClock    bool              `json:"virtual_clock"`
	Start           time.Time         `json:"start"` // time of the first flow
	ElapsedSeconds  float64           `json:"elapsed_seconds"`
	ScheduleSeconds float64           `json:"schedule_seconds"` // run time the schedule covered
	Rate            float64           `json:"rate"`
	FlowsPerSecond  float64           `json:"flows_per_second"` // achieved, wall clock
	Interrupted     bool              `json:"interrupted,omitempty"`
	Total           Counts            `json:"total"`
	Protocols       map[string]Counts `json:"protocols"`
	Exporters       []ExporterReport  `json:"exporters"`
	Background      Counts            `json:"background"`
	Scenarios       []ScenarioReport  `json:"scenarios"`
	Unsent          Counts            `json:"unsent"`
	SendError       string            `json:"send_error,omitempty"` // the last one
}

// ExporterReport is one simulated exporter.
type ExporterReport struct {
	Index             int      `json:"index"`
	Address           string   `json:"address"` // source address and port
	Protocol          string   `json:"protocol"`
	Domain            uint32   `json:"domain"` // v5 engine ID, v9 source ID, IPFIX observation domain, sFlow sub-agent
	SamplerID         uint32   `json:"sampler_id,omitempty"`
	SamplingRate      uint32   `json:"sampling_rate"`
	Interfaces        []uint32 `json:"interfaces"`
	Counts            Counts   `json:"sent"`
	TemplateDatagrams uint64   `json:"template_datagrams,omitempty"` // v9/IPFIX datagrams carrying templates
	OptionsRecords    uint64   `json:"options_records,omitempty"`    // v9/IPFIX sampling options records
	CounterSamples    uint64   `json:"counter_samples,omitempty"`    // sFlow
	Unsent            Counts   `json:"unsent"`
}

// ScenarioReport is what one injected scenario contributed.
type ScenarioReport struct {
	Name     string `json:"name"`
	Start    string `json:"start"`
	Duration string `json:"duration"` // empty: until the end
	Target   string `json:"target"`
	Counts   Counts `json:"sent"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes a summary for people.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "flowgen: seed %d, target %s, %.3fs wall, %.3fs schedule, %.0f flows/s\n",
		r.Seed, r.Target, r.ElapsedSeconds, r.ScheduleSeconds, r.FlowsPerSecond)
	fmt.Fprintln(tw, "\tdatagrams\tflows\tbytes\tpackets\tipv6 flows\t")
	row := func(name string, c Counts) {
		d := fmt.Sprint(c.Datagrams)
		if c.Datagrams == 0 {
			d = "-" // background and scenarios share datagrams
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t\n", name, d, c.Flows, c.Bytes, c.Packets, c.IPv6Flows)
	}
	for _, p := range Protocols {
		if c, ok := r.Protocols[p.String()]; ok {
			row(p.String(), c)
		}
	}
	for _, e := range r.Exporters {
		row(e.Address+" "+e.Protocol, e.Counts)
	}
	row("background", r.Background)
	for _, s := range r.Scenarios {
		row(s.Name, s.Counts)
	}
	row("total", r.Total)
	if r.Unsent.Datagrams > 0 {
		row("unsent", r.Unsent)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.SendError != "" {
		_, err := fmt.Fprintf(w, "last send error: %s\n", r.SendError)
		return err
	}
	return nil
}
