package postgres

import (
	"context"
	"fmt"

	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// indexesSQL reads the indexes of the tables named by the parallel arrays $1 (schemas) and $2
// (names). Only key columns are listed: INCLUDE columns carry no ordering or uniqueness, and
// an expression column (attnum 0) reads as NULL, which marks an expression index.
const indexesSQL = `
SELECT n.nspname, c.relname, ic.relname, i.indisunique, upper(am.amname),
       i.indisprimary, i.indisreplident, i.indpred IS NOT NULL, i.indexprs IS NOT NULL,
       i.indisvalid, i.indimmediate,
       (SELECT array_agg(a.attname ORDER BY k.ord)
          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
          LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE k.ord <= i.indnkeyatts)
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
 WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
 ORDER BY 1, 2, 3`

// Indexes reads the secondary indexes of tables from the catalog: name, uniqueness, key
// columns in order, and Kind, the access method upper-cased ("BTREE", "GIN", "GIST", "HASH",
// "BRIN"). Prefix is never set: PostgreSQL has no prefix indexes.
//
// The index that became the table's Key (the primary key, or the replica identity index) is
// left out, since the target creates it as its primary key. A primary key that is not the Key
// (the table identifies rows by a replica identity index) is listed as a unique index, so the
// target keeps its uniqueness. Expression indexes, partial indexes, indexes left invalid by a
// failed CREATE INDEX CONCURRENTLY, and deferrable unique constraints (which allow duplicates
// inside a transaction, and the target would check each row at once) are left out and
// described in skipped, such as "partial index x on s.t".
func Indexes(ctx context.Context, q querier, tables []*schema.Table) (map[cdc.TableID][]schema.Index, []string, error) {
	byID := make(map[cdc.TableID]*schema.Table, len(tables))
	schemas := make([]string, 0, len(tables))
	names := make([]string, 0, len(tables))
	for _, t := range tables {
		byID[t.ID] = t
		schemas = append(schemas, t.ID.Schema)
		names = append(names, t.ID.Name)
	}
	out := map[cdc.TableID][]schema.Index{}
	if len(tables) == 0 {
		return out, nil, nil
	}
	rows, err := q.Query(ctx, indexesSQL, schemas, names)
	if err != nil {
		return nil, nil, fmt.Errorf("read source indexes: %w", err)
	}
	defer rows.Close()
	var skipped []string
	for rows.Next() {
		var (
			id                  cdc.TableID
			ix                  schema.Index
			primary, replident  bool
			partial, expression bool
			valid, immediate    bool
			cols                []*string
		)
		if err := rows.Scan(&id.Schema, &id.Name, &ix.Name, &ix.Unique, &ix.Kind, &primary, &replident,
			&partial, &expression, &valid, &immediate, &cols); err != nil {
			return nil, nil, fmt.Errorf("read source indexes: %w", err)
		}
		t := byID[id]
		switch {
		case t == nil:
			continue
		case primary && t.KeyKind == "primary key", replident && t.KeyKind == "replica identity index":
			continue // the target's primary key
		}
		for _, c := range cols {
			if c == nil {
				expression = true
				break
			}
			ix.Columns = append(ix.Columns, *c)
		}
		switch {
		case !valid:
			skipped = append(skipped, fmt.Sprintf("invalid index %s on %s (a failed CREATE INDEX CONCURRENTLY; drop it or REINDEX it on the source)", ix.Name, id))
		case expression:
			skipped = append(skipped, fmt.Sprintf("expression index %s on %s", ix.Name, id))
		case partial:
			skipped = append(skipped, fmt.Sprintf("partial index %s on %s", ix.Name, id))
		case ix.Unique && !immediate:
			skipped = append(skipped, fmt.Sprintf("deferrable unique index %s on %s", ix.Name, id))
		default:
			out[id] = append(out[id], ix)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read source indexes: %w", err)
	}
	return out, skipped, nil
}
