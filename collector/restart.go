package collector

// Exporters restart: a reload, a crash, a reboot. A new run numbers its
// messages from the start again, so its first message looks like a jump
// back (or, after a long outage, forward). The strong signs are the
// exporter's clock: the boot time that NetFlow v5 and v9 headers give
// (export time less sysUptime), the systemInitTimeMilliseconds (IE 160)
// of IPFIX options records, the sFlow agent's uptime going back. A jump
// back beyond any plausible reordering is one too. A template redefined
// in the same message is only a hint (exporters redefine templates when
// reconfigured, and re-send them unchanged every few seconds when not).

// restartReason says what showed a restart; it is the reason label of
// flowhouse_collector_exporter_restarts_total.
type restartReason uint8

const (
	restartBootTime   restartReason = iota // NetFlow v5/v9: export time less sysUptime moved later
	restartSystemInit                      // IPFIX: systemInitTimeMilliseconds moved later
	restartUptime                          // sFlow: the agent's uptime went back
	restartTemplate                        // back to a run's start with a redefined template
	restartSequence                        // a jump back beyond reordering
	nRestartReasons
)

var restartReasonNames = [nRestartReasons]string{"boot_time", "system_init", "uptime", "template", "sequence"}

func (r restartReason) String() string { return restartReasonNames[r] }

// clockKind is what a message says of its exporter's clock.
type clockKind uint8

const (
	clockNone       clockKind = iota
	clockBoot                 // ms: export time less sysUptime (NetFlow v5, v9)
	clockSystemInit           // ms: IPFIX IE 160, sent now and then in options records
	clockUptime               // ms: sFlow agent uptime
)

func restartReasonOf(k clockKind) restartReason {
	switch k {
	case clockBoot:
		return restartBootTime
	case clockSystemInit:
		return restartSystemInit
	}
	return restartUptime
}

type clockReading struct {
	kind clockKind
	ms   int64
}

func bootReading(exportMs int64, sysUptime uint32) clockReading {
	if exportMs == 0 || sysUptime == 0 {
		// An exporter that fills either with zero has no usable clock.
		return clockReading{}
	}
	return clockReading{kind: clockBoot, ms: exportMs - int64(sysUptime)}
}

func systemInitReading(ms int64) clockReading {
	if ms == 0 {
		return clockReading{}
	}
	return clockReading{kind: clockSystemInit, ms: ms}
}

func uptimeReading(uptime uint32) clockReading {
	return clockReading{kind: clockUptime, ms: int64(uptime)}
}

const (
	// clockToleranceMs is how far a boot time may wander between two
	// messages of one run. v9 and IPFIX export times are whole seconds, so
	// rounding alone moves a v9 boot time by up to 1 s; the exporter reads
	// its two clocks at slightly different moments (ms); an NTP-slewed
	// wall clock drifts from the uptime by at most 0.5 ms/s. 2 s is twice
	// the rounding. A restart moves it by the restart's duration plus the
	// run's uptime, which for anything that restarts is seconds or more;
	// faster ones are left to the sequence numbers.
	clockToleranceMs = 2000
	// uptimeWrapMs is the 32-bit ms sysUptime wrapping (49.7 days), which
	// moves a boot time by exactly that.
	uptimeWrapMs = 1 << 32
	// maxClockStrikes: a clock that moved this often while the sequence
	// went on is not telling restarts, and is no longer listened to.
	maxClockStrikes = 3
)

// clockState follows one stream's exporter clock.
type clockState struct {
	kind    clockKind
	last    int64
	have    bool
	strikes uint8
	// stale: a restart was seen in the numbers that the clock has not
	// shown yet (IPFIX sends IE 160 only now and then); its next move is
	// explained.
	stale bool
	moved bool // at the last observation
}

// observe takes a message's clock reading. moved says it differs from the
// last beyond tolerance (a move a restart already explains is not one);
// says that it moved the way a restart moves it.
func (c *clockState) observe(r clockReading) (moved, says bool) {
	c.moved = false
	if r.kind == clockNone {
		return false, false
	}
	if !c.have || c.kind != r.kind {
		c.kind, c.last, c.have = r.kind, r.ms, true
		return false, false
	}
	later := c.later(r.ms)
	c.last = r.ms
	if later <= clockToleranceMs && later >= -clockToleranceMs {
		return false, false
	}
	if c.stale {
		c.stale = false
		return false, false
	}
	c.moved = true
	return true, later > 0 && c.strikes < maxClockStrikes
}

// later is how much later than the last reading the exporter says it
// booted, in ms.
func (c *clockState) later(ms int64) int64 {
	switch c.kind {
	case clockUptime:
		back := -int64(int32(uint32(ms) - uint32(c.last)))
		return max(back, 0) // uptime going on is what it does between datagrams
	case clockBoot:
		d := ms - c.last
		if w := d - uptimeWrapMs; w <= clockToleranceMs && w >= -clockToleranceMs {
			return 0
		}
		return d
	}
	return ms - c.last
}

func (c *clockState) strike() {
	if c.strikes < maxClockStrikes {
		c.strikes++
	}
}

// restarted tells the clock a run began at a message with reading r. A
// clock read on every message has shown it (or cannot); one read now and
// then may show it later.
func (c *clockState) restarted(r clockReading) {
	c.stale = r.kind == clockSystemInit && !c.moved
}
