package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/store"
)

// A segment is one batch on disk:
//
//	header (64 bytes, little endian)
//	  0  magic "FHSPOOL1"
//	  8  format version (uint16): 3 (1 and 2 are still read)
//	 10  columns (uint16), a sanity check of the layout
//	 12  rows (uint32)
//	 16  batch id (16 bytes): the insert_deduplication_token of every attempt
//	 32  created, Unix nanoseconds (int64)
//	 40  payload length (uint64)
//	 48  CRC-32C of the payload (uint32)
//	 52  reserved (0)
//	 56  reserved (0)
//	 60  CRC-32C of bytes 0..59 (uint32)
//	payload
//	  format 3: format 2's Native block, compressed as ClickHouse
//	  compresses what it sends and stores: LZ4 blocks of at most 1 MiB of
//	  the block each, every one with its CityHash128 and sizes (ch-go's
//	  compress). Segments of real flows are about a quarter of their
//	  uncompressed size, so spool.max_bytes holds a burst four times as
//	  long.
//	  format 2: one block of ClickHouse's Native format holding the
//	  batch's own columns (store.FlowBatch.Input: schema.Flows' columns as
//	  the batch keeps them, times in milliseconds, strings as
//	  LowCardinality dictionaries), written and read by ch-go. Columns are
//	  found by name, so a column added to the table later reads as zero
//	  from an older segment, and adding one needs no new format.
//	  format 1: see segment_v1.go.
const (
	headerSize    = 64
	formatVersion = 3
	// formatRaw is format 2: the same block, not compressed.
	formatRaw = 2
	// compressChunk is the most of the block one compressed block holds:
	// ClickHouse's own max_compress_block_size, and well under the
	// 128 MiB ch-go's reader accepts.
	compressChunk = 1 << 20
	magic         = "FHSPOOL1"
	// maxSegmentRows bounds what a corrupted header can make the decoder
	// allocate; the batcher's batch_rows is at most 10 million.
	maxSegmentRows = 10_000_000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var le = binary.LittleEndian

// errCorrupt marks a segment that cannot be trusted: bad magic, version,
// checksum or layout.
var errCorrupt = errors.New("corrupt segment")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
}

// header is a segment's decoded header.
type header struct {
	version   int
	columns   int
	rows      int
	id        [16]byte
	createdNs int64
	payload   uint64
	crc       uint32
}

// encoder turns batches into segments. It keeps its buffer between
// batches; one encoder serves one goroutine at a time.
type encoder struct {
	buf proto.Buffer
	lz4 *compress.Writer
	out []byte
}

var encoders = sync.Pool{New: func() any { return newEncoder() }}

func newEncoder() *encoder {
	return &encoder{lz4: compress.NewWriter(compress.LevelZero, compress.LZ4)}
}

// release is here for symmetry with the pool's users: the buffer holds
// bytes only, no reference to a batch.
func (e *encoder) release() {}

// encode returns the whole segment (header and payload) in the encoder's
// buffer, valid until the next encode.
func (e *encoder) encode(b *store.FlowBatch, id [16]byte, createdNs int64) []byte {
	return e.encodeInput(b.Input(), b.Len(), id, createdNs, formatVersion)
}

// encodeInput writes format 3, or format 2 (tests: segments an older
// flowhouse left).
func (e *encoder) encodeInput(input proto.Input, rows int, id [16]byte, createdNs int64, format uint16) []byte {
	e.buf.Buf = append(e.buf.Buf[:0], make([]byte, headerSize)...)
	if err := (proto.Block{Columns: len(input), Rows: rows}).EncodeRawBlock(&e.buf, 0, input); err != nil {
		// Only a column of the wrong length fails, which Append rules out.
		panic(fmt.Sprintf("spool: encode a batch: %v", err))
	}
	p := e.buf.Buf
	if format != formatRaw {
		p = e.compress(p)
	}
	payload := p[headerSize:]
	h := p[:headerSize]
	copy(h[0:8], magic)
	le.PutUint16(h[8:], format)
	le.PutUint16(h[10:], uint16(len(input)))
	le.PutUint32(h[12:], uint32(rows))
	copy(h[16:32], id[:])
	le.PutUint64(h[32:], uint64(createdNs))
	le.PutUint64(h[40:], uint64(len(payload)))
	le.PutUint32(h[48:], crc32.Checksum(payload, castagnoli))
	le.PutUint32(h[52:], 0)
	le.PutUint32(h[56:], 0)
	le.PutUint32(h[60:], crc32.Checksum(h[:60], castagnoli))
	return p
}

