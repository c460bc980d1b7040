package postgres

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/state"
)

// pageSize is PostgreSQL's default block size; chunk ranges are in pages.
const pageSize = 8192

// copyBufferSize is how much of a COPY stream is gathered before it goes to the target.
const copyBufferSize = 256 << 10

// maxChunkBytes bounds a chunk of a table without a row estimate.
const maxChunkBytes = 1 << 30

// Chunk is a ctid page range of one table: pages [FromPage, ToPage), ToPage 0 meaning "to the
// end", so rows added to new pages during planning are still covered.
type Chunk struct {
	Table    *schema.Table
	Index    int
	Count    int
	FromPage int64
	ToPage   int64
}

func (c Chunk) String() string {
	return fmt.Sprintf("%s chunk %d/%d", c.Table.ID, c.Index+1, c.Count)
}

// PlanChunks splits a table whose estimate exceeds splitRows into ctid ranges of about splitRows
// rows each. ctid range scans (PostgreSQL 14+) read only their pages.
//
// A table never analyzed has no row estimate; it is split by size instead, at maxChunkBytes.
//
// A split table gets a multiple of workers chunks, so that its last chunks do not run alone while
// the other workers idle.
func PlanChunks(t *schema.Table, splitRows int64, workers int) []Chunk {
	pages := t.Bytes / pageSize
	n := int64(1)
	if splitRows > 0 && t.EstimatedRows > splitRows {
		n = (t.EstimatedRows + splitRows - 1) / splitRows
	}
	if t.EstimatedRows == 0 && t.Bytes > maxChunkBytes {
		n = (t.Bytes + maxChunkBytes - 1) / maxChunkBytes
	}
	if w := int64(max(workers, 1)); n > 1 && n%w != 0 {
		n += w - n%w
	}
	n = max(min(n, pages), 1)
	chunks := make([]Chunk, n)
	per := pages / n
	for i := int64(0); i < n; i++ {
		chunks[i] = Chunk{Table: t, Index: int(i), Count: int(n), FromPage: i * per, ToPage: (i + 1) * per}
	}
	chunks[n-1].ToPage = 0
	if n == 1 {
		chunks[0].FromPage = 0
	}
	return chunks
}

// SnapshotReader opens a source transaction on an exported snapshot. Every copy worker reads
// through one, so all tables are copied as of the slot's consistent point.
func SnapshotReader(ctx context.Context, dsn, snapshot string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to source: %w", err)
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("begin snapshot transaction: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT "+literal(snapshot)); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("import snapshot %s: %w; the exporting connection closed too early", snapshot, err)
	}
	return conn, nil
}

// CopyWriter opens a target session for bulk copy.
func CopyWriter(ctx context.Context, dsn string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to target: %w", err)
	}
	// A chunk and its "done" mark commit together, so losing both to a target crash is safe.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = off; SET session_replication_role = replica"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("prepare target copy session: %w", err)
	}
	return conn, nil
}

