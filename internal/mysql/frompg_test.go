package mysql

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
)

var pgToMariaDB = schema.TypeMap{Dir: schema.DirPostgresToMySQL, Flavor: schema.FlavorMariaDB}

// convertOne converts one value of a column of PostgreSQL type typ, with an optional override.
func convertOne(t *testing.T, typ, override, in string) (string, error) {
	t.Helper()
	tbl := &schema.Table{ID: cdc.TableID{Schema: "s", Name: "t"}, Columns: []schema.Column{{Name: "c", Type: typ}}}
	tm := pgToMariaDB
	if override != "" {
		tm.Overrides = map[string]string{"s.t.c": override}
	}
	conv, err := NewPGConverter(tbl, tm)
	if err != nil {
		t.Fatalf("NewPGConverter(%s): %v", typ, err)
	}
	out, err := conv.Row([]cdc.Value{{Data: []byte(in)}})
	if err != nil {
		return "", err
	}
	return string(out[0].Data), nil
}

func TestPGConverterValues(t *testing.T) {
	var allBytes []byte
	for i := range 256 {
		allBytes = append(allBytes, byte(i))
	}
	hexAll := `\x` + strings.ToLower(strings.TrimSpace(string(bytesToHex(allBytes))))
	for _, tt := range []struct {
		typ, override, in, want string
		err                     error // a sentinel the error wraps
	}{
		{typ: "boolean", in: "t", want: "1"},
		{typ: "boolean", in: "f", want: "0"},
		{typ: "boolean", in: "true", want: "1"}, // boolean::text
		{typ: "boolean", in: "false", want: "0"},
		{typ: "boolean", in: "T", err: ErrPGMalformed},
		{typ: "boolean", in: "", err: ErrPGMalformed},
		{typ: "boolean", override: "varchar(5)", in: "t", want: "t"},
		{typ: "boolean", override: "bit(1)", in: "t", want: "1"},

		{typ: "smallint", in: "-32768", want: "-32768"},
		{typ: "integer", in: "2147483647", want: "2147483647"},
		{typ: "bigint", in: "-9223372036854775808", want: "-9223372036854775808"},

		{typ: "bytea", in: `\x`, want: ""},
		{typ: "bytea", in: `\x00ff0a5c27`, want: "\x00\xff\n\\'"},
		{typ: "bytea", in: `\xABcd`, want: "\xab\xcd"},
		{typ: "bytea", in: hexAll, want: string(allBytes)},
		{typ: "bytea", in: `\x0`, err: ErrPGMalformed},
		{typ: "bytea", in: `\xzz`, err: ErrPGMalformed},
		// bytea_output = escape
		{typ: "bytea", in: `\000\001\\'\377 A~\177\200`, want: "\x00\x01\\'\xff A~\x7f\x80"},
		{typ: "bytea", in: `plain`, want: "plain"},
		{typ: "bytea", in: `\`, err: ErrPGMalformed},
		{typ: "bytea", in: `\400`, err: ErrPGMalformed},
		{typ: "bytea", in: `\12`, err: ErrPGMalformed},
		// A key overridden to varbinary is still decoded; to a character type it keeps the text.
		{typ: "bytea", override: "varbinary(255)", in: `\x6869`, want: "hi"},
		{typ: "bytea", override: "varchar(600)", in: `\x6869`, want: `\x6869`},

		{typ: "timestamp(6) with time zone", in: "2024-01-01 10:00:00.123456+05:30", want: "2024-01-01 04:30:00.123456"},
		{typ: "timestamp with time zone", in: "2024-01-01 10:00:00+00", want: "2024-01-01 10:00:00.000000"},
		{typ: "timestamp with time zone", in: "2024-01-01 02:00:00.5-03:30", want: "2024-01-01 05:30:00.500000"},
		{typ: "timestamp with time zone", in: "2024-03-01 00:00:00-01", want: "2024-03-01 01:00:00.000000"},
		{typ: "timestamp with time zone", in: "2024-03-01 00:30:00+01", want: "2024-02-29 23:30:00.000000"},
		{typ: "timestamp with time zone", in: "1800-01-01 05:53:28+05:53:28", want: "1800-01-01 00:00:00.000000"},
		{typ: "timestamp with time zone", in: "10000-01-01 05:30:00+05:30", err: ErrOutOfRange},
		{typ: "timestamp with time zone", in: "10000-01-01 04:30:00+05:30", want: "9999-12-31 23:00:00.000000"},
		{typ: "timestamp with time zone", in: "1000-01-01 00:00:00+00:01", err: ErrOutOfRange},
		{typ: "timestamp with time zone", in: "0999-12-31 23:59:00-00:01", want: "1000-01-01 00:00:00.000000"},
		{typ: "timestamp with time zone", in: "0044-03-15 15:53:28+05:53:28 BC", err: ErrOutOfRange},
		{typ: "timestamp with time zone", in: "infinity", err: ErrNotFinite},
		{typ: "timestamp with time zone", in: "-infinity", err: ErrNotFinite},
		{typ: "timestamp with time zone", in: "2024-01-01 10:00:00", err: ErrPGMalformed},
		{typ: "timestamp with time zone", in: "2024-01-01 10:00:00+5", err: ErrPGMalformed},
		{typ: "timestamp with time zone", in: "2024-01-01 10:00:00+05:3", err: ErrPGMalformed},
		{typ: "timestamp with time zone", in: "2024-01-01 10:00:00+05:30:00:00", err: ErrPGMalformed},
		{typ: "timestamp with time zone", in: "2024-01-01T10:00:00+00", err: ErrPGMalformed},
		{typ: "timestamp(0) with time zone", in: "2024-01-01 10:00:00+00", want: "2024-01-01 10:00:00"},
		{typ: "timestamp(3) with time zone", in: "2024-01-01 10:00:00.12+00", want: "2024-01-01 10:00:00.120"},
		// An override with fewer digits cuts zeros only.
		{typ: "timestamp with time zone", override: "datetime(3)", in: "2024-01-01 10:00:00.123000+00", want: "2024-01-01 10:00:00.123"},
		{typ: "timestamp with time zone", override: "datetime(3)", in: "2024-01-01 10:00:00.1234+00", err: ErrTooPrecise},
		{typ: "timestamp with time zone", override: "datetime", in: "2024-01-01 10:00:00.5+00", err: ErrTooPrecise},
		{typ: "timestamp with time zone", override: "varchar(40)", in: "2024-01-01 10:00:00+05:30", want: "2024-01-01 10:00:00+05:30"},

		{typ: "timestamp without time zone", in: "2024-01-01 10:00:00", want: "2024-01-01 10:00:00.000000"},
		{typ: "timestamp(6) without time zone", in: "9999-12-31 23:59:59.999999", want: "9999-12-31 23:59:59.999999"},
		{typ: "timestamp(2) without time zone", in: "1000-01-01 00:00:00.1", want: "1000-01-01 00:00:00.10"},
		{typ: "timestamp without time zone", in: "0999-12-31 23:59:59", err: ErrOutOfRange},
		{typ: "timestamp without time zone", in: "10000-01-01 00:00:00", err: ErrOutOfRange},
		{typ: "timestamp without time zone", in: "0044-03-15 10:00:00 BC", err: ErrOutOfRange},
		{typ: "timestamp without time zone", in: "infinity", err: ErrNotFinite},
		{typ: "timestamp without time zone", in: "2024-01-01 10:00:00+00", err: ErrPGMalformed},
		{typ: "timestamp without time zone", in: "2024-01-01 10:00", err: ErrPGMalformed},

		{typ: "date", in: "2024-02-29", want: "2024-02-29"},
		{typ: "date", in: "1000-01-01", want: "1000-01-01"},
		{typ: "date", in: "9999-12-31", want: "9999-12-31"},
		{typ: "date", in: "0999-12-31", err: ErrOutOfRange},
		{typ: "date", in: "10000-01-01", err: ErrOutOfRange},
		{typ: "date", in: "0044-03-15 BC", err: ErrOutOfRange},
		{typ: "date", in: "infinity", err: ErrNotFinite},
		{typ: "date", in: "-infinity", err: ErrNotFinite},
		{typ: "date", in: "2024-1-1", err: ErrPGMalformed},

		{typ: "time without time zone", in: "10:00:00", want: "10:00:00.000000"},
		{typ: "time(6) without time zone", in: "23:59:59.999999", want: "23:59:59.999999"},
		{typ: "time without time zone", in: "24:00:00", want: "24:00:00.000000"},
		{typ: "time(0) without time zone", in: "00:00:00", want: "00:00:00"},
		{typ: "time(3) without time zone", in: "10:00:00.5", want: "10:00:00.500"},
		{typ: "time without time zone", override: "time(3)", in: "10:00:00.0005", err: ErrTooPrecise},
		{typ: "time without time zone", in: "10:00", err: ErrPGMalformed},
		{typ: "time without time zone", in: "10:00:00+00", err: ErrPGMalformed},

		{typ: "numeric(20,4)", in: "1.0000", want: "1.0000"},
		{typ: "numeric(20,4)", in: "-9999999999999999.9999", want: "-9999999999999999.9999"},
		{typ: "numeric(20,4)", in: "0.5", want: "0.5000"},
		{typ: "numeric(20,4)", in: "-0.0001", want: "-0.0001"},
		{typ: "numeric(20,4)", in: "7", want: "7.0000"},
		{typ: "numeric(20,4)", in: "-0.0000", want: "0.0000"},
		{typ: "numeric(20,4)", in: "1.234500", want: "1.2345"},
		{typ: "numeric(20,4)", in: "1.23456", err: ErrTooPrecise},
		{typ: "numeric(20,4)", in: "10000000000000000", err: ErrOutOfRange},
		{typ: "numeric(20,4)", in: "00012.5", want: "12.5000"},
		{typ: "numeric(20,4)", in: "NaN", err: ErrNotFinite},
		{typ: "numeric(20,4)", in: "Infinity", err: ErrNotFinite},
		{typ: "numeric(20,4)", in: "-Infinity", err: ErrNotFinite},
		{typ: "numeric(20,4)", in: "1e5", err: ErrPGMalformed},
		{typ: "numeric(20,4)", in: ".5", err: ErrPGMalformed},
		{typ: "numeric(20,4)", in: "-", err: ErrPGMalformed},
		{typ: "numeric(20,4)", in: "", err: ErrPGMalformed},
		{typ: "numeric(10,0)", in: "-1234567890", want: "-1234567890"},
		{typ: "numeric(10,0)", in: "12345678901", err: ErrOutOfRange},
		{typ: "numeric(65,30)", in: "99999999999999999999999999999999999.999999999999999999999999999999",
			want: "99999999999999999999999999999999999.999999999999999999999999999999"},
		{typ: "numeric(65,30)", in: "0.000000000000000000000000000001", want: "0.000000000000000000000000000001"},
		// Unconstrained numeric with the override the type map suggests.
		{typ: "numeric", override: "decimal(65,30)", in: "1.5", want: "1.500000000000000000000000000000"},
		{typ: "numeric", override: "decimal(65,30)", in: "1.0000000000000000000000000000001", err: ErrTooPrecise},
		{typ: "numeric", override: "decimal", in: "12", want: "12"},
		{typ: "numeric", override: "varchar(100)", in: "NaN", want: "NaN"},

		{typ: "real", in: "0.1", want: "0.1"},
		{typ: "real", in: "3.4028235e+38", want: "3.4028235e+38"},
		{typ: "real", in: "1e-45", want: "1e-45"},
		{typ: "real", in: "-1.5", want: "-1.5"},
		{typ: "real", in: "1.23456794e+08", want: "1.2345679e+08"},
		{typ: "real", in: "NaN", err: ErrNotFinite},
		{typ: "real", in: "Infinity", err: ErrNotFinite},
		{typ: "real", in: "-Infinity", err: ErrNotFinite},
		{typ: "real", in: "one", err: ErrPGMalformed},
		{typ: "real", override: "double", in: "0.1", want: "0.10000000149011612"},
		{typ: "double precision", in: "0.1", want: "0.1"},
		{typ: "double precision", in: "1e+20", want: "1e+20"},
		{typ: "double precision", in: "123456789012345.6", want: "1.234567890123456e+14"},
		{typ: "double precision", in: "1.7976931348623157e+308", want: "1.7976931348623157e+308"},
		{typ: "double precision", in: "5e-324", want: "5e-324"},
		{typ: "double precision", in: "-0", want: "0"},
		{typ: "real", in: "-0", want: "0"},
		{typ: "double precision", in: "NaN", err: ErrNotFinite},
		{typ: "double precision", in: "-Infinity", err: ErrNotFinite},

		{typ: "text", in: "a\n'\\\"b ", want: "a\n'\\\"b "},
		{typ: "character varying(20)", in: "héllo 🎉 ", want: "héllo 🎉 "},
		{typ: "character(5)", in: "ab   ", want: "ab"},
		{typ: "character(5)", in: " a b ", want: " a b"},
		{typ: "character(5)", in: "     ", want: ""},
		{typ: "character(300)", override: "varchar(300)", in: "ab ", want: "ab "},
		{typ: "uuid", in: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{typ: "json", in: `{"b": 1, "a" : [1,2]}`, want: `{"b": 1, "a" : [1,2]}`},
		{typ: "jsonb", in: `{"a": [1, 2], "b": 1}`, want: `{"a": [1, 2], "b": 1}`},
		{typ: "interval", override: "varchar(64)", in: "1 day 02:00:00", want: "1 day 02:00:00"},
		{typ: "integer[]", override: "longtext", in: "{1,2}", want: "{1,2}"},
	} {
		name := tt.typ + "/" + tt.in
		if tt.override != "" {
			name = tt.typ + " as " + tt.override + "/" + tt.in
		}
		t.Run(name, func(t *testing.T) {
			got, err := convertOne(t, tt.typ, tt.override, tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %q, %v; want an error wrapping %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func bytesToHex(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

func TestPGConverterRow(t *testing.T) {
	tbl := &schema.Table{
		ID: cdc.TableID{Schema: "shop", Name: "orders"},
		Columns: []schema.Column{
			{Name: "id", Type: "bigint"},
			{Name: "paid", Type: "boolean"},
			{Name: "twice", Type: "bigint", Generated: true},
			{Name: "at", Type: "timestamp with time zone"},
			{Name: "code", Type: "character(4)"},
			{Name: "doc", Type: "text"},
		},
	}
	conv, err := NewPGConverter(tbl, pgToMariaDB)
	if err != nil {
		t.Fatal(err)
	}
	text := func(s string) cdc.Value { return cdc.Value{Data: []byte(s)} }
	row := []cdc.Value{text("7"), text("t"), text("2024-05-01 12:00:00+02"), text("ab  "), {Kind: cdc.ValueUnchanged}}
	before := cloneValues(row)
	got, err := conv.Row(row)
	if err != nil {
		t.Fatal(err)
	}
	want := []cdc.Value{text("7"), text("1"), text("2024-05-01 10:00:00.000000"), text("ab"), {Kind: cdc.ValueUnchanged}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Row = %q, want %q", got, want)
	}
	if !reflect.DeepEqual(row, before) {
		t.Errorf("Row modified its input: %q, was %q", row, before)
	}
	// A converted value must not share bytes with another, nor be overwritten by a later append.
	got[1].Data = append(got[1].Data, 'x')
	if string(got[2].Data) != "2024-05-01 10:00:00.000000" {
		t.Errorf("appending to one value changed the next: %q", got[2].Data)
	}

	nulls := []cdc.Value{text("8"), {Kind: cdc.ValueNull}, {Kind: cdc.ValueNull}, {Kind: cdc.ValueNull}, {Kind: cdc.ValueNull}}
	if got, err := conv.Row(nulls); err != nil || !reflect.DeepEqual(got, nulls) {
		t.Errorf("Row(nulls) = %q, %v", got, err)
	}

	if _, err := conv.Row(row[:4]); err == nil {
		t.Error("Row accepted a row with a value missing")
	}

	long := "infinity" + strings.Repeat("x", 100)
	_, err = conv.Row([]cdc.Value{text("9"), text("f"), text(long), {Kind: cdc.ValueNull}, {Kind: cdc.ValueNull}})
	var ve *PGValueError
	if !errors.As(err, &ve) || !errors.Is(err, ErrNotFinite) && !errors.Is(err, ErrPGMalformed) {
		t.Fatalf("Row(bad timestamp) error = %v, want a *PGValueError", err)
	}
	msg := err.Error()
	for _, part := range []string{"shop.orders", "column at", "timestamp with time zone", "datetime(6)", `"infinityxxxx`} {
		if !strings.Contains(msg, part) {
			t.Errorf("error %q does not mention %q", msg, part)
		}
	}
	if strings.Contains(msg, long) {
		t.Errorf("error %q quotes the whole value", msg)
	}
	if ve.Table != tbl.ID || ve.Column != "at" || len(ve.Value) > 40 {
		t.Errorf("PGValueError = %+v", ve)
	}

	if _, err := NewPGConverter(&schema.Table{ID: tbl.ID, Columns: []schema.Column{{Name: "span", Type: "interval"}}}, pgToMariaDB); err == nil {
		t.Error("NewPGConverter accepted a column the type map refuses")
	}
}

func cloneValues(vs []cdc.Value) []cdc.Value {
	out := make([]cdc.Value, len(vs))
	for i, v := range vs {
		out[i] = cdc.Value{Kind: v.Kind, Data: bytes.Clone(v.Data)}
	}
	return out
}

// TestPGConverterAllocs keeps Row to its result slice and one buffer for the converted values.
func TestPGConverterAllocs(t *testing.T) {
	tbl := &schema.Table{
		ID: cdc.TableID{Schema: "s", Name: "t"},
		Columns: []schema.Column{
			{Name: "id", Type: "bigint"}, {Name: "b", Type: "boolean"}, {Name: "n", Type: "numeric(20,4)"},
			{Name: "r", Type: "real"}, {Name: "d", Type: "double precision"}, {Name: "at", Type: "timestamp with time zone"},
			{Name: "ts", Type: "timestamp without time zone"}, {Name: "day", Type: "date"}, {Name: "tm", Type: "time without time zone"},
			{Name: "raw", Type: "bytea"}, {Name: "c", Type: "character(3)"}, {Name: "s", Type: "text"},
		},
	}
	conv, err := NewPGConverter(tbl, pgToMariaDB)
	if err != nil {
		t.Fatal(err)
	}
	var row []cdc.Value
	for _, s := range []string{"1", "t", "12.5", "0.1", "2.5e-10", "2024-01-01 10:00:00.5+05:30", "2024-01-01 10:00:00",
		"2024-01-01", "10:00:00", `\x0102`, "ab ", "text"} {
		row = append(row, cdc.Value{Data: []byte(s)})
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := conv.Row(row); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("Row allocates %v times per row, want at most 2", allocs)
	}
}

func TestForeignTables(t *testing.T) {
	orders := &schema.Table{
		ID: cdc.TableID{Schema: "shop", Name: "orders"}, Root: cdc.TableID{Schema: "shop", Name: "orders"},
		Columns: []schema.Column{
			{Name: "id", Type: "bigint", NotNull: true, AutoIncrement: true},
			{Name: "region", Type: "character varying(8)", NotNull: true},
			{Name: "total", Type: "numeric(12,2)"},
			{Name: "twice", Type: "numeric(13,2)", Generated: true},
			{Name: "note", Type: "text"},
			{Name: "doc", Type: "jsonb"},
			{Name: "raw", Type: "bytea"},
			{Name: "code", Type: "uuid"},
			{Name: "wide", Type: "character varying(1000)"},
			{Name: "span", Type: "interval"},
		},
		Key: []string{"id", "region"},
	}
	part := &schema.Table{ID: cdc.TableID{Schema: "shop", Name: "orders_2024"}, Root: orders.ID, Columns: orders.Columns, Key: orders.Key}
	bare := &schema.Table{ID: cdc.TableID{Schema: "audit", Name: "log"}, Columns: []schema.Column{{Name: "line", Type: "text"}, {Name: "n", Type: "integer", NotNull: true, AutoIncrement: true}}}
	// Two serial columns, neither leading the key: the first gets AUTO_INCREMENT and an index
	// of its own, named unlike the table's.
	// A serial column that can be NULL is never AUTO_INCREMENT: MySQL would give a NULL an id.
	multi := &schema.Table{ID: cdc.TableID{Schema: "audit", Name: "multi"}, Key: []string{"id"}, Columns: []schema.Column{
		{Name: "id", Type: "integer", NotNull: true}, {Name: "s0", Type: "integer", AutoIncrement: true},
		{Name: "s1", Type: "integer", NotNull: true, AutoIncrement: true},
		{Name: "s2", Type: "bigint", NotNull: true, AutoIncrement: true}}}
	indexes := map[cdc.TableID][]schema.Index{
		orders.ID: {
			{Name: "by_total", Columns: []string{"total", "id"}, Kind: "BTREE"},
			{Name: "code_once", Unique: true, Columns: []string{"code"}, Kind: "BTREE"},
			{Name: "orders_id_region", Unique: true, Columns: []string{"id", "region"}, Kind: "BTREE"},
			{Name: "by_note", Columns: []string{"note"}, Kind: "BTREE"},
			{Name: "by_doc", Columns: []string{"doc"}, Kind: "GIN"},
			{Name: "by_raw", Columns: []string{"raw"}, Kind: "BTREE"},
			{Name: "by_twice", Columns: []string{"twice"}, Kind: "BTREE"},
			{Name: "by_wide", Columns: []string{"wide"}, Kind: "BTREE"},
			{Name: "by_code_hash", Columns: []string{"code"}, Kind: "HASH"},
			{Name: "primary", Columns: []string{"region"}, Kind: "BTREE"},
		},
		part.ID:  {{Name: "part_ix", Columns: []string{"total"}, Kind: "BTREE"}},
		multi.ID: {{Name: "s1_auto_increment", Columns: []string{"s2"}, Kind: "BTREE"}},
	}
	tm := pgToMariaDB
	tm.Overrides = map[string]string{"shop.orders.span": "varchar(64)"}
	pre, post, skipped, err := ForeignTables("dst", []*schema.Table{orders, part, bare, multi}, indexes, tm)
	if err != nil {
		t.Fatal(err)
	}
	wantPre := []string{
		"CREATE TABLE `dst`.`orders` (\n" +
			"  `id` bigint NOT NULL AUTO_INCREMENT,\n" +
			"  `region` varchar(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,\n" +
			"  `total` decimal(12,2),\n" +
			"  `note` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin,\n" +
			"  `doc` json,\n" +
			"  `raw` longblob,\n" +
			"  `code` char(36) CHARACTER SET ascii COLLATE ascii_bin,\n" +
			"  `wide` varchar(1000) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin,\n" +
			"  `span` varchar(64),\n" +
			"  PRIMARY KEY (`id`, `region`)\n" +
			") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE `dst`.`log` (\n" +
			"  `line` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin,\n" +
			"  `n` int NOT NULL AUTO_INCREMENT,\n" +
			"  KEY `n_auto_increment` (`n`)\n" +
			") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE `dst`.`multi` (\n" +
			"  `id` int NOT NULL,\n" +
			"  `s0` int,\n" +
			"  `s1` int NOT NULL AUTO_INCREMENT,\n" +
			"  `s2` bigint NOT NULL,\n" +
			"  PRIMARY KEY (`id`),\n" +
			"  KEY `s1_auto_increment_2` (`s1`)\n" +
			") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
	}
	wantPost := []string{
		"ALTER TABLE `dst`.`orders` ADD INDEX `by_total` (`total`, `id`), ADD UNIQUE INDEX `code_once` (`code`), ADD INDEX `orders_primary` (`region`)",
		"ALTER TABLE `dst`.`multi` ADD INDEX `s1_auto_increment` (`s2`)",
	}
	wantSkipped := []string{
		"generated column shop.orders.twice",
		"btree index by_note on shop.orders: MySQL indexes column note (longtext) only by a prefix; override its type with varchar(n) or varbinary(n) under tables.types in the config to keep the index",
		"gin index by_doc on shop.orders: MySQL has no gin index",
		"btree index by_raw on shop.orders: MySQL indexes column raw (longblob) only by a prefix; override its type with varchar(n) or varbinary(n) under tables.types in the config to keep the index",
		"btree index by_twice on shop.orders: column twice is generated, and generated columns are not created on MySQL",
		"btree index by_wide on shop.orders: its character columns take up to 4000 bytes, more than InnoDB's 3072-byte index limit",
		"hash index by_code_hash on shop.orders: MySQL has no hash index",
		"partition shop.orders_2024 (its rows go to the table of shop.orders)",
		"the ids of audit.multi.s0 (identity or serial): the column can be NULL, and MySQL writes a new id where an AUTO_INCREMENT column is given NULL",
		"the ids of audit.multi.s2 (identity or serial): MySQL allows one AUTO_INCREMENT column per table, and it is s1; the target hands out no ids for this one, so the application must give them",
	}
	if !reflect.DeepEqual(pre, wantPre) {
		t.Errorf("pre =\n%s\nwant\n%s", strings.Join(pre, "\n"), strings.Join(wantPre, "\n"))
	}
	if !reflect.DeepEqual(post, wantPost) {
		t.Errorf("post =\n%q\nwant\n%q", post, wantPost)
	}
	if !reflect.DeepEqual(skipped, wantSkipped) {
		t.Errorf("skipped =\n%s\nwant\n%s", strings.Join(skipped, "\n"), strings.Join(wantSkipped, "\n"))
	}

	// Without the override the interval column is refused, naming the table.
	if _, _, _, err := ForeignTables("dst", []*schema.Table{orders}, nil, pgToMariaDB); err == nil || !strings.Contains(err.Error(), "shop.orders") {
		t.Errorf("ForeignTables with an unmappable column: %v", err)
	}
	// Two schemas' tables of one name would collide in one database.
	other := &schema.Table{ID: cdc.TableID{Schema: "audit", Name: "orders"}, Columns: bare.Columns}
	if _, _, _, err := ForeignTables("dst", []*schema.Table{bare, other, orders}, nil, tm); err == nil || !strings.Contains(err.Error(), "`dst`.`orders`") {
		t.Errorf("ForeignTables with colliding names: %v", err)
	}
	// A generated key column cannot be created.
	genKey := &schema.Table{ID: cdc.TableID{Schema: "s", Name: "g"}, Columns: []schema.Column{{Name: "a", Type: "integer", Generated: true}}, Key: []string{"a"}}
	if _, _, _, err := ForeignTables("dst", []*schema.Table{genKey}, nil, tm); err == nil {
		t.Error("ForeignTables accepted a generated key column")
	}
}

func TestMySQLTypeShape(t *testing.T) {
	for _, tt := range []struct {
		in   string
		base string
		args []int
	}{
		{"decimal(20,4)", "decimal", []int{20, 4}},
		{"datetime(6)", "datetime", []int{6}},
		{"datetime", "datetime", nil},
		{"char(36) CHARACTER SET ascii COLLATE ascii_bin", "char", []int{36}},
		{"VARCHAR (10)", "varchar", []int{10}},
		{"double precision", "double", nil},
		{"enum('a','b')", "enum", nil},
	} {
		base, args := mysqlTypeShape(tt.in)
		if base != tt.base || !reflect.DeepEqual(args, tt.args) {
			t.Errorf("mysqlTypeShape(%q) = %q, %v; want %q, %v", tt.in, base, args, tt.base, tt.args)
		}
	}
}

// FuzzPGConverter feeds arbitrary text to every conversion: none may panic, and a converted
// value converts to itself again where the canonical form is also valid input.
func FuzzPGConverter(f *testing.F) {
	for _, s := range []string{"t", `\x00ff`, `\001\\`, "2024-01-01 10:00:00.5+05:30", "2024-01-01 10:00:00",
		"2024-01-01", "24:00:00", "-12.5000", "NaN", "1e+20", "ab  ", "0999-12-31 23:59:00-00:01 BC"} {
		f.Add(s)
	}
	var convs []*PGConverter
	types := []string{"boolean", "bytea", "timestamp(3) with time zone", "timestamp(0) without time zone", "date",
		"time(6) without time zone", "numeric(12,4)", "real", "double precision", "character(4)"}
	for _, typ := range types {
		tbl := &schema.Table{ID: cdc.TableID{Schema: "s", Name: "t"}, Columns: []schema.Column{{Name: "c", Type: typ}}}
		c, err := NewPGConverter(tbl, pgToMariaDB)
		if err != nil {
			f.Fatal(err)
		}
		convs = append(convs, c)
	}
	idempotent := map[string]bool{"timestamp(0) without time zone": true, "date": true, "time(6) without time zone": true,
		"numeric(12,4)": true, "double precision": true, "character(4)": true}
	f.Fuzz(func(t *testing.T, s string) {
		for i, c := range convs {
			out, err := c.Row([]cdc.Value{{Data: []byte(s)}})
			if err != nil || !idempotent[types[i]] {
				continue
			}
			again, err := c.Row(out)
			if err != nil || !bytes.Equal(again[0].Data, out[0].Data) {
				t.Errorf("%s: %q converts to %q, which converts to %q, %v", types[i], s, out[0].Data, again[0].Data, err)
			}
		}
	})
}

// TestPostgresToMariaDB carries a PostgreSQL table of every common mappable type into MariaDB:
// the schema by ForeignTables, the rows as PostgreSQL prints them in a non-UTC session
// converted by PGConverter and written as this package's literals, then read back in the
// canonical form, which must equal the converted values, and a few values written out by hand.
func TestPostgresToMariaDB(t *testing.T) {
	pg := testenv.RequirePostgres(t)
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	dsn, err := pg.CreateDB(ctx, "frompg")
	if err != nil {
		t.Fatal(err)
	}
	src, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	_, err = src.Exec(ctx, `
SET TimeZone = 'UTC';
CREATE SCHEMA shop;
CREATE TABLE shop.items (
  id bigint PRIMARY KEY, si smallint, i integer, n20 numeric(20,4), n65 numeric(65,30),
  r real, d double precision, b boolean, t text, vc varchar(20), c5 char(5), raw bytea,
  dt date, ts timestamp(6), ts3 timestamp(3), tstz timestamptz(6), tm time(6), tm0 time(0),
  u uuid, j json, jb jsonb,
  twice bigint GENERATED ALWAYS AS (i::bigint * 2) STORED,
  code varchar(40) NOT NULL);
CREATE INDEX items_by_day ON shop.items (dt, i);
CREATE UNIQUE INDEX items_code ON shop.items (code);
CREATE INDEX items_recent ON shop.items (dt) WHERE dt > '2020-01-01';
CREATE INDEX items_text ON shop.items (t);
CREATE INDEX items_doc ON shop.items USING gin (jb);
INSERT INTO shop.items (id, si, i, n20, n65, r, d, b, t, vc, c5, raw, dt, ts, ts3, tstz, tm, tm0, u, j, jb, code) VALUES
 (9223372036854775807, 32767, 2147483647, 9999999999999999.9999,
  99999999999999999999999999999999999.999999999999999999999999999999,
  3.4028233e38, 1.7976931348623157e308, true, E'multi\nline ''quoted'' \\ back\ttab', 'héllo 🎉 wörld', 'ab',
  (SELECT string_agg(set_byte('\x00'::bytea, 0, n), ''::bytea ORDER BY n) FROM generate_series(0, 255) n),
  '9999-12-31', '9999-12-31 23:59:59.999999', '2024-02-29 12:00:00.123', '2024-06-30 23:59:59.999999-12:00',
  '24:00:00', '23:59:59', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a" : [1,2], "a": 3}',
  '{"z": {"y": [true, null, 1.50]}, "a": "é"}', 'A-1'),
 (-9223372036854775808, -32768, -2147483648, -9999999999999999.9999, -0.000000000000000000000000000001,
  1e-45, 5e-324, false, '', '', '', '', '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00',
  '1000-01-01 00:00:00+00', '00:00:00', '00:00:00', '00000000-0000-0000-0000-000000000000', '[]', '{}', 'B-2'),
 (1, 0, 0, 0.5, 1.25, '-0', '-0', true, 'x', 'trailing  ', ' a b', '\x00', '2024-02-29',
  '2024-01-01 10:00:00.5', '2024-01-01 10:00:00', '2024-07-01 12:00:00.000001 America/New_York',
  '12:34:56.5', '12:34:56', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '"str"', 'null', 'C-3'),
 (3, 42, -42, 123.45, -1.5, 0.1, 0.1, false, 'ü', 'x', 'abcde', '\x5c27', '1969-07-20',
  '1969-07-20 20:17:40', '1969-07-20 20:17:40.9', '1969-07-20 20:17:40+00', '20:17:40.000001', '20:17:40',
  '01234567-89ab-cdef-0123-456789abcdef', '{"k": "v\u00e9"}', '[1, "a", {"b": null}]', 'E-5'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, 'D-4');`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := postgres.Tables(ctx, src, func(s, _ string) bool { return s == "shop" })
	if err != nil || len(tables) != 1 {
		t.Fatalf("postgres.Tables = %v, %v", tables, err)
	}
	pgTable := tables[0]
	indexes, ixSkipped, err := postgres.Indexes(ctx, src, tables)
	if err != nil {
		t.Fatal(err)
	}
	const db = "frompg"
	pre, post, skipped, err := ForeignTables(db, tables, indexes, pgToMariaDB)
	if err != nil {
		t.Fatal(err)
	}
	gotSkipped := append(ixSkipped, skipped...)
	sort.Strings(gotSkipped)
	wantSkipped := []string{
		"btree index items_text on shop.items: MySQL indexes column t (longtext) only by a prefix; override its type with varchar(n) or varbinary(n) under tables.types in the config to keep the index",
		"generated column shop.items.twice",
		"gin index items_doc on shop.items: MySQL has no gin index",
		"partial index items_recent on shop.items",
	}
	if !reflect.DeepEqual(gotSkipped, wantSkipped) {
		t.Errorf("skipped =\n%s\nwant\n%s", strings.Join(gotSkipped, "\n"), strings.Join(wantSkipped, "\n"))
	}

	// Read the rows as the snapshot does, in a session whose TimeZone is not UTC; and once more
	// with bytea_output = escape, which must convert to the same values.
	conv, err := NewPGConverter(pgTable, pgToMariaDB)
	if err != nil {
		t.Fatal(err)
	}
	readPG := func(setup string) [][]cdc.Value {
		t.Helper()
		if _, err := src.Exec(ctx, setup); err != nil {
			t.Fatal(err)
		}
		var exprs []string
		for _, name := range pgTable.CopyColumns() {
			exprs = append(exprs, pgx.Identifier{name}.Sanitize()+"::text")
		}
		rows, err := src.Query(ctx, "SELECT "+strings.Join(exprs, ", ")+" FROM shop.items ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out [][]cdc.Value
		for rows.Next() {
			texts := make([]*string, len(exprs))
			ptrs := make([]any, len(exprs))
			for i := range texts {
				ptrs[i] = &texts[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			row := make([]cdc.Value, len(texts))
			for i, s := range texts {
				if s == nil {
					row[i].Kind = cdc.ValueNull
				} else {
					row[i].Data = []byte(*s)
				}
			}
			converted, err := conv.Row(row)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, converted)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := readPG("SET TimeZone = 'Asia/Kolkata'")
	if escaped := readPG("SET bytea_output = 'escape'"); !reflect.DeepEqual(escaped, want) {
		t.Errorf("rows read with bytea_output = escape convert to\n%q\nnot\n%q", escaped, want)
	}
	if len(want) != 5 {
		t.Fatalf("read %d rows, want 5", len(want))
	}

	if err := m.CreateDB(ctx, db); err != nil {
		t.Fatal(err)
	}
	dst := dialTestDB(t, m, db)
	for _, q := range pre {
		if _, err := dst.Execute(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	myTables, err := Tables(dst, db, nil)
	if err != nil || len(myTables) != 1 {
		t.Fatalf("Tables = %v, %v", myTables, err)
	}
	myTable := myTables[0]
	if got, want := strings.Join(myTable.Key, ","), "id"; got != want {
		t.Errorf("MySQL key = %s, want %s", got, want)
	}
	cols := CopyColumns(myTable)
	if got, want := len(cols), len(pgTable.CopyColumns()); got != want {
		t.Fatalf("MySQL table has %d columns, want %d", got, want)
	}
	names := make([]string, len(cols))
	for i := range cols {
		names[i] = Quote(cols[i].Name)
	}
	for _, row := range want {
		b := []byte("INSERT INTO " + QuoteTable(db, myTable.ID.Name) + " (" + strings.Join(names, ", ") + ") VALUES (")
		for i, v := range row {
			if i > 0 {
				b = append(b, ", "...)
			}
			if b, err = appendLiteral(b, literalClassOf(&cols[i]), v); err != nil {
				t.Fatalf("column %s: %v", cols[i].Name, err)
			}
		}
		b = append(b, ')')
		if _, err := dst.Execute(string(b)); err != nil {
			t.Fatalf("%.300s: %v", b, err)
		}
	}
	for _, q := range post {
		if _, err := dst.Execute(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	r, err := dst.Execute("SELECT " + SelectList(myTable) + " FROM " + QuoteTable(db, myTable.ID.Name) + " ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.Values) != len(want) {
		t.Fatalf("read %d rows back, want %d", len(r.Values), len(want))
	}
	got := make([][]cdc.Value, len(r.Values))
	for i, row := range r.Values {
		got[i] = RowValues(myTable, row)
		for j := range cols {
			g, w := got[i][j], want[i][j]
			if g.Kind != w.Kind || !bytes.Equal(g.Data, w.Data) {
				t.Errorf("row %d column %s: MariaDB has %q (kind %d), converted %q (kind %d)", i, cols[j].Name, g.Data, g.Kind, w.Data, w.Kind)
			}
		}
	}

	// The conversions that matter, spelled out: rows are in id order (min, 1, 2, 3, max).
	var allBytes []byte
	for i := range 256 {
		allBytes = append(allBytes, byte(i))
	}
	col := map[string]int{}
	for i, c := range cols {
		col[c.Name] = i
	}
	for _, tt := range []struct {
		row         int
		column, val string
	}{
		{4, "tstz", "2024-07-01 11:59:59.999999"},
		{0, "tstz", "1000-01-01 00:00:00.000000"},
		{1, "tstz", "2024-07-01 16:00:00.000001"},
		{1, "ts", "2024-01-01 10:00:00.500000"},
		{1, "ts3", "2024-01-01 10:00:00.000"},
		{4, "ts3", "2024-02-29 12:00:00.123"},
		{4, "tm", "24:00:00.000000"},
		{4, "tm0", "23:59:59"},
		{1, "tm", "12:34:56.500000"},
		{4, "b", "1"},
		{0, "b", "0"},
		{1, "n20", "0.5000"},
		{0, "n65", "-0.000000000000000000000000000001"},
		{1, "n65", "1.250000000000000000000000000000"},
		{4, "r", "3.4028233e+38"},
		{0, "r", "1e-45"},
		{1, "r", "0"},
		{1, "d", "0"},
		{0, "d", "5e-324"},
		{4, "d", "1.7976931348623157e+308"},
		{4, "c5", "ab"},
		{1, "c5", " a b"},
		{3, "r", "0.1"},
		{3, "d", "0.1"},
		{3, "n20", "123.4500"},
		{3, "n65", "-1.500000000000000000000000000000"},
		{3, "c5", "abcde"},
		{3, "raw", "\\'"},
		{3, "dt", "1969-07-20"},
		{3, "tstz", "1969-07-20 20:17:40.000000"},
		{3, "ts3", "1969-07-20 20:17:40.900"},
		{3, "tm", "20:17:40.000001"},
		{3, "j", `{"k": "v\u00e9"}`},
		{3, "jb", `[1, "a", {"b": null}]`},
		{0, "c5", ""},
		{1, "vc", "trailing  "},
		{4, "vc", "héllo 🎉 wörld"},
		{4, "t", "multi\nline 'quoted' \\ back\ttab"},
		{4, "raw", string(allBytes)},
		{0, "raw", ""},
		{1, "raw", "\x00"},
		{4, "j", `{"b": 1, "a" : [1,2], "a": 3}`},
		{4, "jb", `{"a": "é", "z": {"y": [true, null, 1.50]}}`},
		{4, "u", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	} {
		if v := got[tt.row][col[tt.column]]; v.Kind != cdc.ValueText || string(v.Data) != tt.val {
			t.Errorf("row %d column %s = %q (kind %d), want %q", tt.row, tt.column, v.Data, v.Kind, tt.val)
		}
	}
	for j := range cols {
		if cols[j].Name != "id" && cols[j].Name != "code" && got[2][j].Kind != cdc.ValueNull {
			t.Errorf("row 2 column %s = %q, want NULL", cols[j].Name, got[2][j].Data)
		}
	}

	myIndexes, err := Indexes(dst, db)
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes := map[cdc.TableID][]schema.Index{
		myTable.ID: {
			{Name: "items_by_day", Columns: []string{"dt", "i"}, Kind: "BTREE"},
			{Name: "items_code", Unique: true, Columns: []string{"code"}, Kind: "BTREE"},
		},
	}
	if !reflect.DeepEqual(myIndexes, wantIndexes) {
		t.Errorf("MySQL indexes = %+v, want %+v", myIndexes, wantIndexes)
	}
}

// TestAutoIncrementNotLeading: an identity column that does not lead the primary key still
// hands out ids on MySQL, through an index of its own.
func TestAutoIncrementNotLeading(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	if err := m.CreateDB(ctx, "ai_dst"); err != nil {
		t.Fatal(err)
	}
	dst := dialTestDB(t, m, "ai_dst")
	tbl := &schema.Table{ID: cdc.TableID{Schema: "shop", Name: "lines"}, Key: []string{"region", "id"}, Columns: []schema.Column{
		{Name: "region", Type: "integer", NotNull: true}, {Name: "id", Type: "bigint", NotNull: true, AutoIncrement: true},
		{Name: "note", Type: "character varying(20)"}}}
	pre, post, skipped, err := ForeignTables("ai_dst", []*schema.Table{tbl}, nil, pgToMariaDB)
	if err != nil || len(skipped) > 0 {
		t.Fatalf("ForeignTables: %v, skipped %q", err, skipped)
	}
	for _, q := range append(pre, post...) {
		if _, err := dst.Execute(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The copy writes explicit ids; the application's next insert gets one past them.
	for _, q := range []string{"INSERT INTO `lines` (region, id, note) VALUES (1, 100, 'copied')", "INSERT INTO `lines` (region, note) VALUES (2, 'new')"} {
		if _, err := dst.Execute(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if id, _, err := QueryString(dst, "SELECT id FROM `lines` WHERE note = 'new'"); err != nil || id != "101" {
		t.Errorf("the application's insert got id %q (%v), want 101", id, err)
	}
}
