package mysql

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/snapshot"
)

// EnsureWatermarkTable creates the watermark table on the source. Its rows are tiny and
// rewritten in place: one per snapshot worker session.
func EnsureWatermarkTable(c *client.Conn) error {
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + Quote(StateDB),
		"CREATE TABLE IF NOT EXISTS " + QuoteTable(StateDB, WatermarkTable) +
			" (id BIGINT NOT NULL PRIMARY KEY, mark VARCHAR(255) NOT NULL) ENGINE=InnoDB",
	} {
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("create the watermark table %s.%s on the source (grant CREATE, INSERT, UPDATE, DELETE ON `_migrated`.* to the migration user): %w", StateDB, WatermarkTable, err)
		}
	}
	return nil
}

// SnapshotSource is one snapshot worker's session on a MySQL source. It implements
// snapshot.Source.
type SnapshotSource struct {
	conn   *client.Conn
	tables map[cdc.TableID]*schema.Table
	// slot is this session's row in the watermark table.
	slot int64
}

var _ snapshot.Source = (*SnapshotSource)(nil)

// NewSnapshotSource opens a worker session on the source.
func NewSnapshotSource(ctx context.Context, a Addr, tables []*schema.Table) (*SnapshotSource, error) {
	c, err := Connect(ctx, a)
	if err != nil {
		return nil, err
	}
	// Each chunk is one statement: REPEATABLE READ gives it one consistent view, and the
	// view ends with the statement under autocommit, so no long transaction is held.
	if _, err := c.Execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		c.Close()
		return nil, fmt.Errorf("set up the snapshot session: %w", err)
	}
	return &SnapshotSource{conn: c, tables: ByName(tables), slot: rand.Int64N(1<<62) + 1}, nil
}

// Close ends the session and removes its watermark row.
func (s *SnapshotSource) Close() {
	_, _ = s.conn.Execute("DELETE FROM "+QuoteTable(StateDB, WatermarkTable)+" WHERE id = ?", s.slot)
	s.conn.Close()
}

// Watermark writes mark into this session's watermark row, in a transaction of its own.
func (s *SnapshotSource) Watermark(ctx context.Context, mark string) error {
	q := "INSERT INTO " + QuoteTable(StateDB, WatermarkTable) + " (id, mark) VALUES (" + strconv.FormatInt(s.slot, 10) +
		", " + quoteLiteral(mark) + ") ON DUPLICATE KEY UPDATE mark = VALUES(mark)"
	return s.exec(ctx, q, nil)
}

// Read returns up to limit rows after cursor in key order, with one SELECT, and the key of
// the last one in the order of Table.Key.
func (s *SnapshotSource) Read(ctx context.Context, rel *cdc.Relation, cursor []string, limit int) ([][]cdc.Value, []string, error) {
	t := s.tables[rel.Table]
	if t == nil {
		return nil, nil, fmt.Errorf("snapshot of %s: not a migrated table", rel.Table)
	}
	q, err := chunkQuery(t, cursor, limit)
	if err != nil {
		return nil, nil, err
	}
	var rows [][]cdc.Value
	err = s.exec(ctx, q, func(row []mysql.FieldValue) error {
		rows = append(rows, RowValues(t, row))
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s after key %v: %w", rel.Table, cursor, err)
	}
	if len(rows) == 0 {
		return nil, cursor, nil
	}
	last := rows[len(rows)-1]
	next := make([]string, len(t.Key))
	for i, k := range t.Key {
		j := slices.IndexFunc(rel.Columns, func(c cdc.Column) bool { return c.Name == k })
		if j < 0 {
			return nil, nil, fmt.Errorf("key column %s of %s is not copied (a generated key column cannot be migrated)", k, t.ID)
		}
		next[i] = string(last[j].Data)
	}
	return rows, next, nil
}

// exec runs q, streaming rows to each when it is a SELECT. The client takes no context: a
// done ctx expires the connection's deadline, which breaks the session.
func (s *SnapshotSource) exec(ctx context.Context, q string, each func([]mysql.FieldValue) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetDeadline(time.Now()) })
	var err error
	if each == nil {
		var r *mysql.Result
		if r, err = s.conn.Execute(q); r != nil {
			r.Close()
		}
	} else {
		var result mysql.Result
		err = s.conn.ExecuteSelectStreaming(q, &result, func(row []mysql.FieldValue) error { return each(row) }, nil)
	}
	if !stop() {
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	return classify(err)
}

// chunkQuery reads the next limit rows after cursor in key order. A composite key compares
// column by column (a > x OR (a = x AND b > y)), a form the optimizer turns into a range on
// the key's index; the server's own collation orders strings, so the cursor and ORDER BY agree.
func chunkQuery(t *schema.Table, cursor []string, limit int) (string, error) {
	cols := map[string]*schema.Column{}
	for i := range t.Columns {
		cols[t.Columns[i].Name] = &t.Columns[i]
	}
	var b strings.Builder
	b.WriteString("SELECT " + SelectList(t) + " FROM " + QuoteTable(t.ID.Schema, t.ID.Name))
	if cursor != nil {
		if len(cursor) != len(t.Key) {
			return "", fmt.Errorf("snapshot cursor of %s has %d values for a %d-column key; the key changed since the copy began: cancel the migration and start again", t.ID, len(cursor), len(t.Key))
		}
		lits := make([]string, len(t.Key))
		for i, k := range t.Key {
			col := cols[k]
			if col == nil {
				return "", fmt.Errorf("key column %s of %s is gone", k, t.ID)
			}
			lit, err := appendLiteral(nil, literalClassOf(col), cdc.Value{Kind: cdc.ValueText, Data: []byte(cursor[i])})
			if err != nil {
				return "", fmt.Errorf("snapshot cursor of %s: %w", t.ID, err)
			}
			lits[i] = string(lit)
		}
		b.WriteString(" WHERE ")
		for i := range t.Key {
			if i > 0 {
				b.WriteString(" OR ")
			}
			b.WriteString("(")
			for j := 0; j < i; j++ {
				b.WriteString(Quote(t.Key[j]) + " = " + lits[j] + " AND ")
			}
			b.WriteString(Quote(t.Key[i]) + " > " + lits[i] + ")")
		}
	}
	b.WriteString(" ORDER BY ")
	for i, k := range t.Key {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(Quote(k))
	}
	b.WriteString(" LIMIT " + strconv.Itoa(limit))
	return b.String(), nil
}

// DropWatermarks removes the watermark and heartbeat rows of a migration that is over, left by
// sessions that ended without closing (a killed daemon).
func DropWatermarks(c *client.Conn, migration string) error {
	like := strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(migration)
	q := "DELETE FROM " + QuoteTable(StateDB, WatermarkTable) + " WHERE mark LIKE ? OR mark LIKE ?"
	if _, err := c.Execute(q, like+"|%", "heartbeat|"+like+"|%"); err != nil && !noState(err) {
		return fmt.Errorf("remove the watermark rows of %s from the source: %w", migration, err)
	}
	return nil
}
