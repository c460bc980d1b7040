package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
)

// rel builds a relation of public.<name>; a column name ending in "*" is a key column.
func rel(name string, cols ...string) *cdc.Relation {
	r := &cdc.Relation{Table: cdc.TableID{Schema: "public", Name: name}}
	for _, c := range cols {
		key := strings.HasSuffix(c, "*")
		r.Columns = append(r.Columns, cdc.Column{Name: strings.TrimSuffix(c, "*"), Key: key})
	}
	return r
}

func text(s string) cdc.Value { return cdc.Value{Kind: cdc.ValueText, Data: []byte(s)} }

var (
	nul  = cdc.Value{Kind: cdc.ValueNull}
	same = cdc.Value{Kind: cdc.ValueUnchanged}
)

// args builds statement arguments from strings; nil means SQL NULL.
func args(vals ...any) [][]byte {
	out := make([][]byte, len(vals))
	for i, v := range vals {
		if v != nil {
			out[i] = []byte(v.(string))
		}
	}
	return out
}

func TestStatements(t *testing.T) {
	items := rel("items", "id*", "sku", "body")
	pair := rel("pairs", "a*", "b*")
	tenant := rel("orders", "note", "tenant*", "id*")
	const (
		upsertItems = `INSERT INTO "public"."items" ("id", "sku", "body") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) ON CONFLICT ("id") DO UPDATE SET "sku" = EXCLUDED."sku", "body" = EXCLUDED."body"`
		deleteItems = `DELETE FROM "public"."items" WHERE "id" = $1`
	)
	type stmt struct {
		sql  string
		args [][]byte
	}
	for _, tt := range []struct {
		name string
		c    *cdc.Change
		want []stmt
	}{
		{
			name: "insert is an upsert on the key",
			c:    &cdc.Change{Op: cdc.OpInsert, Relation: items, New: []cdc.Value{text("1"), nul, text("")}},
			want: []stmt{{upsertItems, args("1", nil, "")}},
		},
		{
			name: "insert of an all-key table does nothing on conflict",
			c:    &cdc.Change{Op: cdc.OpInsert, Relation: pair, New: []cdc.Value{text("x"), text("y")}},
			want: []stmt{{`INSERT INTO "public"."pairs" ("a", "b") OVERRIDING SYSTEM VALUE VALUES ($1, $2) ON CONFLICT ("a", "b") DO NOTHING`, args("x", "y")}},
		},
		{
			name: "insert with a composite key after other columns",
			c:    &cdc.Change{Op: cdc.OpInsert, Relation: tenant, New: []cdc.Value{text("n"), text("t1"), text("9")}},
			want: []stmt{{`INSERT INTO "public"."orders" ("note", "tenant", "id") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3) ON CONFLICT ("tenant", "id") DO UPDATE SET "note" = EXCLUDED."note"`, args("n", "t1", "9")}},
		},
		{
			name: "update of a complete row is an upsert",
			c:    &cdc.Change{Op: cdc.OpUpdate, Relation: items, New: []cdc.Value{text("1"), text("s"), text("b")}},
			want: []stmt{{upsertItems, args("1", "s", "b")}},
		},
		{
			name: "update with an old row but the same key is an upsert",
			c: &cdc.Change{Op: cdc.OpUpdate, Relation: items,
				Old: []cdc.Value{text("1"), text("old"), text("b")}, New: []cdc.Value{text("1"), text("s"), text("b")}},
			want: []stmt{{upsertItems, args("1", "s", "b")}},
		},
		{
			name: "update that moves the key deletes the old row first",
			c: &cdc.Change{Op: cdc.OpUpdate, Relation: items,
				Old: []cdc.Value{text("1"), nul, nul}, New: []cdc.Value{text("2"), text("s"), nul}},
			want: []stmt{{deleteItems, args("1")}, {upsertItems, args("2", "s", nil)}},
		},
		{
			name: "update with unchanged toast sets only the sent columns",
			c:    &cdc.Change{Op: cdc.OpUpdate, Relation: items, New: []cdc.Value{text("1"), text("s"), same}},
			want: []stmt{{`UPDATE "public"."items" SET "sku" = $1 WHERE "id" = $2`, args("s", "1")}},
		},
		{
			name: "update with unchanged toast sends null as null",
			c:    &cdc.Change{Op: cdc.OpUpdate, Relation: items, New: []cdc.Value{text("1"), nul, same}},
			want: []stmt{{`UPDATE "public"."items" SET "sku" = $1 WHERE "id" = $2`, args(nil, "1")}},
		},
		{
			name: "update with key change and unchanged toast moves the row in place",
			c: &cdc.Change{Op: cdc.OpUpdate, Relation: items,
				Old: []cdc.Value{text("1"), nul, nul}, New: []cdc.Value{text("2"), text("s"), same}},
			want: []stmt{{`UPDATE "public"."items" SET "id" = $1, "sku" = $2 WHERE "id" = $3`, args("2", "s", "1")}},
		},
		{
			// A TOASTed key column comes as the old key even when it did not change, and as
			// unchanged in the new row: the row stays where it is.
			name: "update with a toasted key that did not change",
			c: &cdc.Change{Op: cdc.OpUpdate, Relation: items,
				Old: []cdc.Value{text("k"), nul, nul}, New: []cdc.Value{same, text("s"), same}},
			want: []stmt{{`UPDATE "public"."items" SET "sku" = $1 WHERE "id" = $2`, args("s", "k")}},
		},
		{
			name: "update with composite key change and unchanged toast",
			c: &cdc.Change{Op: cdc.OpUpdate, Relation: tenant,
				Old: []cdc.Value{nul, text("t1"), text("9")}, New: []cdc.Value{same, text("t2"), text("9")}},
			want: []stmt{{`UPDATE "public"."orders" SET "tenant" = $1, "id" = $2 WHERE "tenant" = $3 AND "id" = $4`, args("t2", "9", "t1", "9")}},
		},
		{
			name: "delete by key",
			c:    &cdc.Change{Op: cdc.OpDelete, Relation: items, Old: []cdc.Value{text("7"), nul, nul}},
			want: []stmt{{deleteItems, args("7")}},
		},
		{
			name: "delete with a full old row uses only the key",
			c:    &cdc.Change{Op: cdc.OpDelete, Relation: tenant, Old: []cdc.Value{text("n"), text("t1"), text("9")}},
			want: []stmt{{`DELETE FROM "public"."orders" WHERE "tenant" = $1 AND "id" = $2`, args("t1", "9")}},
		},
		{
			name: "truncate of several tables is one statement",
			c: &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{items,
				{Table: cdc.TableID{Schema: "Sales", Name: `odd"name`}}}},
			want: []stmt{{`TRUNCATE "public"."items", "Sales"."odd""name"`, nil}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := statements(tt.c)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(got), len(tt.want); got != want {
				t.Fatalf("statements = %d, want %d: %+v", got, want, tt.want)
			}
			for i := range got {
				if got, want := got[i].sql, tt.want[i].sql; got != want {
					t.Errorf("statement %d:\n got %s\nwant %s", i, got, want)
				}
				if got, want := fmtArgs(got[i].args), fmtArgs(tt.want[i].args); got != want {
					t.Errorf("statement %d args = %s, want %s", i, got, want)
				}
			}
		})
	}
}

