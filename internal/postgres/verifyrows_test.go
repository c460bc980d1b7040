package postgres

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

func TestKeyFromMySQL(t *testing.T) {
	tbl := &schema.Table{ID: cdc.TableID{Schema: "s", Name: "t"}, Key: []string{"b", "id", "on"}, Columns: []schema.Column{
		{Name: "id", Type: "bigint"}, {Name: "b", Type: "bytea"}, {Name: "on", Type: "boolean"},
	}}
	got, err := KeyFromMySQL(tbl, []string{"\x00\xff", "7", "1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`\x00ff`, "7", "1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("KeyFromMySQL = %q, want %q", got, want)
	}
	if _, err := KeyFromMySQL(tbl, []string{"x"}); err == nil {
		t.Error("KeyFromMySQL of a short key: no error")
	}
}

// verifyRowsFixture is a database with a table of the types whose comparison needs care, read
// through VerifyRows.
func verifyRowsFixture(t *testing.T) (*VerifyRows, *schema.Table, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	conn, dsn := testDB(t, "verifyrows", `
SET TimeZone = 'America/New_York';
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema".w (
  b bytea, at timestamptz(6), n numeric(20,4), j json, jb jsonb, iv interval(0), c character(5), bits bit(8),
  arr text[], f real, "t" text, twice int GENERATED ALWAYS AS (length(c) * 2) STORED,
  PRIMARY KEY (b, at));
INSERT INTO "My Schema".w (b, at, n, j, jb, iv, c, bits, arr, f, "t") VALUES
  ('\x00', '2024-01-01 00:00:00+00', 1.5, '{"a":1}', '{"a": 1}', '24:00:00', 'ab', B'00000101', '{x,NULL}', 3.4028235e38, 'a'),
  ('\x0000', '2024-01-01 00:00:00+00', -0.0001, '[1, 2]', '[]', '-838:59:59', 'abcde', B'11111111', '{}', -0.5, NULL),
  ('\x0000', '2024-01-01 00:00:00.000001+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'x'),
  ('\xff', '1999-12-31 19:00:00-05', 99999999999999.9999, 'null', 'null', '1 day', ' ', B'00000000', '{"a b"}', 0.1, '');`)
	tables, err := Tables(ctx, conn, func(s, _ string) bool { return s == "My Schema" })
	if err != nil || len(tables) != 1 {
		t.Fatalf("Tables = %v, %v", tables, err)
	}
	v, err := NewVerifyRows(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v, tables[0], conn
}

func TestVerifyRowsRead(t *testing.T) {
	v, w, _ := verifyRowsFixture(t)
	ctx := context.Background()

	var keys [][]string
	var after []string
	for {
		page, err := v.Keys(ctx, w, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, page...)
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1]
	}
	want := [][]string{
		{`\x00`, "2024-01-01 00:00:00+00"},
		{`\x0000`, "2024-01-01 00:00:00+00"},
		{`\x0000`, "2024-01-01 00:00:00.000001+00"},
		{`\xff`, "2000-01-01 00:00:00+00"},
	}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("Keys paged = %q, want %q", keys, want)
	}
	rows, err := v.Rows(ctx, w, want[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := texts(rows[0]), []string{`\x0000`, "2024-01-01 00:00:00+00", "-0.0001", "[1, 2]", "[]", "-838:59:59", "abcde",
		"11111111", "{}", "-0.5", "NULL"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Rows after the first key = %q, want %q", got, want)
	}

	// Keys are cast to the key columns' types: another offset names the same instant.
	lookup := [][]string{{`\xff`, "2000-01-01 01:00:00+01"}, {`\x00`, "2024-01-01 00:00:00"}, {`\x01`, "2024-01-01 00:00:00"}, {`\x0000`, "2024-01-01 00:00:00.000001"}}
	got, err := v.Lookup(ctx, w, lookup)
	if err != nil {
		t.Fatal(err)
	}
	present := []bool{true, true, false, true}
	for i := range got {
		if (got[i] != nil) != present[i] {
			t.Errorf("Lookup %q = %q, want present=%v", lookup[i], got[i], present[i])
		}
	}
	if got[0] != nil && string(got[0][10].Data) != "" {
		t.Errorf("Lookup of the last row = %q", got[0])
	}
	ok, err := v.Exists(ctx, w, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ok, present) {
		t.Errorf("Exists = %v, want %v", ok, present)
	}
	if ok, err := v.Exists(ctx, w, nil); err != nil || len(ok) != 0 {
		t.Errorf("Exists of no keys = %v, %v", ok, err)
	}
}

func TestVerifyRowsCompare(t *testing.T) {
	v, w, _ := verifyRowsFixture(t)
	ctx := context.Background()
	all, err := v.Rows(ctx, w, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff, err := v.Compare(ctx, w, all); err != nil || len(diff) != 0 {
		t.Fatalf("Compare of the table's own rows = %v, %v; want none", diff, err)
	}
	set := func(row []cdc.Value, col int, val string) []cdc.Value {
		row = slices.Clone(row)
		if val == "NULL" {
			row[col] = cdc.Value{Kind: cdc.ValueNull}
		} else {
			row[col] = cdc.Value{Kind: cdc.ValueText, Data: []byte(val)}
		}
		return row
	}
	rows := [][]cdc.Value{
		set(all[0], 1, "2023-12-31 19:00:00-05"), // the same instant in another zone: equal
		set(all[0], 2, "1.50000"),                // the same number with more zeros: equal
		set(all[0], 6, "ab"),                     // character(n) compares without its padding: equal
		set(all[0], 4, `{"a":1}`),                // jsonb normalizes: equal
		set(all[0], 3, `{"a": 1}`),               // json keeps its text: a space differs
		set(all[0], 2, "1.50001"),                // a digit the column's scale would round away
		set(all[0], 5, "1 day"),                  // interval: 1 day is not 24:00:00
		set(all[0], 0, `\x01`),                   // one bit of the key: no such row
		set(all[1], 1, "2024-01-01 00:00:00.000002+00"),
		set(all[1], 7, "0000101"),      // a bit string one bit shorter
		set(all[1], 8, "{NULL}"),       // an array
		set(all[1], 9, "-0.50000006"),  // a real one ulp away
		set(all[2], 10, "NULL"),        // NULL against a value
		set(all[2], 2, "0"),            // a value against NULL
		set(all[3], 10, "NULL"),        // NULL against the empty string
		set(all[3], 3, `null`),         // equal
		set(all[3], 6, "  "),           // equal: padding
		set(all[3], 5, "24:00:00"),     // 24:00:00 is not 1 day
		set(all[3], 2, "1e14"),         // 100000000000000 is not 99999999999999.9999
		set(all[3], 1, "2000-01-01Z"),  // the same instant
		set(all[3], 9, "0.1000000015"), // the same real
	}
	diff, err := v.Compare(ctx, w, rows)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{4: "j", 5: "n", 6: "iv", 7: "", 8: "", 9: "bits", 10: "arr", 11: "f", 12: "t", 13: "n", 14: "t", 17: "iv", 18: "n"}
	if !reflect.DeepEqual(diff, want) {
		t.Errorf("Compare = %v, want %v", diff, want)
	}
}

func texts(row []cdc.Value) []string {
	out := make([]string, len(row))
	for i, v := range row {
		out[i] = string(v.Data)
		if v.Kind == cdc.ValueNull {
			out[i] = "NULL"
		}
	}
	return out
}
