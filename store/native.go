package store

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
)

// This file is the server path's INSERT of flows: the batch's own ch-go
// columns written as Native blocks on a connection of the ClickHouse
// native protocol, with no driver's columns to copy them into. It speaks
// the protocol through ch-go's proto package, not ch-go's client: that
// client cannot query servers older than revision 54420 (18.16 is
// 54412), because it sends the query's client info only from 54420
// (proto.FeatureClientWriteInfo), where servers read it from 54032
// (DBMS_MIN_REVISION_WITH_CLIENT_INFO), so an 18.16 server reads the
// query packet shifted ("Unknown setting"). Queries and the other
// inserts stay on clickhouse-go.

// nativeRevision is the protocol revision flowhouse's insert connections
// speak: settings are sent as strings (insert_deduplication_token), and
// nothing newer is needed. Servers speak the lower of theirs and this.
const nativeRevision = int(proto.FeatureSettingsSerializedAsStrings)

// nativeConn is one connection for INSERTs of flows.
type nativeConn struct {
	conn        net.Conn
	r           *proto.Reader
	buf         proto.Buffer
	version     int // the revision both ends speak
	timeout     time.Duration
	compression proto.Compression
	cw          *compress.Writer
	types       []proto.ColumnType // the last INSERT's header, reused
	broken      bool               // a deadline of a canceled insert is set
}

// dialNative connects and says hello; the handshake is bounded by the
// dial timeout.
func dialNative(ctx context.Context, cfg Config) (*nativeConn, error) {
	nc, err := (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("store: connect to %s: %w", cfg.Addr, err)
	}
	c := &nativeConn{conn: nc, timeout: cfg.InsertTimeout, compression: proto.CompressionDisabled}
	c.r = proto.NewReader(timeoutReader{nc, cfg.InsertTimeout})
	if m := nativeCompression[cfg.WireCompression()]; m != compress.None {
		c.compression, c.cw = proto.CompressionEnabled, compress.NewWriter(compress.LevelZero, m)
	}
	if err := c.hello(cfg); err != nil {
		nc.Close()
		return nil, fmt.Errorf("store: handshake with %s: %w", cfg.Addr, err)
	}
	return c, nil
}

var nativeCompression = map[string]compress.Method{"lz4": compress.LZ4, "zstd": compress.ZSTD, "none": compress.None}

func (c *nativeConn) hello(cfg Config) error {
	if err := c.conn.SetDeadline(time.Now().Add(cfg.DialTimeout)); err != nil {
		return err
	}
	user := cfg.Username
	if user == "" {
		user = "default" // what clickhouse-go sends for no user
	}
	c.buf.Reset()
	proto.ClientHello{Name: "flowhouse", Major: 1, ProtocolVersion: nativeRevision,
		Database: cfg.Database, User: user, Password: cfg.Password}.Encode(&c.buf)
	if _, err := c.conn.Write(c.buf.Buf); err != nil {
		return err
	}
	code, err := c.r.UVarInt()
	if err != nil {
		return err
	}
	switch proto.ServerCode(code) {
	case proto.ServerCodeException:
		return c.exception()
	case proto.ServerCodeHello:
	default:
		return fmt.Errorf("server sent %s instead of hello", proto.ServerCode(code))
	}
	var server proto.ServerHello
	if err := server.DecodeAware(c.r, nativeRevision); err != nil {
		return err
	}
	c.version = min(nativeRevision, server.Revision)
	return c.conn.SetDeadline(time.Time{})
}

// exception reads an exception packet, nested ones included, as
// clickhouse-go's error type, so that ExceptionCode and Classify read
// both drivers' errors alike.
func (c *nativeConn) exception() error {
	var first *clickhouse.Exception
	for {
		var e clickhouse.Exception
		var err error
		if e.Code, err = c.r.Int32(); err == nil {
			if e.Name, err = c.r.Str(); err == nil {
				if e.Message, err = c.r.Str(); err == nil {
					e.StackTrace, err = c.r.Str()
				}
			}
		}
		if err != nil {
			return fmt.Errorf("read exception: %w", err)
		}
		if first == nil {
			first = &e
		}
		nested, err := c.r.Bool()
		if err != nil {
			return fmt.Errorf("read exception: %w", err)
		}
		if !nested {
			return first
		}
	}
}

// timeoutReader fails a read the peer does not answer within timeout.
type timeoutReader struct {
	conn    net.Conn
	timeout time.Duration
}

