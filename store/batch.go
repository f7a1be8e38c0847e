package store

import (
	"github.com/flowhouse/flowhouse/flow"
)

// FlowBatch holds flows column by column, the shape the database wants
// them in. Appending copies the flows; Reset keeps the capacity, so a
// batch reused between flushes stops allocating once it has grown to its
// usual size.
type FlowBatch struct {
	n int

	timeReceivedMs []int64
	timeStartMs    []int64
	timeEndMs      []int64

	tenant            []string
	exporterAddress   [][16]byte
	exporterPort      []uint16
	exporterName      []string
	protocol          []int8
	observationDomain []uint32
	samplerID         []uint32
	samplingRate      []uint32
	direction         []int8

	inIfIndex        []uint32
	inIfName         []string
	inIfDescription  []string
	inIfSpeedMbps    []uint32
	inIfBoundary     []string
	outIfIndex       []uint32
	outIfName        []string
	outIfDescription []string
	outIfSpeedMbps   []uint32
	outIfBoundary    []string

	srcAddress [][16]byte
	dstAddress [][16]byte
	nextHop    [][16]byte
	srcPort    []uint16
	dstPort    []uint16
	ipProtocol []uint8
	ipVersion  []uint8
	tcpFlags   []uint8
	tos        []uint8
	icmpType   []uint8
	icmpCode   []uint8
	srcMask    []uint8
	dstMask    []uint8
	srcVLAN    []uint16
	dstVLAN    []uint16
	srcMAC     []uint64
	dstMAC     []uint64
	srcVendor  []string
	dstVendor  []string
	srcNetName []string
	srcNetRole []string
	srcNetSite []string
	dstNetName []string
	dstNetRole []string
	dstNetSite []string
	srcAS      []uint32
	dstAS      []uint32
	bytes      []uint64
	packets    []uint64
	flowLabel  []uint32
}

// NewFlowBatch makes a batch with room for capacity flows.
func NewFlowBatch(capacity int) *FlowBatch {
	b := &FlowBatch{}
	b.grow(capacity)
	return b
}

// Len is the number of flows in the batch.
func (b *FlowBatch) Len() int { return b.n }

// Reset empties the batch and keeps its memory.
func (b *FlowBatch) Reset() {
	b.n = 0
	b.timeReceivedMs = b.timeReceivedMs[:0]
	b.timeStartMs = b.timeStartMs[:0]
	b.timeEndMs = b.timeEndMs[:0]
	// Strings are cleared, not only truncated, so a long-lived batch does
	// not pin the names of flows written long ago.
	clear(b.tenant)
	b.tenant = b.tenant[:0]
	b.exporterAddress = b.exporterAddress[:0]
	b.exporterPort = b.exporterPort[:0]
	clear(b.exporterName)
	b.exporterName = b.exporterName[:0]
	b.protocol = b.protocol[:0]
	b.observationDomain = b.observationDomain[:0]
	b.samplerID = b.samplerID[:0]
	b.samplingRate = b.samplingRate[:0]
	b.direction = b.direction[:0]
	b.inIfIndex = b.inIfIndex[:0]
	clear(b.inIfName)
	b.inIfName = b.inIfName[:0]
	clear(b.inIfDescription)
	b.inIfDescription = b.inIfDescription[:0]
	b.inIfSpeedMbps = b.inIfSpeedMbps[:0]
	clear(b.inIfBoundary)
	b.inIfBoundary = b.inIfBoundary[:0]
	b.outIfIndex = b.outIfIndex[:0]
	clear(b.outIfName)
	b.outIfName = b.outIfName[:0]
	clear(b.outIfDescription)
	b.outIfDescription = b.outIfDescription[:0]
	b.outIfSpeedMbps = b.outIfSpeedMbps[:0]
	clear(b.outIfBoundary)
	b.outIfBoundary = b.outIfBoundary[:0]
	b.srcAddress = b.srcAddress[:0]
	b.dstAddress = b.dstAddress[:0]
	b.nextHop = b.nextHop[:0]
	b.srcPort = b.srcPort[:0]
	b.dstPort = b.dstPort[:0]
	b.ipProtocol = b.ipProtocol[:0]
	b.ipVersion = b.ipVersion[:0]
	b.tcpFlags = b.tcpFlags[:0]
	b.tos = b.tos[:0]
	b.icmpType = b.icmpType[:0]
	b.icmpCode = b.icmpCode[:0]
	b.srcMask = b.srcMask[:0]
	b.dstMask = b.dstMask[:0]
	b.srcVLAN = b.srcVLAN[:0]
	b.dstVLAN = b.dstVLAN[:0]
	b.srcMAC = b.srcMAC[:0]
	b.dstMAC = b.dstMAC[:0]
	clear(b.srcVendor)
	b.srcVendor = b.srcVendor[:0]
	clear(b.dstVendor)
	b.dstVendor = b.dstVendor[:0]
	clear(b.srcNetName)
	b.srcNetName = b.srcNetName[:0]
	clear(b.srcNetRole)
	b.srcNetRole = b.srcNetRole[:0]
	clear(b.srcNetSite)
	b.srcNetSite = b.srcNetSite[:0]
	clear(b.dstNetName)
	b.dstNetName = b.dstNetName[:0]
	clear(b.dstNetRole)
	b.dstNetRole = b.dstNetRole[:0]
	clear(b.dstNetSite)
	b.dstNetSite = b.dstNetSite[:0]
	b.srcAS = b.srcAS[:0]
	b.dstAS = b.dstAS[:0]
	b.bytes = b.bytes[:0]
	b.packets = b.packets[:0]
	b.flowLabel = b.flowLabel[:0]
}

