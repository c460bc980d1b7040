package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// pinSettings fixes how values print, so that the two sides hash the same row to the same text
// whatever their server defaults, and so that a stored cursor parses back to the same key.
const pinSettings = `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';
SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; SET LOCAL lc_monetary = 'C'`

// queries is the SQL of one table. Rows are hashed whole as text: (t.*) rather than t, which a
// column named t would shadow. The table is read without ONLY, so a root covers its partitions.
type queries struct {
	from  string   // `"schema"."table" t`
	keys  string   // `t."k1", t."k2"`
	text  string   // `ARRAY[t."k1"::text, t."k2"::text]`
	types []string // the key columns' types, for casting cursor values back
	rows  int      // rows per chunk
}

func newQueries(t *schema.Table, rows int) (*queries, error) {
	if len(t.Key) == 0 {
		return nil, fmt.Errorf("verify %s: the table has no primary key or replica identity index to order chunks by; add one, or leave the table out", t.ID)
	}
	q := &queries{from: pgx.Identifier{t.ID.Schema, t.ID.Name}.Sanitize() + " t", rows: rows}
	var keys, text []string
	for _, k := range t.Key {
		i := slices.IndexFunc(t.Columns, func(c schema.Column) bool { return c.Name == k })
		if i < 0 {
			return nil, fmt.Errorf("verify %s: key column %q is not among the table's columns; reread the catalog", t.ID, k)
		}
		col := "t." + pgx.Identifier{k}.Sanitize()
		keys, text = append(keys, col), append(text, col+"::text")
		q.types = append(q.types, t.Columns[i].Type)
	}
	q.keys, q.text = strings.Join(keys, ", "), "ARRAY["+strings.Join(text, ", ")+"]"
	return q, nil
}

// where returns the condition for the keys in (lo, hi] and its arguments; nil bounds are open.
// Row comparison orders composite keys the way ORDER BY does.
func (q *queries) where(lo, hi []string) (string, []any) {
	var conds []string
	var args []any
	if lo != nil {
		var c string
		c, args = q.compare(">", lo, args)
		conds = append(conds, c)
	}
	if hi != nil {
		var c string
		c, args = q.compare("<=", hi, args)
		conds = append(conds, c)
	}
	if len(conds) == 0 {
		return "true", nil
	}
	return strings.Join(conds, " AND "), args
}

// equal returns the condition for the one row with key and its arguments.
func (q *queries) equal(key []string) (string, []any) { return q.compare("=", key, nil) }

// compare returns the condition that compares the key columns with vals by op, and args with
// vals appended, as text parameters cast back to the key columns' types.
func (q *queries) compare(op string, vals []string, args []any) (string, []any) {
	ps := make([]string, len(vals))
	for i, v := range vals {
		args = append(args, v)
		ps[i] = fmt.Sprintf("$%d::text::%s", len(args), q.types[i])
	}
	return fmt.Sprintf("(%s) %s (%s)", q.keys, op, strings.Join(ps, ", ")), args
}

// upper returns the last key of the chunk after lo on the source, or nil when the rest of the
// table is one chunk.
func (r *runner) upper(ctx context.Context, q *queries, lo []string) ([]string, error) {
	where, args := q.where(lo, nil)
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s OFFSET %d LIMIT 1", q.text, q.from, where, q.keys, q.rows-1)
	var hi []string
	err := read(ctx, r.o.Source, nil, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, sql, args...).Scan(&hi)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("find the chunk's end on the source: %w", err)
	}
	return hi, nil
}

// digest is a chunk's row count and sum of row hashes.
type digest struct {
	rows int64
	sum  string
}