// compress returns the segment p (header and raw block) with its block
// compressed, in e.out.
func (e *encoder) compress(p []byte) []byte {
	e.out = append(e.out[:0], p[:headerSize]...)
	for raw := p[headerSize:]; len(raw) > 0; {
		n := min(len(raw), compressChunk)
		if err := e.lz4.Compress(raw[:n]); err != nil {
			// Only a chunk over 4 GiB fails; chunks are 1 MiB.
			panic(fmt.Sprintf("spool: compress a batch: %v", err))
		}
		e.out = append(e.out, e.lz4.Data...)
		raw = raw[n:]
	}
	return e.out
}

// readHeader checks the header's magic, version, layout and checksum.
func readHeader(data []byte) (header, error) {
	var h header
	if len(data) < headerSize {
		return h, corruptf("%d bytes, shorter than a header", len(data))
	}
	if string(data[0:8]) != magic {
		return h, corruptf("bad magic %q", data[0:8])
	}
	if got, want := crc32.Checksum(data[:60], castagnoli), le.Uint32(data[60:]); got != want {
		return h, corruptf("header checksum %08x, want %08x", got, want)
	}
	h.version = int(le.Uint16(data[8:]))
	h.columns = int(le.Uint16(data[10:]))
	switch {
	case h.version == 1 && h.columns != v1FieldsPerRow:
		return h, corruptf("format 1 with %d fields per row, want %d", h.columns, v1FieldsPerRow)
	case h.version < 1 || h.version > formatVersion:
		return h, corruptf("format version %d, this flowhouse reads 1 to %d", h.version, formatVersion)
	}
	h.rows = int(le.Uint32(data[12:]))
	copy(h.id[:], data[16:32])
	h.createdNs = int64(le.Uint64(data[32:]))
	h.payload = le.Uint64(data[40:])
	h.crc = le.Uint32(data[48:])
	if h.rows > maxSegmentRows {
		return h, corruptf("%d rows, more than %d", h.rows, maxSegmentRows)
	}
	return h, nil
}

// decoder reads segments back into batches.
type decoder struct {
	v1 v1Decoder
}

// decode verifies the segment and puts its rows in dst, replacing what
// dst held. On error dst may hold part of the rows.
func (d *decoder) decode(data []byte, dst *store.FlowBatch) (header, error) {
	h, err := readHeader(data)
	if err != nil {
		return h, err
	}
	payload := data[headerSize:]
	if uint64(len(payload)) != h.payload {
		return h, corruptf("payload of %d bytes, header says %d", len(payload), h.payload)
	}
	if got := crc32.Checksum(payload, castagnoli); got != h.crc {
		return h, corruptf("payload checksum %08x, want %08x", got, h.crc)
	}
	if h.version == 1 {
		dst.Reset()
		return h, d.v1.decode(payload, h.rows, dst)
	}
	var block io.Reader = bytes.NewReader(payload)
	if h.version != formatRaw {
		block = compress.NewReader(block)
	}
	r := proto.NewReader(block)
	var blk proto.Block
	if err := blk.DecodeRawBlock(r, 0, dst); err != nil {
		return h, corruptf("native block: %v", err)
	}
	if blk.Rows != h.rows || blk.Columns != h.columns {
		return h, corruptf("block of %d rows and %d columns, header says %d and %d", blk.Rows, blk.Columns, h.rows, h.columns)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		return h, corruptf("bytes after the block")
	}
	return h, nil
}