// grow makes room for n more flows at once, so Append does not grow
// fifty slices one doubling at a time.
func (b *FlowBatch) grow(n int) {
	if cap(b.bytes)-b.n >= n {
		return
	}
	c := max(2*cap(b.bytes), b.n+n)
	b.timeReceivedMs = growTo(b.timeReceivedMs, c)
	b.timeStartMs = growTo(b.timeStartMs, c)
	b.timeEndMs = growTo(b.timeEndMs, c)
	b.tenant = growTo(b.tenant, c)
	b.exporterAddress = growTo(b.exporterAddress, c)
	b.exporterPort = growTo(b.exporterPort, c)
	b.exporterName = growTo(b.exporterName, c)
	b.protocol = growTo(b.protocol, c)
	b.observationDomain = growTo(b.observationDomain, c)
	b.samplerID = growTo(b.samplerID, c)
	b.samplingRate = growTo(b.samplingRate, c)
	b.direction = growTo(b.direction, c)
	b.inIfIndex = growTo(b.inIfIndex, c)
	b.inIfName = growTo(b.inIfName, c)
	b.inIfDescription = growTo(b.inIfDescription, c)
	b.inIfSpeedMbps = growTo(b.inIfSpeedMbps, c)
	b.inIfBoundary = growTo(b.inIfBoundary, c)
	b.outIfIndex = growTo(b.outIfIndex, c)
	b.outIfName = growTo(b.outIfName, c)
	b.outIfDescription = growTo(b.outIfDescription, c)
	b.outIfSpeedMbps = growTo(b.outIfSpeedMbps, c)
	b.outIfBoundary = growTo(b.outIfBoundary, c)
	b.srcAddress = growTo(b.srcAddress, c)
	b.dstAddress = growTo(b.dstAddress, c)
	b.nextHop = growTo(b.nextHop, c)
	b.srcPort = growTo(b.srcPort, c)
	b.dstPort = growTo(b.dstPort, c)
	b.ipProtocol = growTo(b.ipProtocol, c)
	b.ipVersion = growTo(b.ipVersion, c)
	b.tcpFlags = growTo(b.tcpFlags, c)
	b.tos = growTo(b.tos, c)
	b.icmpType = growTo(b.icmpType, c)
	b.icmpCode = growTo(b.icmpCode, c)
	b.srcMask = growTo(b.srcMask, c)
	b.dstMask = growTo(b.dstMask, c)
	b.srcVLAN = growTo(b.srcVLAN, c)
	b.dstVLAN = growTo(b.dstVLAN, c)
	b.srcMAC = growTo(b.srcMAC, c)
	b.dstMAC = growTo(b.dstMAC, c)
	b.srcVendor = growTo(b.srcVendor, c)
	b.dstVendor = growTo(b.dstVendor, c)
	b.srcNetName = growTo(b.srcNetName, c)
	b.srcNetRole = growTo(b.srcNetRole, c)
	b.srcNetSite = growTo(b.srcNetSite, c)
	b.dstNetName = growTo(b.dstNetName, c)
	b.dstNetRole = growTo(b.dstNetRole, c)
	b.dstNetSite = growTo(b.dstNetSite, c)
	b.srcAS = growTo(b.srcAS, c)
	b.dstAS = growTo(b.dstAS, c)
	b.bytes = growTo(b.bytes, c)
	b.packets = growTo(b.packets, c)
	b.flowLabel = growTo(b.flowLabel, c)
}