// fmtArgs renders arguments so that NULL (nil) and the empty string differ.
func fmtArgs(a [][]byte) string {
	parts := make([]string, len(a))
	for i, b := range a {
		if b == nil {
			parts[i] = "NULL"
		} else {
			parts[i] = fmt.Sprintf("%q", b)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func TestStatementsPassBytesThrough(t *testing.T) {
	// Values go to the server in the source's text form, byte for byte.
	raw := []byte("1.100000000000000000001\x00\xff\\x\n'")
	items := rel("items", "id*", "val")
	got, err := statements(&cdc.Change{Op: cdc.OpInsert, Relation: items, New: []cdc.Value{text("1"), {Kind: cdc.ValueText, Data: raw}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0].args[1], raw) {
		t.Errorf("arg = %q, want %q", got[0].args[1], raw)
	}
	// An empty text value with nil Data is the empty string, not NULL.
	got, _ = statements(&cdc.Change{Op: cdc.OpInsert, Relation: items, New: []cdc.Value{text("1"), {Kind: cdc.ValueText}}})
	if got[0].args[1] == nil {
		t.Error("empty text value became NULL")
	}
}

func TestStatementsQuoteNames(t *testing.T) {
	r := &cdc.Relation{Table: cdc.TableID{Schema: "my schema", Name: "Order"}, Columns: []cdc.Column{
		{Name: `we"ird`, Key: true}, {Name: "select"},
	}}
	got, err := statements(&cdc.Change{Op: cdc.OpInsert, Relation: r, New: []cdc.Value{text("1"), text("2")}})
	if err != nil {
		t.Fatal(err)
	}
	want := `INSERT INTO "my schema"."Order" ("we""ird", "select") OVERRIDING SYSTEM VALUE VALUES ($1, $2) ON CONFLICT ("we""ird") DO UPDATE SET "select" = EXCLUDED."select"`
	if got := got[0].sql; got != want {
		t.Errorf("sql:\n got %s\nwant %s", got, want)
	}
}

func TestStatementsUpdateOnlyUnchanged(t *testing.T) {
	items := rel("docs", "id*", "body")
	got, err := statements(&cdc.Change{Op: cdc.OpUpdate, Relation: items, New: []cdc.Value{text("1"), same}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		if strings.Contains(s.sql, "SET  WHERE") {
			t.Errorf("invalid SQL: %s", s.sql)
		}
	}
}

func TestStatementsErrors(t *testing.T) {
	items := rel("items", "id*", "sku")
	for _, tt := range []struct {
		name string
		c    *cdc.Change
	}{
		{"delete without old key", &cdc.Change{Op: cdc.OpDelete, Relation: items}},
		{"unknown op", &cdc.Change{Op: 99, Relation: items}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := statements(tt.c); err == nil {
				t.Errorf("statements = %+v, want an error", got)
			}
		})
	}
}

func TestKeyOf(t *testing.T) {
	items := rel("items", "id*", "body")
	tenant := rel("orders", "note", "tenant*", "id*")
	long := strings.Repeat("k", 70)
	for _, tt := range []struct {
		name string
		c    *cdc.Change
		want string
	}{
		{"insert", &cdc.Change{Op: cdc.OpInsert, Relation: items, New: []cdc.Value{text("1"), text("secret body")}}, "id=1"},
		{"update uses the old key", &cdc.Change{Op: cdc.OpUpdate, Relation: items,
			Old: []cdc.Value{text("1"), nul}, New: []cdc.Value{text("2"), text("b")}}, "id=1"},
		{"delete", &cdc.Change{Op: cdc.OpDelete, Relation: items, Old: []cdc.Value{text("3"), nul}}, "id=3"},
		{"composite", &cdc.Change{Op: cdc.OpInsert, Relation: tenant, New: []cdc.Value{text("x"), text("t"), text("9")}}, "tenant=t, id=9"},
		{"null key", &cdc.Change{Op: cdc.OpInsert, Relation: items, New: []cdc.Value{nul, text("b")}}, "id=NULL"},
		{"long key is cut", &cdc.Change{Op: cdc.OpInsert, Relation: items, New: []cdc.Value{text(long), nul}}, "id=" + long[:64] + "…"},
		{"truncate", &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{items}}, "truncate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := keyOf(tt.c), tt.want; got != want {
				t.Errorf("keyOf = %q, want %q", got, want)
			}
		})
	}
}

func TestKeyOfCutsOnRuneBoundary(t *testing.T) {
	items := rel("items", "id*")
	key := strings.Repeat("a", 63) + "é"
	got := keyOf(&cdc.Change{Op: cdc.OpInsert, Relation: items, New: []cdc.Value{text(key)}})
	if !utf8.ValidString(got) {
		t.Errorf("keyOf = %q, not valid UTF-8", got)
	}
}

func TestTableOf(t *testing.T) {
	a, b := rel("a"), rel("b")
	if got, want := tableOf(&cdc.Change{Op: cdc.OpInsert, Relation: a}), "public.a"; got != want {
		t.Errorf("tableOf = %q, want %q", got, want)
	}
	if got, want := tableOf(&cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{a, b}}), "public.a, public.b"; got != want {
		t.Errorf("tableOf truncate = %q, want %q", got, want)
	}
}

