package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/snapshot"
)

// ReconSource is one worker's session for a snapshot reconciled with the stream by
// watermarks, used when the target cannot take a PostgreSQL COPY under an exported snapshot
// (a MySQL target). Watermarks are transactional logical messages; chunks are read by key.
type ReconSource struct {
	conn   *pgx.Conn
	tables map[cdc.TableID]*schema.Table
}

var _ snapshot.Source = (*ReconSource)(nil)

// NewReconSource opens a worker session on the source.
func NewReconSource(ctx context.Context, dsn string, tables []*schema.Table) (*ReconSource, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to source: %w", err)
	}
	// Values are read in the text form pgoutput sends them in; fix the settings that shape it.
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("set up the snapshot session: %w", err)
	}
	return &ReconSource{conn: conn, tables: ByName(tables)}, nil
}

// Close ends the session.
func (s *ReconSource) Close() { s.conn.Close(context.Background()) }

// Watermark writes mark into the WAL as a transactional message of its own transaction.
func (s *ReconSource) Watermark(ctx context.Context, mark string) error {
	if _, err := s.conn.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2)", WatermarkPrefix, mark); err != nil {
		return fmt.Errorf("write a snapshot watermark on the source: %w", err)
	}
	return nil
}

// Read returns up to limit rows after cursor in key order, as text, and the last row's key.
func (s *ReconSource) Read(ctx context.Context, rel *cdc.Relation, cursor []string, limit int) ([][]cdc.Value, []string, error) {
	t := s.tables[rel.Table]
	if t == nil {
		return nil, nil, fmt.Errorf("snapshot of %s: not a migrated table", rel.Table)
	}
	types := map[string]string{}
	for _, c := range t.Columns {
		types[c.Name] = c.Type
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range rel.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(c.Name) + "::text")
	}
	// The key is qualified below: unqualified, ORDER BY would sort by the ::text output
	// columns of the same name, in text order. A partitioned table is read across its
	// partitions; any other without the tables that inherit from it.
	only := "ONLY "
	if t.Partitioned {
		only = ""
	}
	b.WriteString(" FROM " + only + ident(t.ID) + " AS src")
	var args []any
	if cursor != nil {
		if len(cursor) != len(t.Key) {
			return nil, nil, fmt.Errorf("snapshot cursor of %s has %d values for a %d-column key; the key changed since the copy began: cancel the migration and start again", t.ID, len(cursor), len(t.Key))
		}
		params := make([]string, len(t.Key))
		for i, k := range t.Key {
			params[i] = "$" + strconv.Itoa(i+1) + "::text::" + types[k]
			args = append(args, cursor[i])
		}
		b.WriteString(" WHERE (" + srcList(t.Key) + ") > (" + strings.Join(params, ", ") + ")")
	}
	b.WriteString(" ORDER BY " + srcList(t.Key) + " LIMIT " + strconv.Itoa(limit))
	rows, err := s.conn.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s after key %v: %w", t.ID, cursor, err)
	}
	defer rows.Close()
	var out [][]cdc.Value
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]cdc.Value, len(raw))
		for i, v := range raw {
			if v == nil {
				row[i] = cdc.Value{Kind: cdc.ValueNull}
			} else {
				row[i] = cdc.Value{Kind: cdc.ValueText, Data: append([]byte(nil), v...)}
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s after key %v: %w", t.ID, cursor, err)
	}
	if len(out) == 0 {
		return nil, cursor, nil
	}
	last := out[len(out)-1]
	next := make([]string, len(t.Key))
	for i, k := range t.Key {
		j := -1
		for ci, c := range rel.Columns {
			if c.Name == k {
				j = ci
			}
		}
		if j < 0 {
			return nil, nil, fmt.Errorf("key column %s of %s is not copied", k, t.ID)
		}
		next[i] = string(last[j].Data)
	}
	return out, next, nil
}

// srcList is a key column list qualified by the alias src.
func srcList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "src." + quote(n)
	}
	return strings.Join(q, ", ")
}