func growTo[T any](s []T, c int) []T {
	if cap(s) >= c {
		return s
	}
	n := make([]T, len(s), c)
	copy(n, s)
	return n
}

// Append copies flows into the batch.
func (b *FlowBatch) Append(flows []flow.Flow) {
	b.grow(len(flows))
	for i := range flows {
		f := &flows[i]
		b.timeReceivedMs = append(b.timeReceivedMs, f.TimeReceivedMs)
		b.timeStartMs = append(b.timeStartMs, f.TimeStartMs)
		b.timeEndMs = append(b.timeEndMs, f.TimeEndMs)
		b.tenant = append(b.tenant, f.Tenant)
		b.exporterAddress = append(b.exporterAddress, f.ExporterAddr)
		b.exporterPort = append(b.exporterPort, f.ExporterPort)
		b.exporterName = append(b.exporterName, f.ExporterName)
		b.protocol = append(b.protocol, int8(f.Protocol))
		b.observationDomain = append(b.observationDomain, f.ObservationDomain)
		b.samplerID = append(b.samplerID, f.SamplerID)
		b.samplingRate = append(b.samplingRate, f.SamplingRate)
		b.direction = append(b.direction, int8(f.Direction))
		b.inIfIndex = append(b.inIfIndex, f.InIf)
		b.inIfName = append(b.inIfName, f.InIfName)
		b.inIfDescription = append(b.inIfDescription, f.InIfDescription)
		b.inIfSpeedMbps = append(b.inIfSpeedMbps, clampUint32(f.InIfSpeedMbps))
		b.inIfBoundary = append(b.inIfBoundary, f.InIfBoundary)
		b.outIfIndex = append(b.outIfIndex, f.OutIf)
		b.outIfName = append(b.outIfName, f.OutIfName)
		b.outIfDescription = append(b.outIfDescription, f.OutIfDescription)
		b.outIfSpeedMbps = append(b.outIfSpeedMbps, clampUint32(f.OutIfSpeedMbps))
		b.outIfBoundary = append(b.outIfBoundary, f.OutIfBoundary)
		b.srcAddress = append(b.srcAddress, f.SrcAddr)
		b.dstAddress = append(b.dstAddress, f.DstAddr)
		b.nextHop = append(b.nextHop, f.NextHop)
		b.srcPort = append(b.srcPort, f.SrcPort)
		b.dstPort = append(b.dstPort, f.DstPort)
		b.ipProtocol = append(b.ipProtocol, f.IPProto)
		b.ipVersion = append(b.ipVersion, f.IPVersion)
		b.tcpFlags = append(b.tcpFlags, f.TCPFlags)
		b.tos = append(b.tos, f.ToS)
		b.icmpType = append(b.icmpType, f.ICMPType)
		b.icmpCode = append(b.icmpCode, f.ICMPCode)
		b.srcMask = append(b.srcMask, f.SrcMask)
		b.dstMask = append(b.dstMask, f.DstMask)
		b.srcVLAN = append(b.srcVLAN, f.SrcVLAN)
		b.dstVLAN = append(b.dstVLAN, f.DstVLAN)
		b.srcMAC = append(b.srcMAC, uint64(f.SrcMAC))
		b.dstMAC = append(b.dstMAC, uint64(f.DstMAC))
		b.srcVendor = append(b.srcVendor, f.SrcVendor)
		b.dstVendor = append(b.dstVendor, f.DstVendor)
		b.srcNetName = append(b.srcNetName, f.SrcNetName)
		b.srcNetRole = append(b.srcNetRole, f.SrcNetRole)
		b.srcNetSite = append(b.srcNetSite, f.SrcNetSite)
		b.dstNetName = append(b.dstNetName, f.DstNetName)
		b.dstNetRole = append(b.dstNetRole, f.DstNetRole)
		b.dstNetSite = append(b.dstNetSite, f.DstNetSite)
		b.srcAS = append(b.srcAS, f.SrcAS)
		b.dstAS = append(b.dstAS, f.DstAS)
		b.bytes = append(b.bytes, f.Bytes)
		b.packets = append(b.packets, f.Packets)
		b.flowLabel = append(b.flowLabel, f.FlowLabel)
	}
	b.n += len(flows)
}

