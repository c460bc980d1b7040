package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/schema"
)

// wholeRowsSQL finds, among the tables named by $1 (schemas) and $2 (names), those whose rows can hold a
// value stored out of line (TOAST) and whose replica identity is not FULL, with the columns that
// can. PostgreSQL moves values out of line only when a row passes about 2 kB
// (TOAST_TUPLE_THRESHOLD), so a table is found when its widest possible row can: a column of
// unbounded length (text, bytea, jsonb, numeric without precision), or bounded ones that add up
// past 1800 bytes, counting 4 bytes per character.
const wholeRowsSQL = `
WITH cols AS (
  SELECT c.oid, n.nspname, c.relname, c.relreplident, a.attname,
         CASE WHEN a.attlen > 0 THEN a.attlen
              WHEN a.atttypid IN ('character varying'::regtype, 'character'::regtype) AND a.atttypmod > 4 THEN (a.atttypmod - 4) * 4 + 4
              WHEN a.atttypid = 'numeric'::regtype AND a.atttypmod > 4 THEN ((a.atttypmod - 4) >> 16) / 2 + 12
              WHEN a.atttypid = 'bit varying'::regtype AND a.atttypmod > 0 THEN a.atttypmod / 8 + 12
         END AS width
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
   WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
     AND c.relkind = 'r' -- a partitioned table logs no rows: its partitions do, each by its own identity
)
SELECT format('%I.%I', nspname, relname),
       coalesce(array_agg(attname ORDER BY attname) FILTER (WHERE width IS NULL), '{}')
  FROM cols
 WHERE relreplident <> 'f'
 GROUP BY oid, nspname, relname
HAVING bool_or(width IS NULL) OR sum(width) > 1800
 ORDER BY nspname, relname`

// WholeRowProblems checks that every change of tables reaches a target that writes whole rows
// (MySQL) with every column: an UPDATE that leaves an out-of-line value unchanged does not send
// it, unless the table's replica identity is FULL, which logs the whole old row.
func WholeRowProblems(ctx context.Context, conn *pgx.Conn, tables []*schema.Table) ([]schema.Problem, error) {
	schemas, names := make([]string, len(tables)), make([]string, len(tables))
	for i, t := range tables {
		schemas[i], names[i] = t.ID.Schema, t.ID.Name
	}
	rows, err := conn.Query(ctx, wholeRowsSQL, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("read the columns that can be stored out of line: %w", err)
	}
	var probs []schema.Problem
	var ident string // quoted as it needs to be
	var unbounded []string
	_, err = pgx.ForEachRow(rows, []any{&ident, &unbounded}, func() error {
		why := "its bounded columns can together pass 2 kB"
		if len(unbounded) > 0 {
			why = "column(s) " + strings.Join(unbounded, ", ") + " can be stored out of line (TOAST)"
		}
		probs = append(probs, schema.Problem{Check: "replica identity", Message: fmt.Sprintf(
			"%s: %s, and an UPDATE that leaves such a value unchanged does not send it, while MySQL is written whole rows; run ALTER TABLE %s REPLICA IDENTITY FULL on the source before starting (updates and deletes then log the whole old row, which costs WAL)",
			ident, why, ident)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the columns that can be stored out of line: %w", err)
	}
	return probs, nil
}
