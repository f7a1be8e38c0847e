package queryapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/flowhouse/flowhouse/store"
)

// resultWriter sends a result's headers once it knows enough: with the
// second chunk of output, or at its end when it had one chunk (most
// dashboard queries), or at its end in any case with wait_end_of_query=1.
// So an error before then gets its own status and exception, and the
// summary header holds the statistics of the whole query when the result
// came whole (otherwise those of the chunks made so far, as a ClickHouse
// server sends its summary when the headers go).
type resultWriter struct {
	w      http.ResponseWriter
	head   bool
	req    *request
	tz     string
	format string
	start  time.Time

	held    bytes.Buffer // output not yet sent: the first chunk, or all with wait
	chunks  int
	stats   store.QueryStats
	started bool // the headers are sent

	body  io.Writer      // the output's way to the client, once started
	text  io.Writer      // the same below the Native rewriting, for an exception
	close []func() error // encoders to close at the end, innermost first
}

func (o *resultWriter) open(st store.Statement) io.Writer {
	if st.Format != "" {
		o.format = st.Format
	}
	return o
}

// progress is given the engine's statistics before each chunk.
func (o *resultWriter) progress(s store.QueryStats) { o.stats = s }

func (o *resultWriter) Write(chunk []byte) (int, error) {
	o.chunks++
	if !o.started && (o.req.wait || o.chunks == 1) {
		o.held.Write(chunk) // the engine's memory: copied
		return len(chunk), nil
	}
	if !o.started {
		if err := o.startBody(); err != nil {
			return 0, err
		}
	}
	if _, err := o.body.Write(chunk); err != nil {
		return 0, err
	}
	return len(chunk), nil
}

// startBody sends the headers and what was held.
func (o *resultWriter) startBody() error {
	o.started = true
	h := o.w.Header()
	h.Set("Content-Type", contentType(o.format))
	h.Set("X-ClickHouse-Format", o.format)
	if o.tz != "" {
		h.Set("X-ClickHouse-Timezone", o.tz)
	}
	h.Set("X-ClickHouse-Summary", summary(o.stats, time.Since(o.start)))
	var w io.Writer = o.w
	if o.head {
		w = io.Discard
	}
	if o.req.httpCompression {
		if enc := chooseEncoding(o.req.acceptEncoding); enc != "" {
			h.Set("Content-Encoding", enc)
			h.Add("Vary", "Accept-Encoding")
			e := newEncoder(enc, w, o.req.zlibLevel)
			o.close = append([]func() error{e.Close}, o.close...)
			w = e
		}
	}
	if o.req.blocks && o.req.blockMethod != 0 {
		b := newBlockWriter(w, o.req.blockMethod, o.req.blockLevel)
		o.close = append([]func() error{b.Close}, o.close...)
		w = b
	}
	o.text = w
	if o.req.clientRevision > 0 && o.format == "Native" {
		w = newNativeRevision(w, o.req.clientRevision, o.tz)
	}
	o.body = w
	o.w.WriteHeader(http.StatusOK)
	if o.held.Len() > 0 {
		if _, err := w.Write(o.held.Bytes()); err != nil {
			return err
		}
		o.held.Reset()
	}
	return nil
}

// finish sends a result that succeeded, with the query's statistics.
func (o *resultWriter) finish(stats store.QueryStats) error {
	if !o.started {
		o.stats = stats
		if err := o.startBody(); err != nil {
			return err
		}
	}
	for _, c := range o.close {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

// abort ends an answer whose output had started when the query failed:
// the exception goes at the end of the body, as ClickHouse writes it, and
// the response is broken off, so that no client takes the partial output
// for a whole result.
func (o *resultWriter) abort(code int, name, msg string) {
	io.WriteString(o.text, "\n"+ExceptionText(code, name, msg)+"\n")
	for _, c := range o.close {
		_ = c()
	}
	if f, ok := o.w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}

// summary is X-ClickHouse-Summary as ClickHouse writes it (numbers as
// strings). The engine reports no estimate of the rows to read, nor
// writes (none can happen): those are 0.
func summary(s store.QueryStats, elapsed time.Duration) string {
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	b, _ := json.Marshal(struct {
		ReadRows           string `json:"read_rows"`
		ReadBytes          string `json:"read_bytes"`
		WrittenRows        string `json:"written_rows"`
		WrittenBytes       string `json:"written_bytes"`
		TotalRowsToRead    string `json:"total_rows_to_read"`
		ResultRows         string `json:"result_rows"`
		ResultBytes        string `json:"result_bytes"`
		ElapsedNanoseconds string `json:"elapsed_ns"`
	}{u(s.ReadRows), u(s.ReadBytes), "0", "0", "0", u(s.ResultRows), u(s.ResultBytes), u(uint64(elapsed.Nanoseconds()))})
	return string(b)
}
