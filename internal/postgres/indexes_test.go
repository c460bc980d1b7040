package postgres

import (
	"context"
	"reflect"
	"sort"
	"testing"

	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// TestIndexes reads secondary indexes from a real catalog: the key's index is left out, a
// primary key that is not the key is kept as a unique index, INCLUDE columns are dropped, and
// expression, partial, invalid and deferrable indexes are skipped with a description.
func TestIndexes(t *testing.T) {
	ctx := context.Background()
	conn, _ := testDB(t, "indexes", `
CREATE SCHEMA shop;
CREATE TABLE shop.orders (
  id bigint PRIMARY KEY, customer int NOT NULL, placed date, email text, doc jsonb, code int, note text,
  CONSTRAINT code_once UNIQUE (code) DEFERRABLE INITIALLY DEFERRED);
CREATE INDEX by_customer ON shop.orders (customer, placed DESC);
CREATE UNIQUE INDEX email_once ON shop.orders (email) INCLUDE (note);
CREATE INDEX recent ON shop.orders (placed) WHERE placed > '2020-01-01';
CREATE INDEX lower_email ON shop.orders (lower(email));
CREATE INDEX mixed ON shop.orders (customer, lower(email));
CREATE INDEX doc_gin ON shop.orders USING gin (doc);
CREATE INDEX email_hash ON shop.orders USING hash (email);
CREATE TABLE shop.keyed (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL);
CREATE UNIQUE INDEX keyed_ab ON shop.keyed (b, a);
ALTER TABLE shop.keyed REPLICA IDENTITY USING INDEX keyed_ab;
CREATE TABLE shop.bare (v int);
CREATE TABLE shop.ignored (id int PRIMARY KEY, v int);
CREATE INDEX ignored_v ON shop.ignored (v);
CREATE TABLE shop.dup (id int PRIMARY KEY, v int);
INSERT INTO shop.dup VALUES (1, 1), (2, 1);`)
	// An index that fails to build concurrently stays behind, invalid.
	if _, err := conn.Exec(ctx, `CREATE UNIQUE INDEX CONCURRENTLY dup_v ON shop.dup (v)`); err == nil {
		t.Fatal("CREATE UNIQUE INDEX CONCURRENTLY on duplicates succeeded")
	}
	tables, err := Tables(ctx, conn, func(s, n string) bool { return s == "shop" && n != "ignored" })
	if err != nil {
		t.Fatal(err)
	}
	got, skipped, err := Indexes(ctx, conn, tables)
	if err != nil {
		t.Fatal(err)
	}
	id := func(name string) cdc.TableID { return cdc.TableID{Schema: "shop", Name: name} }
	want := map[cdc.TableID][]schema.Index{
		id("orders"): {
			{Name: "by_customer", Columns: []string{"customer", "placed"}, Kind: "BTREE"},
			{Name: "doc_gin", Columns: []string{"doc"}, Kind: "GIN"},
			{Name: "email_hash", Columns: []string{"email"}, Kind: "HASH"},
			{Name: "email_once", Unique: true, Columns: []string{"email"}, Kind: "BTREE"},
		},
		id("keyed"): {
			{Name: "keyed_pkey", Unique: true, Columns: []string{"id"}, Kind: "BTREE"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Indexes =\n%+v\nwant\n%+v", got, want)
	}
	sort.Strings(skipped)
	wantSkipped := []string{
		"deferrable unique index code_once on shop.orders",
		"expression index lower_email on shop.orders",
		"expression index mixed on shop.orders",
		"invalid index dup_v on shop.dup (a failed CREATE INDEX CONCURRENTLY; drop it or REINDEX it on the source)",
		"partial index recent on shop.orders",
	}
	if !reflect.DeepEqual(skipped, wantSkipped) {
		t.Errorf("skipped =\n%q\nwant\n%q", skipped, wantSkipped)
	}

	if got, skipped, err := Indexes(ctx, conn, nil); err != nil || len(got) != 0 || len(skipped) != 0 {
		t.Errorf("Indexes(no tables) = %v, %v, %v", got, skipped, err)
	}
}