// chunk compares the chunk (lo, hi] and returns its mismatched rows.
func (r *runner) chunk(ctx context.Context, tr *tableRun, lo, hi []string, log *zap.Logger) ([]Mismatch, error) {
	where, args := tr.q.where(lo, hi)
	sql := fmt.Sprintf("SELECT count(*), coalesce(sum(hashtextextended((t.*)::text, 0)), 0)::text FROM %s WHERE %s", tr.q.from, where)
	sum := func(ctx context.Context, pool *pgxpool.Pool, lsn *postgres.LSN) (digest, error) {
		var d digest
		err := read(ctx, pool, lsn, func(tx pgx.Tx) error { return tx.QueryRow(ctx, sql, args...).Scan(&d.rows, &d.sum) })
		return d, err
	}

	// The first pass reads both sides at once, with no position: a count and a sum that agree
	// are trusted whenever each was read.
	var src, dst digest
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		if dst, err = sum(gctx, r.o.Target, nil); err != nil {
			return fmt.Errorf("read the target: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) {
		if src, err = sum(gctx, r.o.Source, nil); err != nil {
			return fmt.Errorf("read the source: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if src == dst {
		return nil, nil
	}

	// Lag makes transient differences: read the source at a position, and the target once the
	// stream has applied up to it. One re-read settles lag; a difference that outlives it goes to
	// the row-level diff, which retries key by key, rather than costing more full-chunk scans.
	for range resums {
		var lsn postgres.LSN
		src, err := sum(ctx, r.o.Source, &lsn)
		if err != nil {
			return nil, fmt.Errorf("read the source: %w", err)
		}
		if err := r.waitApplied(ctx, lsn); err != nil {
			return nil, err
		}
		dst, err := sum(ctx, r.o.Target, nil)
		if err != nil {
			return nil, fmt.Errorf("read the target: %w", err)
		}
		if src == dst {
			return nil, nil
		}
	}
	return r.diffChunk(ctx, tr, where, args, log)
}

// verdict is what one row-level diff says about a key.
type verdict struct {
	Mismatch
	key    []string // the key values
	stable bool     // the source held still across the diff
}

// diffChunk compares the chunk row by row, up to attempts times. A key matches once any diff
// finds it equal. A key is reported when two diffs in a row find the same stable difference. A
// key that never matched and never held still is compared once more with its source row locked
// (see settle), so a row too hot to compare otherwise gets an exact verdict.
func (r *runner) diffChunk(ctx context.Context, tr *tableRun, where string, args []any, log *zap.Logger) ([]Mismatch, error) {
	sql := fmt.Sprintf("SELECT %s, hashtextextended((t.*)::text, 0) FROM %s WHERE %s ORDER BY %s", tr.q.text, tr.q.from, where, tr.q.keys)
	var order []string           // candidate keys, in the order first found
	prev := map[string]verdict{} // the previous diff's verdicts
	for attempt := 1; ; attempt++ {
		cur, keys, err := r.diff(ctx, tr.name, sql, args)
		if err != nil {
			return nil, err
		}
		if attempt == 1 {
			order = keys
		} else {
			// A candidate this diff found equal is resolved. A new difference is no candidate:
			// an earlier diff found that key equal.
			order = slices.DeleteFunc(order, func(k string) bool { _, ok := cur[k]; return !ok })
		}
		settled := true
		for _, k := range order {
			if v, p := cur[k], prev[k]; !v.stable || !p.stable || v.Kind != p.Kind {
				settled = false
			}
		}
		if settled || attempt == attempts {
			return r.settle(ctx, tr.q, order, cur, prev, log)
		}
		prev = cur
	}
}

// diff reads the chunk's rows from the source at a position, from the target once the stream
// has applied up to it, then from the source again. It returns the keys that differ, keyed by
// joinKey, and those keys in order. A key whose target row equals either source read matches:
// the target was read between the two.
func (r *runner) diff(ctx context.Context, table, sql string, args []any) (map[string]verdict, []string, error) {
	var lsn postgres.LSN
	src1, err := readRows(ctx, r.o.Source, &lsn, sql, args)
	if err != nil {
		return nil, nil, fmt.Errorf("read the source rows: %w", err)
	}
	if err := r.waitApplied(ctx, lsn); err != nil {
		return nil, nil, err
	}
	dst, err := readRows(ctx, r.o.Target, nil, sql, args)
	if err != nil {
		return nil, nil, fmt.Errorf("read the target rows: %w", err)
	}
	src2, err := readRows(ctx, r.o.Source, nil, sql, args)
	if err != nil {
		return nil, nil, fmt.Errorf("read the source rows: %w", err)
	}
	out := map[string]verdict{}
	var order []string
	check := func(key []string) {
		k := joinKey(key)
		if _, seen := out[k]; seen {
			return
		}
		a, inA := src1.hash[k]
		d, inD := dst.hash[k]
		b, inB := src2.hash[k]
		if (inA == inD && a == d) || (inB == inD && b == d) {
			return
		}
		v := verdict{Mismatch: Mismatch{Table: table, Key: formatKey(key), Kind: KindDifferent}, key: key, stable: inA == inB && a == b}
		switch {
		case !v.stable:
		case !inD:
			v.Kind = KindMissing
		case !inA:
			v.Kind = KindExtra
		}
		out[k] = v
		order = append(order, k)
	}
	for _, key := range src1.keys {
		check(key)
	}
	for _, key := range dst.keys {
		check(key)
	}
	return out, order, nil
}

// rowSet is a chunk's rows: their keys in key order, and each row's hash by joinKey.
type rowSet struct {
	keys [][]string
	hash map[string]int64
}

func readRows(ctx context.Context, pool *pgxpool.Pool, lsn *postgres.LSN, sql string, args []any) (rowSet, error) {
	s := rowSet{hash: map[string]int64{}}
	err := read(ctx, pool, lsn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		var key []string
		var h int64
		_, err = pgx.ForEachRow(rows, []any{&key, &h}, func() error {
			s.keys = append(s.keys, key)
			s.hash[joinKey(key)] = h
			key = nil
			return nil
		})
		return err
	})
	return s, err
}

// read runs fn in a read-only transaction with pinSettings. Given lsn, the transaction is
// REPEATABLE READ and its first query stores the source's WAL insert position in *lsn: every
// commit the snapshot sees ends at or before it. (The write position can be behind a commit that
// is already visible, with synchronous_commit off.)
func read(ctx context.Context, pool *pgxpool.Pool, lsn *postgres.LSN, fn func(pgx.Tx) error) error {
	opts := pgx.TxOptions{AccessMode: pgx.ReadOnly}
	if lsn != nil {
		opts.IsoLevel = pgx.RepeatableRead
	}
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, pinSettings); err != nil {
		return err
	}
	if lsn != nil {
		if *lsn, err = postgres.CurrentLSN(ctx, tx); err != nil {
			return err
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// waitApplied waits until the target has applied the source up to lsn.
func (r *runner) waitApplied(ctx context.Context, lsn postgres.LSN) error {
	deadline := time.Now().Add(r.o.CatchUpTimeout)
	for {
		pos, err := r.o.Applied(ctx)
		if err != nil {
			return fmt.Errorf("read the target's applied position: %w", err)
		}
		if pos >= lsn {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the applied position %s has not reached the source position %s in %s; check that the migration is streaming and its lag is falling",
				ErrStreamBehind, pos, lsn, r.o.CatchUpTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// joinKey makes a map key of key values; text values cannot hold NUL.
func joinKey(key []string) string { return strings.Join(key, "\x00") }

// formatKey formats key values for Mismatch.Key: "(1,abc)".
func formatKey(key []string) string { return "(" + strings.Join(key, ",") + ")" }

// startKey describes a cursor in an error or log.
func startKey(cursor []string) string {
	if cursor == nil {
		return "the start"
	}
	return formatKey(cursor)
}
