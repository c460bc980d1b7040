package postgres

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// ForeignSchema builds the PostgreSQL schema for tables read from another engine: one schema
// per source database (as pgloader does), each table with its columns typed by tm and its key
// as the primary key (pre), and its secondary indexes (post, to run after the copy). Generated
// columns are left out: their expressions are the source engine's SQL. Prefix, full-text and
// spatial indexes have no exact counterpart and are left out too; skipped lists them.
func ForeignSchema(tables []*schema.Table, indexes map[cdc.TableID][]schema.Index, tm schema.TypeMap) (pre, post, skipped []string, err error) {
	schemas := map[string]bool{}
	for _, t := range tables {
		if !schemas[t.ID.Schema] {
			schemas[t.ID.Schema] = true
			pre = append(pre, "CREATE SCHEMA IF NOT EXISTS "+quote(t.ID.Schema))
		}
		var cols []string
		for _, c := range t.Columns {
			if c.Generated {
				skipped = append(skipped, fmt.Sprintf("generated column %s.%s", t.ID, c.Name))
				continue
			}
			typ, err := tm.Type(t, c)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("table %s: %w", t.ID, err)
			}
			def := quote(c.Name) + " " + typ
			if c.NotNull {
				def += " NOT NULL"
			}
			cols = append(cols, def)
		}
		if len(t.Key) > 0 {
			cols = append(cols, "PRIMARY KEY ("+quoteList(t.Key)+")")
		}
		pre = append(pre, "CREATE TABLE "+ident(t.ID)+" (\n  "+strings.Join(cols, ",\n  ")+"\n)")
		for _, ix := range indexes[t.ID] {
			if ix.Prefix || (ix.Kind != "BTREE" && ix.Kind != "HASH") {
				skipped = append(skipped, fmt.Sprintf("%s index %s on %s", strings.ToLower(ix.Kind), ix.Name, t.ID))
				continue
			}
			if len(t.Key) > 0 && strings.Join(ix.Columns, ",") == strings.Join(t.Key, ",") {
				continue // the key chosen as the primary key
			}
			unique := ""
			if ix.Unique {
				unique = "UNIQUE "
			}
			// Index names are per schema in PostgreSQL, per table in MySQL.
			name := pgx.Identifier{t.ID.Name + "_" + ix.Name}.Sanitize()
			post = append(post, "CREATE "+unique+"INDEX "+name+" ON "+ident(t.ID)+" ("+quoteList(ix.Columns)+")")
		}
	}
	return pre, post, skipped, nil
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}
