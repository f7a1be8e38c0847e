package queryapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// nativeRevision is the Native output for a client that sent
// client_protocol_version (clickhouse-go's HTTP protocol, so Grafana's
// plugin): a ClickHouse server writes Native blocks for that revision,
// with block info and a serialization flag per column, while the engine
// writes them for revision 0, the only one it knows. Each block is read
// with clickhouse-go's own column types and written again for the
// client's revision, so the client reads what it wrote.
type nativeRevision struct {
	w   io.Writer
	rev uint64
	sc  *column.ServerContext
	buf chproto.Buffer
}

func newNativeRevision(w io.Writer, rev uint64, tz string) *nativeRevision {
	loc, err := time.LoadLocation(tz)
	if err != nil {
		loc = time.UTC
	}
	return &nativeRevision{w: w, rev: rev, sc: &column.ServerContext{Timezone: loc}}
}

// Write takes whole blocks: the engine writes each chunk of a streamed
// Native result as blocks of its own.
func (n *nativeRevision) Write(chunk []byte) (int, error) {
	in := bufio.NewReaderSize(bytes.NewReader(chunk), 128<<10)
	r := chproto.NewReader(in)
	n.buf.Reset()
	for {
		if _, err := in.Peek(1); errors.Is(err, io.EOF) {
			break
		}
		b := proto.Block{ServerContext: n.sc}
		if err := b.Decode(r, 0); err != nil {
			return 0, fmt.Errorf("native result: %w", err)
		}
		n.encode(&b)
	}
	if _, err := n.w.Write(n.buf.Buf); err != nil {
		return 0, err
	}
	return len(chunk), nil
}

// encode is proto.Block.Encode, except that a block without rows has no
// column data (a LowCardinality column's state prefix included), as the
// client's decoder expects.
func (n *nativeRevision) encode(b *proto.Block) {
	rows := 0
	if len(b.Columns) > 0 {
		rows = b.Columns[0].Rows()
	}
	if n.rev > 0 {
		n.buf.PutUVarInt(1) // block info: is_overflows
		n.buf.PutBool(false)
		n.buf.PutUVarInt(2) // bucket_num
		n.buf.PutInt32(-1)
		n.buf.PutUVarInt(0)
	}
	n.buf.PutUVarInt(uint64(len(b.Columns)))
	n.buf.PutUVarInt(uint64(rows))
	for _, c := range b.Columns {
		n.buf.PutString(c.Name())
		n.buf.PutString(string(c.Type()))
		if n.rev >= proto.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION {
			n.buf.PutBool(false)
		}
		if rows == 0 {
			continue
		}
		if s, ok := c.(column.CustomSerialization); ok {
			_ = s.WriteStatePrefix(&n.buf)
		}
		c.Encode(&n.buf)
	}
}