func TestClassify(t *testing.T) {
	pg := func(code string) error { return &pgconn.PgError{Code: code, Message: "m"} }
	for _, tt := range []struct {
		name      string
		err       error
		transient bool
		state     string
	}{
		{"deadlock", pg("40P01"), true, "40P01"},
		{"serialization failure", pg("40001"), true, "40001"},
		{"connection failure", pg("08006"), true, "08006"},
		{"admin shutdown", pg("57P01"), true, "57P01"},
		{"too many connections", pg("53300"), true, "53300"},
		{"lock not available", pg("55P03"), true, "55P03"},
		{"query cancelled", pg("57014"), true, "57014"},
		{"wrapped deadlock", fmt.Errorf("apply batch: %w", pg("40P01")), true, "40P01"},
		{"unique violation", pg("23505"), false, "23505"},
		{"invalid text representation", pg("22P02"), false, "22P02"},
		{"undefined table", pg("42P01"), false, "42P01"},
		{"wrapped unique violation", fmt.Errorf("apply batch: %w", pg("23505")), false, "23505"},
		{"network", io.ErrUnexpectedEOF, true, "none"},
		{"deadline", context.DeadlineExceeded, true, "none"},
		{"already transient", &apply.TransientError{Err: pg("23505")}, true, "23505"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if got, want := apply.IsTransient(got), tt.transient; got != want {
				t.Errorf("transient = %t, want %t", got, want)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classify(%v) = %v, which no longer wraps the cause", tt.err, got)
			}
			if got, want := sqlState(got), tt.state; got != want {
				t.Errorf("sqlState = %q, want %q", got, want)
			}
		})
	}
	if err := classify(nil); err != nil {
		t.Errorf("classify(nil) = %v", err)
	}
	if te := (&apply.TransientError{Err: io.EOF}); classify(te) != error(te) {
		t.Error("classify wrapped a transient error again")
	}
}
