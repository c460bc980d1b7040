package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// TableResult is one table in the report: its rows and size, and whether both sides agree.
type TableResult struct {
	// Table is the schema-qualified name; a partitioned table counts its partitions.
	Table string
	// SnapshotRows is how many rows the daemon copied in the snapshot.
	SnapshotRows int64
	// SourceRows and TargetRows are the rows on each side at the end.
	SourceRows, TargetRows int64
	// Bytes is the table's size on the source, with TOAST or overflow pages, and indexes.
	Bytes int64
	// Equal is true when both sides' rows, as text in key or sorted order, are byte-identical.
	Equal bool
}

// listTablesSQL lists the user tables as migrated sees them: partitioned tables by their root,
// with each leaf's root so that per-partition progress can be summed.
const listTablesSQL = `
SELECT format('%s.%s', n.nspname, c.relname), format('%s.%s', rn.nspname, r.relname)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)
  JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_migrated')
   AND n.nspname !~ '^pg_'
 ORDER BY 1`

// tables returns the root tables of the database and the root of every table (itself for a
// table that is not a partition).
func tables(ctx context.Context, conn *pgx.Conn) (roots []string, rootOf map[string]string, err error) {
	rows, err := conn.Query(ctx, listTablesSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("list tables: %w", err)
	}
	rootOf = map[string]string{}
	for rows.Next() {
		var name, root string
		if err := rows.Scan(&name, &root); err != nil {
			return nil, nil, err
		}
		rootOf[name] = root
		if name == root {
			roots = append(roots, name)
		}
	}
	return roots, rootOf, rows.Err()
}

// compareTables checks every table independently of migrated's code: each side writes its rows
// as text, sorted, through COPY, and the SHA-256 of the two streams must match. Both sides are
// read at the same time. progress is called before each table.
func compareTables(ctx context.Context, srcDSN, dstDSN string, progress func(table string)) ([]TableResult, error) {
	src, err := pgx.Connect(ctx, srcDSN)
	if err != nil {
		return nil, fmt.Errorf("connect to the source: %w", err)
	}
	defer src.Close(context.WithoutCancel(ctx))
	dst, err := pgx.Connect(ctx, dstDSN)
	if err != nil {
		return nil, fmt.Errorf("connect to the target: %w", err)
	}
	defer dst.Close(context.WithoutCancel(ctx))
	roots, _, err := tables(ctx, src)
	if err != nil {
		return nil, err
	}
	for _, c := range []*pgx.Conn{src, dst} {
		// Sorting a few hundred MB in memory rather than in temp files halves the time.
		if _, err := c.Exec(ctx, "SET work_mem = '256MB'"); err != nil {
			return nil, err
		}
	}
	var results []TableResult
	for _, table := range roots {
		progress(table)
		res := TableResult{Table: table}
		// pg_partition_tree has no rows for a table that is not partitioned.
		if err := src.QueryRow(ctx, `SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($1::regclass)),
			pg_total_relation_size($1::regclass))::bigint`, table).Scan(&res.Bytes); err != nil {
			return nil, fmt.Errorf("size of %s: %w", table, err)
		}
		q := fmt.Sprintf("COPY (SELECT t::text FROM %s t ORDER BY 1) TO STDOUT", pgx.Identifier(splitName(table)).Sanitize())
		a, b := newDigest(), newDigest()
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			if _, err := src.PgConn().CopyTo(gctx, a, q); err != nil {
				return fmt.Errorf("read %s on the source: %w", table, err)
			}
			return nil
		})
		g.Go(func() error {
			if _, err := dst.PgConn().CopyTo(gctx, b, q); err != nil {
				return fmt.Errorf("read %s on the target: %w", table, err)
			}
			return nil
		})
		if err := g.Wait(); err != nil {
			return nil, err
		}
		res.SourceRows, res.TargetRows = a.lines, b.lines
		res.Equal = a.equal(b)
		results = append(results, res)
	}
	return results, nil
}

// splitName splits "schema.table" into its parts. The demo's names hold no dots.
func splitName(s string) []string {
	schema, name, _ := strings.Cut(s, ".")
	return []string{schema, name}
}

// digest hashes rows written as lines of text, as COPY writes them, and counts them without
// keeping them in memory.
type digest struct {
	h     hash.Hash
	lines int64
}

func newDigest() *digest { return &digest{h: sha256.New()} }

func (d *digest) Write(p []byte) (int, error) {
	d.lines += int64(bytes.Count(p, []byte{'\n'}))
	return d.h.Write(p)
}

// equal reports whether d and o hashed the same bytes.
func (d *digest) equal(o *digest) bool { return bytes.Equal(d.h.Sum(nil), o.h.Sum(nil)) }

// keyQueries find which of the given keys ($1, text[]) are present, one query per table the
// writer touches.
var keyQueries = map[string]string{
	"customers":   `SELECT k FROM unnest($1::text[]) k JOIN customers c ON c.id = k::uuid`,
	"orders":      `SELECT k FROM unnest($1::text[]) k JOIN orders o ON o.id = k::bigint`,
	"order_items": `SELECT k FROM unnest($1::text[]) k JOIN order_items i ON i.order_id = split_part(k, '/', 1)::bigint AND i.line = split_part(k, '/', 2)::int`,
	"events":      `SELECT k FROM unnest($1::text[]) k JOIN events e ON e.id = k::bigint`,
	"documents":   `SELECT k FROM unnest($1::text[]) k JOIN documents d ON d.id = k::bigint`,
}

// missingKeys returns, by table, the keys in live that the database at dsn, side, does not hold.
func missingKeys(ctx context.Context, side, dsn string, live map[string][]string) (map[string][]string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to the %s: %w", side, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	missing := map[string][]string{}
	for table, keys := range live {
		q, ok := keyQueries[table]
		if !ok {
			return nil, fmt.Errorf("no key query for table %s", table)
		}
		rows, err := conn.Query(ctx, q, keys)
		if err != nil {
			return nil, fmt.Errorf("look up %s keys on the %s: %w", table, side, err)
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("look up %s keys on the %s: %w", table, side, err)
		}
		if lost := absent(keys, found); len(lost) > 0 {
			missing[table] = lost
		}
	}
	return missing, nil
}

// absent returns the keys that are not among found, which it sorts.
func absent(keys, found []string) []string {
	slices.Sort(found)
	var out []string
	for _, k := range keys {
		if _, ok := slices.BinarySearch(found, k); !ok {
			out = append(out, k)
		}
	}
	return out
}
