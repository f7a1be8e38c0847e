package queryapi

import (
	"compress/gzip"
	"compress/zlib"
	"io"
	"strconv"
	"strings"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// This file holds the encodings of the HTTP interface: HTTP compression
// of responses (enable_http_compression=1 with Accept-Encoding) and of
// request bodies (Content-Encoding), and ClickHouse's own compressed
// blocks (compress=1 for responses, decompress=1 for bodies), which
// clickhouse-go uses for LZ4 and ZSTD over HTTP.

// httpEncodings are the response encodings, by preference on a tie.
var httpEncodings = []string{"zstd", "br", "gzip", "deflate"}

// chooseEncoding is the encoding of Accept-Encoding with the highest
// q-value that we have (ties: the client's order), or "".
func chooseEncoding(accept string) string {
	best, bestQ := "", 0.0
	for _, part := range strings.Split(accept, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		known := false
		for _, e := range httpEncodings {
			known = known || e == name
		}
		if known && q > bestQ {
			best, bestQ = name, q
		}
	}
	return best
}

// newEncoder writes w in encoding; level is http_zlib_compression_level
// for gzip and deflate (0: ClickHouse's default, 3).
func newEncoder(encoding string, w io.Writer, level int) io.WriteCloser {
	if level <= 0 {
		level = 3
	}
	switch encoding {
	case "gzip":
		z, _ := gzip.NewWriterLevel(w, level)
		return z
	case "deflate":
		z, _ := zlib.NewWriterLevel(w, level)
		return z
	case "br":
		return brotli.NewWriterLevel(w, 4)
	case "zstd":
		// SpeedFastest leaves text like a column of numbers uncompressed
		// (measured); the default level compresses it 12 times.
		z, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		return z
	}
	return nopCloser{w}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// decodeBody reads a request body in its Content-Encoding.
func decodeBody(encoding string, r io.Reader) (io.Reader, func(), error) {
	switch encoding {
	case "", "identity":
		return r, func() {}, nil
	case "gzip":
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { z.Close() }, nil
	case "deflate":
		z, err := zlib.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { z.Close() }, nil
	case "br":
		return brotli.NewReader(r), func() {}, nil
	case "zstd":
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, z.Close, nil
	}
	return nil, nil, errUnsupportedEncoding
}

type encodingError string

func (e encodingError) Error() string { return string(e) }

const errUnsupportedEncoding = encodingError("unsupported")

// blockWriter writes ClickHouse's compressed blocks (compress=1): the
// output is cut in blocks of up to 1 MiB, as the server does, each
// compressed with its checksum.
type blockWriter struct {
	w   io.Writer
	c   *compress.Writer
	buf []byte
}

const compressedBlockSize = 1 << 20

func newBlockWriter(w io.Writer, m compress.Method, level int) *blockWriter {
	return &blockWriter{w: w, c: compress.NewWriter(compress.Level(level), m)}
}

func (b *blockWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		take := min(len(p), compressedBlockSize-len(b.buf))
		b.buf = append(b.buf, p[:take]...)
		p = p[take:]
		if len(b.buf) == compressedBlockSize {
			if err := b.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (b *blockWriter) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	if err := b.c.Compress(b.buf); err != nil {
		return err
	}
	b.buf = b.buf[:0]
	_, err := b.w.Write(b.c.Data)
	return err
}

func (b *blockWriter) Close() error { return b.flush() }