func (r timeoutReader) Read(b []byte) (int, error) {
	if err := r.conn.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
		return 0, err
	}
	return r.conn.Read(b)
}

// flush writes the buffer, failing when the server does not take it
// within the insert timeout.
func (c *nativeConn) flush() error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(c.buf.Buf)
	c.buf.Reset()
	return err
}

// encodeSettings writes settings as strings, or for servers older than
// that (18.16) in their binary form: an unsigned varint is every integer
// and boolean setting's, and flowhouse sends no other kind to them.
func (c *nativeConn) encodeSettings(settings []proto.Setting) error {
	for _, s := range settings {
		if proto.FeatureSettingsSerializedAsStrings.In(c.version) {
			s.Encode(&c.buf)
			continue
		}
		n, err := strconv.ParseUint(s.Value, 10, 64)
		if err != nil {
			return fmt.Errorf("setting %s: the server speaks protocol revision %d, where only integer settings can be sent (string settings need %d)", s.Key, c.version, nativeRevision)
		}
		c.buf.PutString(s.Key)
		c.buf.PutUVarInt(n)
	}
	return nil
}

// sendQuery sends the query packet and the empty block that ends the
// (no) external tables.
func (c *nativeConn) sendQuery(body string, settings []proto.Setting) error {
	c.buf.Reset()
	proto.ClientCodeQuery.Encode(&c.buf)
	c.buf.PutString("") // query id: the server makes one
	// What proto.Query.EncodeAware writes, but with the client info at
	// every revision (see the top of this file). 18.16 parses the
	// initial address as host:port, even when empty.
	proto.ClientInfo{ProtocolVersion: nativeRevision, Major: 1, Interface: proto.InterfaceTCP,
		Query: proto.ClientQueryInitial, ClientName: "flowhouse", InitialAddress: "0.0.0.0:0"}.EncodeAware(&c.buf, c.version)
	if err := c.encodeSettings(settings); err != nil {
		return err
	}
	c.buf.PutString("") // end of settings
	proto.StageComplete.Encode(&c.buf)
	c.compression.Encode(&c.buf)
	c.buf.PutString(body)
	if err := c.encodeBlock(nil, 0); err != nil {
		return err
	}
	return c.flush()
}

// encodeBlock appends a data packet of input (rows rows) to the buffer,
// its block compressed when the connection compresses; no input is the
// empty block that ends a stream.
func (c *nativeConn) encodeBlock(input proto.Input, rows int) error {
	proto.ClientCodeData.Encode(&c.buf)
	proto.ClientData{}.EncodeAware(&c.buf, c.version)
	start := len(c.buf.Buf)
	b := proto.Block{Columns: len(input), Rows: rows, Info: proto.BlockInfo{BucketNum: -1}}
	if err := b.EncodeBlock(&c.buf, c.version, input); err != nil {
		return err
	}
	if c.cw == nil {
		return nil
	}
	if err := c.cw.Compress(c.buf.Buf[start:]); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	c.buf.Buf = append(c.buf.Buf[:start], c.cw.Data...)
	return nil
}

// receive reads packets until the one the caller waits for: a data block
// (the INSERT's header, whose column types it returns) or the end of the
// stream.
func (c *nativeConn) receive(want proto.ServerCode) error {
	for {
		code, err := c.r.UVarInt()
		if err != nil {
			return err
		}
		switch sc := proto.ServerCode(code); sc {
		case proto.ServerCodeException:
			return c.exception()
		case proto.ServerCodeProgress:
			var p proto.Progress
			err = p.DecodeAware(c.r, c.version)
		case proto.ServerCodeProfile:
			var p proto.Profile
			err = p.DecodeAware(c.r, c.version)
		case proto.ServerCodeTableColumns:
			var t proto.TableColumns
			err = t.DecodeAware(c.r, c.version)
		case proto.ServerCodeLog:
			// A user profile with send_logs_level makes the server send
			// its log lines; they are not the insert's business.
			err = c.discardBlock()
		case want:
			if sc == proto.ServerCodeData {
				return c.header()
			}
			return nil
		default:
			return fmt.Errorf("server sent %s during an INSERT", sc)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", proto.ServerCode(code), err)
		}
	}
}