// Flow returns row i as a flow.Flow, for writers that store batches
// another way (a spool). Interface speeds above 4294967295 Mbit/s were
// clamped by Append.
func (b *FlowBatch) Flow(i int) flow.Flow {
	return flow.Flow{
		TimeReceivedMs:    b.timeReceivedMs[i],
		TimeStartMs:       b.timeStartMs[i],
		TimeEndMs:         b.timeEndMs[i],
		Protocol:          flow.Protocol(b.protocol[i]),
		ExporterAddr:      b.exporterAddress[i],
		ExporterPort:      b.exporterPort[i],
		ObservationDomain: b.observationDomain[i],
		SamplerID:         b.samplerID[i],
		SamplingRate:      b.samplingRate[i],
		Direction:         flow.Direction(b.direction[i]),
		InIf:              b.inIfIndex[i],
		OutIf:             b.outIfIndex[i],
		SrcAddr:           b.srcAddress[i],
		DstAddr:           b.dstAddress[i],
		NextHop:           b.nextHop[i],
		SrcPort:           b.srcPort[i],
		DstPort:           b.dstPort[i],
		IPProto:           b.ipProtocol[i],
		TCPFlags:          b.tcpFlags[i],
		ToS:               b.tos[i],
		IPVersion:         b.ipVersion[i],
		ICMPType:          b.icmpType[i],
		ICMPCode:          b.icmpCode[i],
		SrcMask:           b.srcMask[i],
		DstMask:           b.dstMask[i],
		SrcVLAN:           b.srcVLAN[i],
		DstVLAN:           b.dstVLAN[i],
		SrcMAC:            flow.MAC(b.srcMAC[i]),
		DstMAC:            flow.MAC(b.dstMAC[i]),
		SrcAS:             b.srcAS[i],
		DstAS:             b.dstAS[i],
		Bytes:             b.bytes[i],
		Packets:           b.packets[i],
		FlowLabel:         b.flowLabel[i],
		Tenant:            b.tenant[i],
		ExporterName:      b.exporterName[i],
		InIfName:          b.inIfName[i],
		InIfDescription:   b.inIfDescription[i],
		InIfSpeedMbps:     uint64(b.inIfSpeedMbps[i]),
		InIfBoundary:      b.inIfBoundary[i],
		OutIfName:         b.outIfName[i],
		OutIfDescription:  b.outIfDescription[i],
		OutIfSpeedMbps:    uint64(b.outIfSpeedMbps[i]),
		OutIfBoundary:     b.outIfBoundary[i],
		SrcVendor:         b.srcVendor[i],
		DstVendor:         b.dstVendor[i],
		SrcNetName:        b.srcNetName[i],
		SrcNetRole:        b.srcNetRole[i],
		SrcNetSite:        b.srcNetSite[i],
		DstNetName:        b.dstNetName[i],
		DstNetRole:        b.dstNetRole[i],
		DstNetSite:        b.dstNetSite[i],
	}
}

// ifHighSpeed is a 32-bit gauge in Mbit/s, so the column is 32 bits.
func clampUint32(v uint64) uint32 {
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(v)
}