// CopyChunk copies one chunk from src (inside a snapshot transaction) to dst, and marks it done
// in the same target transaction. rows receives the rows copied so far while the copy runs.
// Binary COPY passes through untouched unless a column's binary form embeds type OIDs (arrays of
// user types, composites), which differ between clusters: those tables go as text.
func CopyChunk(ctx context.Context, src, dst *pgx.Conn, ch Chunk, migration string, rows *atomic.Int64) (int64, error) {
	binaryOK, err := binarySafe(ctx, src, ch.Table)
	if err != nil {
		return 0, err
	}
	format := "text"
	if binaryOK {
		format = "binary"
	}
	cols := make([]string, 0, len(ch.Table.Columns))
	for _, c := range ch.Table.CopyColumns() {
		cols = append(cols, quote(c))
	}
	list := strings.Join(cols, ", ")
	where := ""
	if ch.Count > 1 {
		where = fmt.Sprintf(" WHERE ctid >= '(%d,0)'::tid", ch.FromPage)
		if ch.ToPage > 0 {
			where += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", ch.ToPage)
		}
	}
	out := fmt.Sprintf("COPY (SELECT %s FROM ONLY %s%s) TO STDOUT (FORMAT %s)", list, ident(ch.Table.ID), where, format)
	in := fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT %s)", ident(ch.Table.ID), list, format)

	tx, err := dst.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("copy %s: begin target transaction: %w", ch, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	pr, pw := io.Pipe()
	readErr := make(chan error, 1)
	go func() {
		// CopyTo writes one row per call and a pipe hands each write to one read: without a
		// buffer, CopyFrom would send every row to the target in its own message and syscall.
		buf := bufio.NewWriterSize(pw, copyBufferSize)
		_, err := src.PgConn().CopyTo(ctx, buf, out)
		if err == nil {
			err = buf.Flush()
		}
		pw.CloseWithError(err)
		readErr <- err
	}()
	counter := &rowCounter{r: pr, binary: binaryOK, rows: rows}
	tag, err := dst.PgConn().CopyFrom(ctx, counter, in)
	pr.CloseWithError(io.ErrClosedPipe) // unblock the reader if the write side stopped first
	rerr := <-readErr
	// When the target fails first, the source side only sees the closed pipe: report the target.
	if err != nil {
		return 0, fmt.Errorf("copy %s: write to target: %w", ch, err)
	}
	if rerr != nil {
		return 0, fmt.Errorf("copy %s: read from source: %w", ch, rerr)
	}
	n := tag.RowsAffected()
	if _, err := tx.Exec(ctx, state.ChunkDoneSQL, migration, ch.Table.ID.Schema, ch.Table.ID.Name, n); err != nil {
		return 0, fmt.Errorf("copy %s: record progress: %w", ch, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("copy %s: commit: %w", ch, err)
	}
	return n, nil
}

func binarySafe(ctx context.Context, conn *pgx.Conn, t *schema.Table) (bool, error) {
	var unsafe bool
	err := conn.QueryRow(ctx, `
SELECT EXISTS (
  SELECT 1 FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
    JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
    LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
   WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped
     AND (b.typtype = 'c' OR b.typtype = 'r' OR b.typtype = 'm' OR (e.oid IS NOT NULL AND (e.oid >= 16384 OR e.typtype IN ('c','d','e','r')))))`,
		t.ID.Schema, t.ID.Name).Scan(&unsafe)
	if err != nil {
		return false, fmt.Errorf("inspect column types of %s: %w", t.ID, err)
	}
	return !unsafe, nil
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// rowCounter counts the rows of a COPY stream as it passes, for live progress. It parses just the
// framing: lines for text; the header, tuple field counts and field lengths for binary.
type rowCounter struct {
	r      io.Reader
	binary bool
	rows   *atomic.Int64

	// binary framing state
	stage   int   // 0 header, 1 header extension, 2 tuple field count, 3 field length, 4 field data
	need    int64 // bytes still needed for the current stage
	buf     [19]byte
	have    int
	fields  int
	started bool
}

func (c *rowCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.rows != nil && n > 0 {
		if c.binary {
			c.scanBinary(p[:n])
		} else {
			c.rows.Add(int64(countByte(p[:n], '\n')))
		}
	}
	return n, err
}

func countByte(p []byte, b byte) int {
	n := 0
	for _, x := range p {
		if x == b {
			n++
		}
	}
	return n
}

func (c *rowCounter) scanBinary(p []byte) {
	if !c.started {
		c.started, c.stage, c.need = true, 0, 19
	}
	for len(p) > 0 {
		switch c.stage {
		case 5: // after the trailer nothing more is counted
			return
		case 1, 4: // skip payload bytes
			k := min(int64(len(p)), c.need)
			p, c.need = p[k:], c.need-k
			if c.need == 0 {
				c.afterSkip()
			}
		default: // accumulate a fixed-size integer
			k := min(len(p), int(c.need)-c.have)
			copy(c.buf[c.have:], p[:k])
			p, c.have = p[k:], c.have+k
			if c.have == int(c.need) {
				c.have = 0
				c.afterFixed()
			}
		}
	}
}

func (c *rowCounter) afterFixed() {
	switch c.stage {
	case 0: // signature(11) flags(4) extension length(4)
		c.stage, c.need = 1, int64(binary.BigEndian.Uint32(c.buf[15:19]))
		if c.need == 0 {
			c.stage, c.need = 2, 2
		}
	case 2:
		f := int16(binary.BigEndian.Uint16(c.buf[:2]))
		if f < 0 { // trailer
			c.stage = 5
			return
		}
		c.rows.Add(1)
		c.fields = int(f)
		c.nextField()
	case 3:
		l := int32(binary.BigEndian.Uint32(c.buf[:4]))
		if l <= 0 { // NULL or empty
			c.nextField()
			return
		}
		c.stage, c.need = 4, int64(l)
	}
}

func (c *rowCounter) afterSkip() {
	if c.stage == 1 {
		c.stage, c.need = 2, 2
		return
	}
	c.nextField()
}

func (c *rowCounter) nextField() {
	if c.fields == 0 {
		c.stage, c.need = 2, 2
		return
	}
	c.fields--
	c.stage, c.need = 3, 4
}
