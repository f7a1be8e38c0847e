package collector

import (
	"net/netip"
)

type samplingRule struct {
	prefix   netip.Prefix
	rate     uint32
	override bool
}

func compileSamplingRules(rules []SamplingRule) []samplingRule {
	out := make([]samplingRule, 0, len(rules))
	for _, r := range rules {
		p, err := netip.ParsePrefix(r.Prefix)
		if err != nil {
			continue // Config.Validate rejects these before we get here
		}
		out = append(out, samplingRule{prefix: p.Masked(), rate: r.Rate, override: r.Override})
	}
	return out
}

type samplerKey struct {
	domain  uint32
	sampler uint32
}

// samplingTable holds one exporter's sampling rates, keyed by observation
// domain and sampler ID: a device with several samplers (one per
// interface, say) has several rates, and goflow2's one-rate-per-domain
// model would scale flows by the wrong one.
type samplingTable struct {
	override uint32 // from configuration: replaces whatever the exporter says
	fallback uint32 // from configuration: used when the exporter never says
	rates    map[samplerKey]uint32
	// perDomain counts samplers learned per domain, so a record without a
	// sampler ID can use its domain's rate when there is only one.
	perDomain map[uint32]samplerKey
	ambiguous map[uint32]bool
	// changes counts rates learned or changed (see stateMarks).
	changes uint64
}

const maxSamplers = 4096

func newSamplingTable(rules []samplingRule, addr netip.Addr) *samplingTable {
	t := &samplingTable{
		rates:     make(map[samplerKey]uint32),
		perDomain: make(map[uint32]samplerKey),
		ambiguous: make(map[uint32]bool),
	}
	addr = addr.Unmap()
	best := -1
	// The most specific matching prefix wins.
	for _, r := range rules {
		if r.prefix.Contains(addr) && r.prefix.Bits() > best {
			best = r.prefix.Bits()
			t.override, t.fallback = 0, 0
			if r.override {
				t.override = r.rate
			} else {
				t.fallback = r.rate
			}
		}
	}
	return t
}

// learn records a rate announced in an options record.
func (t *samplingTable) learn(domain, sampler, rate uint32) {
	k := samplerKey{domain, sampler}
	if _, ok := t.rates[k]; !ok {
		if len(t.rates) >= maxSamplers {
			return
		}
		if prev, seen := t.perDomain[domain]; seen && prev != k {
			t.ambiguous[domain] = true
		}
		t.perDomain[domain] = k
	} else if t.rates[k] == rate {
		return // the same rate again, as exporters repeat it
	}
	t.rates[k] = rate
	t.changes++
}

// rate resolves the sampling rate of one flow: configuration override,
// then a rate carried in the record itself, then the rate of the record's
// sampler, then the domain's only sampler, then the configured fallback.
func (t *samplingTable) rate(domain, sampler, inRecord uint32) uint32 {
	if t.override > 0 {
		return t.override
	}
	if inRecord > 0 {
		return inRecord
	}
	if r, ok := t.rates[samplerKey{domain, sampler}]; ok && r > 0 {
		return r
	}
	if sampler == 0 && !t.ambiguous[domain] {
		if k, ok := t.perDomain[domain]; ok {
			return t.rates[k]
		}
	}
	if t.fallback > 0 {
		return t.fallback
	}
	return 1
}
