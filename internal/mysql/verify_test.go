package mysql

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
)

func TestKeysWhere(t *testing.T) {
	id := &schema.Column{Name: "id", DataType: "bigint"}
	name := &schema.Column{Name: "na`me", DataType: "varchar"}
	bin := &schema.Column{Name: "b", DataType: "binary"}
	for _, tt := range []struct {
		name string
		cols []*schema.Column
		keys [][]string
		want string
	}{
		{"one column", []*schema.Column{id}, [][]string{{"1"}, {"-2"}}, "`id` IN (1, -2)"},
		{"composite", []*schema.Column{name, bin}, [][]string{{"a'b", "\x00\x01"}, {"", ""}},
			"(`na``me` = 'a\\'b' AND `b` = X'0001') OR (`na``me` = '' AND `b` = X'')"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := keysWhere(tt.cols, tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("keysWhere = %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := keysWhere([]*schema.Column{id}, [][]string{{"1; DROP TABLE x"}}); !errors.Is(err, ErrBadNumber) {
		t.Errorf("keysWhere with a bad number: %v, want ErrBadNumber", err)
	}
	if _, err := keysWhere([]*schema.Column{id}, [][]string{{"1", "2"}}); err == nil {
		t.Error("keysWhere with a key too long: no error")
	}
}

func TestKeyFromPostgres(t *testing.T) {
	tbl := &schema.Table{ID: cdc.TableID{Schema: "db", Name: "t"}, Key: []string{"ts", "b", "n", "dt", "tm", "yr", "f", "d"}, Columns: []schema.Column{
		{Name: "b", DataType: "binary"}, {Name: "ts", DataType: "timestamp", Scale: 6}, {Name: "n", DataType: "int"},
		{Name: "dt", DataType: "datetime"}, {Name: "tm", DataType: "time", Scale: 3}, {Name: "yr", DataType: "year"},
		{Name: "f", DataType: "float"}, {Name: "d", DataType: "double"},
	}}
	got, err := KeyFromPostgres(tbl, []string{"2024-01-01 10:00:00.5+00", `\x00ff`, "7", "2024-01-01 10:00:00", "-00:00:00.5", "0", "3.4028235e+38", "1e+22"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"2024-01-01 10:00:00.500000", "\x00\xff", "7", "2024-01-01 10:00:00", "-00:00:00.500", "0000", "3.4028235e+38", "1e+22"}; !reflect.DeepEqual(got, want) {
		t.Errorf("KeyFromPostgres = %q, want %q", got, want)
	}
	if got, err := KeyFromPostgres(tbl, []string{"2024-01-01 10:00:00+00", `\x`, "7", "2024-01-01 10:00:00", "838:59:59", "1999", "1.5", "0.1"}); err != nil ||
		!reflect.DeepEqual(got, []string{"2024-01-01 10:00:00.000000", "", "7", "2024-01-01 10:00:00", "838:59:59.000", "1999", "1.5", "0.1"}) {
		t.Errorf("KeyFromPostgres = %q, %v", got, err)
	}
	for _, bad := range [][]string{
		{"2024-01-01 10:00:00+02", `\x00`, "1", "x", "x", "1", "1", "1"},
		{"2024-01-01 10:00:00+00", `00`, "1", "x", "x", "1", "1", "1"},
		{"2024-01-01 10:00:00+00", `\xzz`, "1", "x", "x", "1", "1", "1"},
		{"2024-01-01 10:00:00+00", `\x00`, "1", "x", "x", "1", "one", "1"},
		{"2024-01-01 10:00:00+00"},
	} {
		if _, err := KeyFromPostgres(tbl, bad); err == nil {
			t.Errorf("KeyFromPostgres(%q): no error", bad)
		}
	}
}

// verifyFixture is a MariaDB database with two tables for VerifyRows.
func verifyFixture(t *testing.T) (*VerifyRows, map[string]*schema.Table, *testenv.MariaDB) {
	t.Helper()
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	const db = "verifyrows"
	if err := m.CreateDB(ctx, db); err != nil {
		t.Fatal(err)
	}
	c := dialTestDB(t, m, db)
	for _, q := range []string{
		// A case-insensitive collation in a composite key, binary values with trailing zero bytes,
		// the canonical forms that differ from what the server prints, a generated column.
		"CREATE TABLE w (name VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, n INT NOT NULL, " +
			"bin BINARY(4), f FLOAT, b BIT(8), yr YEAR, g INT AS (n * 2) VIRTUAL, js JSON, PRIMARY KEY (name, n))",
		"INSERT INTO w (name, n, bin, f, b, yr, js) VALUES ('ABC', 1, X'01', 3.4028234663852886e38, b'101', 0, '{\"a\":1}'), " +
			"('abd', 1, X'0100', 0.1, 0, 2000, NULL), ('b', 2, NULL, NULL, NULL, NULL, '[]'), ('b', 1, X'00000000', -0.5, 255, 1999, '{}'), " +
			"('😀', 1, X'FF', 1, 1, 2155, 'null')",
		"CREATE TABLE bk (id VARBINARY(16) NOT NULL PRIMARY KEY, v INT)",
		"INSERT INTO bk VALUES (X'00', 1), (X'0000', 2), (X'FF00', 3)",
	} {
		if _, err := c.Execute(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	tables, err := Tables(c, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseDSN(m.DSN(db), m.Password())
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifyRows(a)
	t.Cleanup(v.Close)
	byName := map[string]*schema.Table{}
	for _, tb := range tables {
		byName[tb.ID.Name] = tb
	}
	return v, byName, m
}

func TestVerifyRowsRead(t *testing.T) {
	v, tables, _ := verifyFixture(t)
	ctx := context.Background()
	w := tables["w"]

	// Keys and Rows page through the table in the server's key order.
	var keys [][]string
	var after []string
	for {
		page, err := v.Keys(ctx, w, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, page...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1]
	}
	want := [][]string{{"ABC", "1"}, {"abd", "1"}, {"b", "1"}, {"b", "2"}, {"😀", "1"}}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("Keys paged = %q, want %q", keys, want)
	}
	rows, err := v.Rows(ctx, w, []string{"abd", "1"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || string(rows[0][0].Data) != "b" || string(rows[0][1].Data) != "1" || string(rows[1][1].Data) != "2" {
		t.Errorf("Rows after (abd,1) = %q", rows)
	}
	// The canonical form: BINARY padded, FLOAT's shortest text, BIT as an integer, YEAR 0.
	if got, want := values(rows[0]), []string{"b", "1", "\x00\x00\x00\x00", "-0.5", "255", "1999", "{}"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row (b,1) = %q, want %q", got, want)
	}

	// Lookup and Exists: aligned, nil where absent. A key names the row with the same bytes:
	// 'abc' is not the key of 'ABC', though the collation finds that row for it.
	lookup := [][]string{{"b", "2"}, {"zzz", "1"}, {"abc", "1"}, {"ABC", "1"}, {"b", "3"}, {"abd", "1"}}
	got, err := v.Lookup(ctx, w, lookup)
	if err != nil {
		t.Fatal(err)
	}
	present := []bool{true, false, false, true, false, true}
	for i, row := range got {
		if (row != nil) != present[i] {
			t.Errorf("Lookup %q: row %q, want present=%v", lookup[i], row, present[i])
		}
	}
	if got, want := values(got[0]), []string{"b", "2", "NULL", "NULL", "NULL", "NULL", "[]"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Lookup (b,2) = %q, want %q", got, want)
	}
	if alone, err := v.Exists(ctx, w, [][]string{{"abc", "1"}}); err != nil || alone[0] {
		t.Errorf("Exists (abc,1) alone = %v, %v; want false", alone, err)
	}
	ok, err := v.Exists(ctx, w, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ok, present) {
		t.Errorf("Exists = %v, want %v", ok, present)
	}

	// Binary keys that differ only in trailing zero bytes are distinct keys.
	bk := tables["bk"]
	ok, err = v.Exists(ctx, bk, [][]string{{"\x00"}, {"\x00\x00"}, {"\x00\x00\x00"}, {"\xff\x00"}, {"\xff"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true, false, true, false}; !reflect.DeepEqual(ok, want) {
		t.Errorf("Exists of binary keys = %v, want %v", ok, want)
	}
}

func TestVerifyRowsCompare(t *testing.T) {
	v, tables, _ := verifyFixture(t)
	ctx := context.Background()
	w := tables["w"]
	all, err := v.Rows(ctx, w, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	diff, err := v.Compare(ctx, w, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) != 0 {
		t.Errorf("Compare of the table's own rows = %v, want none", diff)
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
		all[0],                                // equal
		set(all[0], 0, "abc"),                 // the key in another case: another key
		set(all[1], 2, "\x01\x00\x00\x01"),    // one bit of a binary value
		set(all[2], 2, "\x00\x00\x00"),        // a trailing zero byte short
		set(all[3], 6, "[ ]"),                 // a space in JSON
		set(all[3], 1, "3"),                   // no such key
		set(all[4], 5, "NULL"),                // NULL against a value
		set(all[1], 3, "0.10000000000000001"), // FLOAT text that is not canonical
	}
	diff, err = v.Compare(ctx, w, rows)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{1: "", 2: "bin", 3: "bin", 4: "js", 5: "", 6: "yr", 7: "f"}
	if !reflect.DeepEqual(diff, want) {
		t.Errorf("Compare = %v, want %v", diff, want)
	}
	if _, err := v.Compare(ctx, w, [][]cdc.Value{all[0][:3]}); err == nil || !strings.Contains(err.Error(), "values for") {
		t.Errorf("Compare of a short row: %v", err)
	}
}

func values(row []cdc.Value) []string {
	out := make([]string, len(row))
	for i, v := range row {
		out[i] = string(v.Data)
		if v.Kind == cdc.ValueNull {
			out[i] = "NULL"
		}
	}
	return out
}
