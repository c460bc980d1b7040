package postgres

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// querier is what catalog reads need: a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Match decides whether a table takes part in the migration.
type Match func(schema, table string) bool

const tablesSQL = `
SELECT n.nspname, c.relname, c.relkind = 'p', c.relispartition,
       rn.nspname, r.relname,
       greatest(c.reltuples, 0)::bigint, pg_relation_size(c.oid),
       coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
       coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = c.oid AND i.indisreplident), '{}'),
       c.relreplident::text
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)
  JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_migrated')
   AND n.nspname !~ '^pg_(toast|temp)'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2`

const columnsSQL = `
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated <> '',
       pg_get_serial_sequence(format('%I.%I', $1::text, $2::text), a.attname) IS NOT NULL,
       CASE WHEN a.attgenerated = '' THEN coalesce(pg_get_expr(d.adbin, d.adrelid), '') ELSE '' END
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`

// Tables reads the tables that match, with their columns, keys and size estimates. A partition
// matches when its root does, so a partitioned table always moves whole.
func Tables(ctx context.Context, q querier, match Match) ([]*schema.Table, error) {
	rows, err := q.Query(ctx, tablesSQL)
	if err != nil {
		return nil, fmt.Errorf("read source catalog: %w", err)
	}
	var tables []*schema.Table
	for rows.Next() {
		t := &schema.Table{}
		var isPartition bool
		var pk, ri []string
		var identity string
		if err := rows.Scan(&t.ID.Schema, &t.ID.Name, &t.Partitioned, &isPartition, &t.Root.Schema, &t.Root.Name,
			&t.EstimatedRows, &t.Bytes, &pk, &ri, &identity); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read source catalog: %w", err)
		}
		if match != nil && !match(t.Root.Schema, t.Root.Name) {
			continue
		}
		// pgoutput sends the replica identity as the old key, so apply must key rows by it.
		switch {
		case identity == "i" && len(ri) > 0:
			t.Key, t.KeyKind = ri, "replica identity index"
		case identity == "n":
			// REPLICA IDENTITY NOTHING: updates and deletes carry no key; preflight refuses.
		case len(pk) > 0:
			t.Key, t.KeyKind = pk, "primary key"
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read source catalog: %w", err)
	}
	for _, t := range tables {
		if t.Columns, err = columns(ctx, q, t.ID); err != nil {
			return nil, err
		}
	}
	return tables, nil
}

func columns(ctx context.Context, q querier, id cdc.TableID) ([]schema.Column, error) {
	rows, err := q.Query(ctx, columnsSQL, id.Schema, id.Name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", id, err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (schema.Column, error) {
		var c schema.Column
		err := r.Scan(&c.Name, &c.Type, &c.NotNull, &c.Generated, &c.AutoIncrement, &c.Default)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", id, err)
	}
	return cols, nil
}

// Roots returns the tables that are not partitions: what the publication names.
func Roots(tables []*schema.Table) []*schema.Table {
	var roots []*schema.Table
	for _, t := range tables {
		if t.IsRoot() {
			roots = append(roots, t)
		}
	}
	return roots
}

// KeyMap gives the stream decoder the key columns per streamed (root) table.
func KeyMap(tables []*schema.Table) map[cdc.TableID][]string {
	keys := map[cdc.TableID][]string{}
	for _, t := range tables {
		if t.IsRoot() {
			keys[t.ID] = t.Key
		}
	}
	return keys
}

// ByName indexes tables by ID.
func ByName(tables []*schema.Table) map[cdc.TableID]*schema.Table {
	m := make(map[cdc.TableID]*schema.Table, len(tables))
	for _, t := range tables {
		m[t.ID] = t
	}
	return m
}

// Schemas lists the distinct schemas of the tables, sorted.
func Schemas(tables []*schema.Table) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range tables {
		if !seen[t.ID.Schema] {
			seen[t.ID.Schema] = true
			out = append(out, t.ID.Schema)
		}
	}
	sort.Strings(out)
	return out
}

// ExtraUniqueKeys lists, per table, the unique indexes besides the primary key (unique
// constraints included).
func ExtraUniqueKeys(ctx context.Context, q querier) (map[cdc.TableID][]string, error) {
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname, i.relname
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indisunique AND NOT x.indisprimary AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("read the unique indexes: %w", err)
	}
	defer rows.Close()
	out := map[cdc.TableID][]string{}
	for rows.Next() {
		var id cdc.TableID
		var index string
		if err := rows.Scan(&id.Schema, &id.Name, &index); err != nil {
			return nil, err
		}
		out[id] = append(out[id], index)
	}
	return out, rows.Err()
}
