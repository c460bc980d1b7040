package mysql

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
)

// TestDefaultsAcrossEngines creates tables with the common column defaults on each engine,
// builds the other engine's tables from the real catalog, and inserts a row there that gives
// only the key: the application's inserts after a cutover get the values they got before.
// A default that is not translated is reported, not guessed.
func TestDefaultsAcrossEngines(t *testing.T) {
	pg := testenv.RequirePostgres(t)
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	dsn, err := pg.CreateDB(ctx, "defaults")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if err := m.CreateDB(ctx, "defaults"); err != nil {
		t.Fatal(err)
	}
	mc := dialTestDB(t, m, "defaults")

	t.Run("PostgreSQL to MariaDB", func(t *testing.T) {
		if _, err := pc.Exec(ctx, `CREATE SCHEMA shop; CREATE TABLE shop.d (
  id int PRIMARY KEY, status varchar(10) NOT NULL DEFAULT 'new', qty integer DEFAULT 0, neg integer DEFAULT -1,
  price numeric(8,2) DEFAULT 9.99, flag boolean DEFAULT true, note text DEFAULT 'none', doc jsonb DEFAULT '{}',
  at timestamptz(6) DEFAULT now(), day date DEFAULT CURRENT_DATE, fixed date DEFAULT '2020-01-01',
  u uuid DEFAULT gen_random_uuid(), plain int)`); err != nil {
			t.Fatal(err)
		}
		tables, err := postgres.Tables(ctx, pc, nil)
		if err != nil {
			t.Fatal(err)
		}
		pre, _, skipped, err := ForeignTables("defaults", tables, nil, pgToMariaDB)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range pre {
			if _, err := mc.Execute(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if !slices.ContainsFunc(skipped, func(s string) bool { return strings.Contains(s, "gen_random_uuid() of shop.d.u") }) {
			t.Errorf("the uuid default is not reported as not carried: %q", skipped)
		}
		if _, err := mc.Execute("INSERT INTO d (id) VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		rows, err := QueryStrings(mc, "SELECT status, qty, neg, price, flag, note, doc, fixed, "+
			"at > NOW(6) - INTERVAL 1 DAY, day = CURDATE(), u IS NULL, plain IS NULL FROM d")
		if err != nil || len(rows) != 1 {
			t.Fatalf("%d rows, %v", len(rows), err)
		}
		var cells []string
		for _, v := range rows[0] {
			if v == nil {
				cells = append(cells, "NULL")
			} else {
				cells = append(cells, *v)
			}
		}
		if got, want := strings.Join(cells, "|"), "new|0|-1|9.99|1|none|{}|2020-01-01|1|1|1|1"; got != want {
			t.Errorf("row of defaults on MariaDB = %s, want %s", got, want)
		}
	})

	t.Run("MariaDB to PostgreSQL", func(t *testing.T) {
		if _, err := mc.Execute(`CREATE TABLE d2 (
  id int PRIMARY KEY, status varchar(10) NOT NULL DEFAULT 'new', qty int DEFAULT 0, neg int DEFAULT -1,
  price decimal(8,2) DEFAULT 9.99, note text DEFAULT 'none', at datetime(6) DEFAULT current_timestamp(6),
  day date DEFAULT curdate(), fixed date DEFAULT '2020-01-01', e enum('a','b') DEFAULT 'b',
  u varchar(36) DEFAULT uuid(), plain int)`); err != nil {
			t.Fatal(err)
		}
		tables, err := Tables(mc, "defaults", nil)
		if err != nil {
			t.Fatal(err)
		}
		tables = slices.DeleteFunc(tables, func(tb *schema.Table) bool { return tb.ID.Name != "d2" })
		pre, _, skipped, err := postgres.ForeignSchema(tables, nil, schema.TypeMap{Dir: schema.DirMySQLToPostgres, Flavor: schema.FlavorMariaDB})
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range pre {
			if _, err := pc.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if !slices.ContainsFunc(skipped, func(s string) bool { return strings.Contains(s, "uuid() of defaults.d2.u") }) {
			t.Errorf("the uuid() default is not reported as not carried: %q", skipped)
		}
		if _, err := pc.Exec(ctx, "INSERT INTO defaults.d2 (id) VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := pc.QueryRow(ctx, "SELECT concat_ws('|', status, qty, neg, price, note, fixed, e, "+
			"at > now() - interval '1 day', day = CURRENT_DATE, u IS NULL, plain IS NULL) FROM defaults.d2").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := "new|0|-1|9.99|none|2020-01-01|b|t|t|t|t"; got != want {
			t.Errorf("row of defaults on PostgreSQL = %s, want %s", got, want)
		}
	})
}

// TestParseColumnFlavors reads information_schema.COLUMNS rows as each flavor prints them.
// MySQL 8 prints a literal default unquoted and marks an expression default (and
// CURRENT_TIMESTAMP) DEFAULT_GENERATED in EXTRA, where MariaDB quotes literals. MySQL 8 is not
// installed here: its rows are written from its documentation.
func TestParseColumnFlavors(t *testing.T) {
	row := func(dataType, extra string, def *string) []*string {
		s := func(v string) *string { return &v }
		return []*string{s("t"), s("c"), s(dataType), s(dataType), s("YES"), s(extra), s("0"), s("0"), s("0"), s("0"), s(""), s(""), def}
	}
	p := func(v string) *string { return &v }
	for _, tt := range []struct {
		name, flavor, dataType, extra string
		def                           *string
		want                          string
		generated                     bool
	}{
		{"mariadb string", "mariadb", "varchar", "", p("'it''s'"), "'it''s'", false},
		{"mysql string", "mysql", "varchar", "", p("it's"), "'it''s'", false},
		{"mysql date", "mysql", "date", "", p("2024-01-02"), "'2024-01-02'", false},
		{"mysql number", "mysql", "int", "", p("42"), "42", false},
		{"mysql now", "mysql", "timestamp", "DEFAULT_GENERATED on update CURRENT_TIMESTAMP", p("CURRENT_TIMESTAMP"), "CURRENT_TIMESTAMP", false},
		{"mysql 5.7 now", "mysql", "datetime", "on update CURRENT_TIMESTAMP", p("CURRENT_TIMESTAMP"), "CURRENT_TIMESTAMP", false},
		{"mysql expression", "mysql", "varchar", "DEFAULT_GENERATED", p("uuid()"), "uuid()", false},
		{"mysql string that reads like now", "mysql", "varchar", "", p("CURRENT_TIMESTAMP"), "'CURRENT_TIMESTAMP'", false},
		{"mysql no default", "mysql", "varchar", "", nil, "", false},
		{"mysql generated", "mysql", "int", "VIRTUAL GENERATED", nil, "", true},
		{"mariadb generated", "mariadb", "int", "STORED GENERATED", nil, "", true},
	} {
		col := parseColumn(row(tt.dataType, tt.extra, tt.def), tt.flavor)
		if col.Default != tt.want || col.Generated != tt.generated {
			t.Errorf("%s: default %q, generated %v; want %q, %v", tt.name, col.Default, col.Generated, tt.want, tt.generated)
		}
	}
}
