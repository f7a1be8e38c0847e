package store

import (
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/flow"
)

// exporterValues are the exporters table's columns, in exporterColumns
// order, for stats snapshotted at at: drops become two parallel arrays
// sorted by reason, streams a Nested column. Both engines insert these.
func exporterValues(at time.Time, stats []flow.ExporterStats) []any {
	n := len(stats)
	var (
		addrs      = make([]proto.IPv6, n)
		collectors = make([]string, n)
		protocols  = make([][]string, n)
		firstSeen  = make([]int64, n)
		lastSeen   = make([]int64, n)
		datagrams  = make([]uint64, n)
		flows      = make([]uint64, n)
		bytes      = make([]uint64, n)
		reasons    = make([][]string, n)
		counts     = make([][]uint64, n)
		templates  = make([]uint32, n)
		seqExp     = make([]uint64, n)
		seqLost    = make([]uint64, n)
		stProto    = make([][]string, n)
		stDomain   = make([][]uint32, n)
		stLastSeq  = make([][]uint32, n)
		stExpected = make([][]uint64, n)
		stLost     = make([][]uint64, n)
		stResets   = make([][]uint64, n)
		stRestarts = make([][]uint64, n)
		stPort     = make([][]uint16, n)
		updated    = make([]int64, n)
	)
	for i, e := range stats {
		addrs[i] = proto.IPv6(e.Addr)
		collectors[i] = e.Collector
		protocols[i] = nonNil(e.Protocols)
		firstSeen[i] = max(e.FirstSeenMs, 0) / 1000
		lastSeen[i] = max(e.LastSeenMs, 0) / 1000
		datagrams[i], flows[i], bytes[i] = e.Datagrams, e.Flows, e.Bytes
		reasons[i] = make([]string, 0, len(e.Drops))
		for r := range e.Drops {
			reasons[i] = append(reasons[i], r)
		}
		slices.Sort(reasons[i])
		counts[i] = make([]uint64, len(reasons[i]))
		for j, r := range reasons[i] {
			counts[i][j] = e.Drops[r]
		}
		templates[i] = uint32(max(e.Templates, 0))
		seqExp[i], seqLost[i] = e.SequenceExpected, e.SequenceLost
		m := len(e.Streams)
		stProto[i], stDomain[i], stLastSeq[i] = make([]string, m), make([]uint32, m), make([]uint32, m)
		stExpected[i], stLost[i], stResets[i], stRestarts[i] = make([]uint64, m), make([]uint64, m), make([]uint64, m), make([]uint64, m)
		stPort[i] = make([]uint16, m)
		for j, st := range e.Streams {
			stProto[i][j], stDomain[i][j], stLastSeq[i][j] = st.Protocol, st.ObservationDomain, st.LastSequence
			stExpected[i][j], stLost[i][j], stResets[i][j], stRestarts[i][j] = st.Expected, st.Lost, st.Resets, st.Restarts
			stPort[i][j] = st.SourcePort
		}
		updated[i] = at.Unix()
	}
	return []any{addrs, collectors, protocols, firstSeen, lastSeen, datagrams, flows, bytes, reasons, counts, templates,
		seqExp, seqLost, stProto, stDomain, stLastSeq, stExpected, stLost, stResets, stRestarts, stPort, updated}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// exporterInput is exporterValues as ch-go columns, for a Native block:
// the Go slices clickhouse-go appends on the server, here each in the
// ch-go column of the exporters table's type ([]int64 are DateTime).
func exporterInput(values []any) proto.Input {
	in := make(proto.Input, len(values))
	for i, v := range values {
		var col proto.ColInput
		switch v := v.(type) {
		case []proto.IPv6:
			col = proto.ColIPv6(v)
		case []string:
			col = colStr(v)
		case []uint32:
			col = proto.ColUInt32(v)
		case []uint64:
			col = proto.ColUInt64(v)
		case []int64:
			d := &proto.ColDateTime{Location: time.UTC}
			for _, s := range v {
				d.AppendRaw(proto.DateTime(min(max(s, 0), 1<<32-1)))
			}
			col = d
		case [][]string:
			col = arrayOf(new(proto.ColStr), v)
		case [][]uint32:
			col = arrayOf(new(proto.ColUInt32), v)
		case [][]uint64:
			col = arrayOf(new(proto.ColUInt64), v)
		case [][]uint16:
			col = arrayOf(new(proto.ColUInt16), v)
		default:
			panic(fmt.Sprintf("exporterInput: column %s: no ch-go column for %T", exporterColumns[i], v))
		}
		in[i] = proto.InputColumn{Name: exporterColumns[i], Data: col}
	}
	return in
}

func colStr(v []string) *proto.ColStr {
	c := new(proto.ColStr)
	for _, s := range v {
		c.Append(s)
	}
	return c
}

func arrayOf[T any](elem proto.ColumnOf[T], rows [][]T) *proto.ColArr[T] {
	a := proto.NewArray(elem)
	for _, r := range rows {
		a.Append(r)
	}
	return a
}