// discardBlock reads a block of the server's log, which is never
// compressed, whatever columns it has.
func (c *nativeConn) discardBlock() error {
	if _, err := c.r.Str(); err != nil { // table name, empty
		return err
	}
	var b proto.Block
	var res proto.Results
	return b.DecodeBlock(c.r, c.version, res.Auto())
}

// header reads the block the server answers an INSERT with: the table's
// columns, no rows.
func (c *nativeConn) header() error {
	if _, err := c.r.Str(); err != nil { // table name, empty
		return err
	}
	if c.compression == proto.CompressionEnabled {
		c.r.EnableCompression()
		defer c.r.DisableCompression()
	}
	var b proto.Block
	return b.DecodeBlock(c.r, c.version, (*headerResult)(c))
}

type headerResult nativeConn

func (h *headerResult) DecodeResult(r *proto.Reader, _ int, b proto.Block) error {
	if b.Rows != 0 {
		return fmt.Errorf("header block has %d rows", b.Rows)
	}
	h.types = h.types[:0]
	for range b.Columns {
		if _, err := r.Str(); err != nil {
			return err
		}
		t, err := r.Str()
		if err != nil {
			return err
		}
		h.types = append(h.types, proto.ColumnType(t))
	}
	return nil
}

// insertFlows runs one INSERT of the batch in blocks of blockRows rows.
// Any error leaves the connection unusable: the caller closes it, and the
// server then cancels the whole INSERT, blocks already sent included.
func (c *nativeConn) insertFlows(ctx context.Context, table string, b *FlowBatch, settings []proto.Setting, blockRows int) (sent bool, err error) {
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			c.broken = true
			if err != nil {
				err = fmt.Errorf("%w (%w)", ctx.Err(), err)
			}
		}
	}()
	if err := c.sendQuery(insertFlowsQuery(table, b)+" VALUES", settings); err != nil {
		return false, err
	}
	if err := c.receive(proto.ServerCodeData); err != nil {
		return false, err
	}
	scratch := scratchPool.Get().(*insertScratch)
	defer scratch.release()
	for from := 0; from < b.Len(); from += blockRows {
		to := min(from+blockRows, b.Len())
		input, err := b.InsertBlock(&scratch.Scratch, from, to, c.types)
		if err != nil {
			return true, err
		}
		if err := c.encodeBlock(input, to-from); err != nil {
			return true, fmt.Errorf("block at row %d: %w", from, err)
		}
		if err := c.flush(); err != nil {
			return true, fmt.Errorf("block at row %d: %w", from, err)
		}
	}
	if err := c.encodeBlock(nil, 0); err != nil {
		return true, err
	}
	if err := c.flush(); err != nil {
		return true, err
	}
	return true, c.receive(proto.ServerCodeEndOfStream)
}

// nativePool keeps idle insert connections, as many as there are
// writers and a few more.
type nativePool struct {
	cfg    Config
	table  string // flows, or a shard's flows_local
	idle   chan *nativeConn
	closed atomic.Bool // connections of inserts that end after Close are closed
}

func newNativePool(cfg Config, table string) *nativePool {
	return &nativePool{cfg: cfg, table: table, idle: make(chan *nativeConn, max(cfg.Writers, 1)+2)}
}

// insertFlows inserts on an idle connection, or a new one. An idle
// connection the server has closed meanwhile fails before the batch is
// sent: then the insert is tried once more on a new connection.
func (p *nativePool) insertFlows(ctx context.Context, b *FlowBatch, settings []proto.Setting) error {
	for {
		c, reused := p.get()
		if c == nil {
			var err error
			if c, err = dialNative(ctx, p.cfg); err != nil {
				return err
			}
		}
		sent, err := c.insertFlows(ctx, p.table, b, settings, insertBlockRows)
		if err == nil && !c.broken {
			p.put(c)
			return nil
		}
		c.conn.Close()
		if err == nil || !reused || sent || ctx.Err() != nil || ExceptionCode(err) != 0 {
			return err
		}
	}
}

func (p *nativePool) get() (*nativeConn, bool) {
	select {
	case c := <-p.idle:
		return c, true
	default:
		return nil, false
	}
}

func (p *nativePool) put(c *nativeConn) {
	select {
	case p.idle <- c:
		if p.closed.Load() {
			p.close()
		}
	default:
		c.conn.Close()
	}
}

func (p *nativePool) close() error {
	p.closed.Store(true)
	for {
		select {
		case c := <-p.idle:
			c.conn.Close()
		default:
			return nil
		}
	}
}
