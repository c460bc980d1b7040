package schema

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/migrated/migrated/internal/cdc"
)

const (
	mariaText = " CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
	mysqlText = " CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin"
)

func TestMySQLToPostgres(t *testing.T) {
	for _, c := range []struct {
		name string
		col  Column
		want string // "" means refused
	}{
		{"tinyint", Column{DataType: "tinyint", Type: "tinyint(4)"}, "smallint"},
		{"tinyint unsigned", Column{DataType: "tinyint", Type: "tinyint(3) unsigned", Unsigned: true}, "smallint"},
		{"boolean", Column{DataType: "tinyint", Type: "tinyint(1)"}, "smallint"},
		{"smallint", Column{DataType: "smallint", Type: "smallint(6)"}, "smallint"},
		{"smallint unsigned", Column{DataType: "smallint", Type: "smallint(5) unsigned", Unsigned: true}, "integer"},
		{"mediumint", Column{DataType: "mediumint", Type: "mediumint(9)"}, "integer"},
		{"mediumint unsigned", Column{DataType: "mediumint", Type: "mediumint(8) unsigned", Unsigned: true}, "integer"},
		{"int", Column{DataType: "int", Type: "int(11)"}, "integer"},
		{"int unsigned", Column{DataType: "int", Type: "int(10) unsigned", Unsigned: true}, "bigint"},
		{"int unsigned from type only", Column{Type: "int unsigned"}, "bigint"},
		{"bigint", Column{DataType: "bigint", Type: "bigint(20)"}, "bigint"},
		{"bigint unsigned", Column{DataType: "bigint", Type: "bigint(20) unsigned", Unsigned: true}, "numeric(20,0)"},
		{"decimal", Column{DataType: "decimal", Type: "decimal(20,4)", Precision: 20, Scale: 4}, "numeric(20,4)"},
		{"decimal max", Column{DataType: "decimal", Type: "decimal(65,30)", Precision: 65, Scale: 30}, "numeric(65,30)"},
		{"decimal unsigned zerofill", Column{DataType: "decimal", Type: "decimal(10,2) unsigned zerofill", Precision: 10, Scale: 2, Unsigned: true}, "numeric(10,2)"},
		{"decimal from type only", Column{Type: "decimal(12,3)"}, "numeric(12,3)"},
		{"decimal default", Column{Type: "decimal"}, "numeric(10,0)"},
		{"float", Column{DataType: "float", Type: "float"}, "real"},
		{"float(m,d)", Column{DataType: "float", Type: "float(7,4)", Precision: 7, Scale: 4}, "real"},
		{"double", Column{DataType: "double", Type: "double"}, "double precision"},
		{"bit(1)", Column{DataType: "bit", Type: "bit(1)", Precision: 1}, "bigint"},
		{"bit(63)", Column{DataType: "bit", Type: "bit(63)", Precision: 63}, "bigint"},
		{"bit(64)", Column{DataType: "bit", Type: "bit(64)", Precision: 64}, "numeric(20,0)"},
		{"char", Column{DataType: "char", Type: "char(10)", Length: 10, Charset: "utf8mb4"}, "character varying(10)"},
		{"varchar", Column{DataType: "varchar", Type: "varchar(255)", Length: 255, Charset: "utf8mb4"}, "character varying(255)"},
		{"varchar latin1", Column{DataType: "varchar", Type: "varchar(20)", Length: 20, Charset: "latin1"}, "character varying(20)"},
		{"varchar ascii", Column{DataType: "varchar", Type: "varchar(20)", Length: 20, Charset: "ascii"}, "character varying(20)"},
		{"varchar utf8mb3", Column{DataType: "varchar", Type: "varchar(20)", Length: 20, Charset: "utf8mb3"}, "character varying(20)"},
		{"varchar utf16", Column{DataType: "varchar", Type: "varchar(20)", Length: 20, Charset: "utf16"}, "character varying(20)"},
		{"varchar sjis", Column{DataType: "varchar", Type: "varchar(20)", Length: 20, Charset: "sjis"}, ""},
		{"text", Column{DataType: "text", Type: "text", Charset: "utf8mb4"}, "text"},
		{"tinytext", Column{DataType: "tinytext", Type: "tinytext"}, "text"},
		{"mediumtext", Column{DataType: "mediumtext", Type: "mediumtext"}, "text"},
		{"longtext (MariaDB json)", Column{DataType: "longtext", Type: "longtext", Charset: "utf8mb4"}, "text"},
		{"text gbk", Column{DataType: "text", Type: "text", Charset: "gbk"}, ""},
		{"binary", Column{DataType: "binary", Type: "binary(16)", Length: 16}, "bytea"},
		{"varbinary", Column{DataType: "varbinary", Type: "varbinary(255)", Length: 255}, "bytea"},
		{"tinyblob", Column{DataType: "tinyblob", Type: "tinyblob"}, "bytea"},
		{"blob", Column{DataType: "blob", Type: "blob"}, "bytea"},
		{"mediumblob", Column{DataType: "mediumblob", Type: "mediumblob"}, "bytea"},
		{"longblob", Column{DataType: "longblob", Type: "longblob"}, "bytea"},
		{"date", Column{DataType: "date", Type: "date"}, "date"},
		{"datetime", Column{DataType: "datetime", Type: "datetime"}, "timestamp(0) without time zone"},
		{"datetime(6)", Column{DataType: "datetime", Type: "datetime(6)", Scale: 6}, "timestamp(6) without time zone"},
		{"timestamp", Column{DataType: "timestamp", Type: "timestamp"}, "timestamp(0) with time zone"},
		{"timestamp(3)", Column{DataType: "timestamp", Type: "timestamp(3)", Scale: 3}, "timestamp(3) with time zone"},
		{"time", Column{DataType: "time", Type: "time"}, "interval(0)"},
		{"time(6) from type only", Column{Type: "time(6)"}, "interval(6)"},
		{"year", Column{DataType: "year", Type: "year(4)"}, "smallint"},
		{"json", Column{DataType: "json", Type: "json"}, "json"},
		{"enum", Column{DataType: "enum", Type: "enum('a','b(2)')", Elements: []string{"a", "b(2)"}, Charset: "utf8mb4"}, "text"},
		{"enum sjis", Column{DataType: "enum", Type: "enum('a')", Charset: "sjis"}, ""},
		{"set", Column{DataType: "set", Type: "set('x','y')"}, "text"},
		{"uuid", Column{DataType: "uuid", Type: "uuid"}, "uuid"},
		{"geometry", Column{DataType: "geometry", Type: "geometry"}, ""},
		{"point", Column{DataType: "point", Type: "point"}, ""},
		{"geomcollection", Column{DataType: "geomcollection", Type: "geomcollection"}, ""},
		{"inet6", Column{DataType: "inet6", Type: "inet6"}, ""},
		{"unknown", Column{DataType: "vector", Type: "vector(3)"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.col.Name = "c"
			got, err := MySQLToPostgres(c.col)
			if c.want == "" {
				var te *TypeError
				if !errors.As(err, &te) {
					t.Fatalf("MySQLToPostgres(%s) = %q, %v; want a *TypeError", c.col.Type, got, err)
				}
				if te.Column != "c" || te.Engine != "PostgreSQL" || te.Type != c.col.Type || te.Reason == "" {
					t.Errorf("TypeError = %+v", te)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("MySQLToPostgres(%s) = %q, %v; want %q", c.col.Type, got, err, c.want)
			}
		})
	}
}

func TestPostgresToMySQL(t *testing.T) {
	for _, c := range []struct {
		typ, mariadb, mysql string // "" means refused
	}{
		{"smallint", "smallint", "smallint"},
		{"integer", "int", "int"},
		{"bigint", "bigint", "bigint"},
		{"numeric(20,4)", "decimal(20,4)", "decimal(20,4)"},
		{"numeric(65,30)", "decimal(65,30)", "decimal(65,30)"},
		{"numeric(10,0)", "decimal(10,0)", "decimal(10,0)"},
		{"numeric(66,0)", "", ""},
		{"numeric(40,31)", "", ""},
		{"numeric(5,-2)", "", ""},
		{"numeric(3,5)", "", ""},
		{"numeric", "", ""},
		{"real", "float", "float"},
		{"double precision", "double", "double"},
		{"boolean", "tinyint(1)", "tinyint(1)"},
		{"text", "longtext" + mariaText, "longtext" + mysqlText},
		{"character varying(255)", "varchar(255)" + mariaText, "varchar(255)" + mysqlText},
		{"character varying(16383)", "varchar(16383)" + mariaText, "varchar(16383)" + mysqlText},
		{"character varying(16384)", "longtext" + mariaText, "longtext" + mysqlText},
		{"character varying", "longtext" + mariaText, "longtext" + mysqlText},
		{"character(1)", "char(1)" + mariaText, "char(1)" + mysqlText},
		{"character(255)", "char(255)" + mariaText, "char(255)" + mysqlText},
		{"character(256)", "", ""},
		{"bytea", "longblob", "longblob"},
		{"date", "date", "date"},
		{"timestamp without time zone", "datetime(6)", "datetime(6)"},
		{"timestamp(0) without time zone", "datetime(0)", "datetime(0)"},
		{"timestamp(3) with time zone", "datetime(3)", "datetime(3)"},
		{"timestamp with time zone", "datetime(6)", "datetime(6)"},
		{"time without time zone", "time(6)", "time(6)"},
		{"time(2) without time zone", "time(2)", "time(2)"},
		{"time with time zone", "", ""},
		{"time(3) with time zone", "", ""},
		{"uuid", "char(36) CHARACTER SET ascii COLLATE ascii_bin", "char(36) CHARACTER SET ascii COLLATE ascii_bin"},
		{"json", "json", "longtext" + mysqlText},
		{"jsonb", "json", "longtext" + mysqlText},
		{"interval", "", ""},
		{"interval(3)", "", ""},
		{"interval day to second", "", ""},
		{"integer[]", "", ""},
		{"character varying(20)[]", "", ""},
		{"int4range", "", ""},
		{"tstzrange", "", ""},
		{"int8multirange", "", ""},
		{"hstore", "", ""},
		{"money", "", ""},
		{"inet", "", ""},
		{"cidr", "", ""},
		{"macaddr", "", ""},
		{"bit(8)", "", ""},
		{"bit varying(8)", "", ""},
		{"xml", "", ""},
		{"mood", "", ""},
		{`"Mood"`, "", ""},
		{"public.mood", "", ""},
		{`"char"`, "", ""},
		{"oid", "", ""},
	} {
		t.Run(c.typ, func(t *testing.T) {
			col := Column{Name: "c", Type: c.typ}
			for _, f := range []struct{ flavor, want string }{{FlavorMariaDB, c.mariadb}, {FlavorMySQL, c.mysql}} {
				got, err := PostgresToMySQLFlavor(col, f.flavor)
				if f.want == "" {
					var te *TypeError
					if !errors.As(err, &te) {
						t.Fatalf("%s: PostgresToMySQL(%s) = %q, %v; want a *TypeError", f.flavor, c.typ, got, err)
					}
					if te.Column != "c" || te.Engine != "MySQL" || te.Type != c.typ || te.Reason == "" {
						t.Errorf("TypeError = %+v", te)
					}
					continue
				}
				if err != nil || got != f.want {
					t.Errorf("%s: PostgresToMySQL(%s) = %q, %v; want %q", f.flavor, c.typ, got, err, f.want)
				}
			}
			a, aerr := PostgresToMySQL(col)
			b, berr := PostgresToMySQLFlavor(col, FlavorMariaDB)
			if a != b || (aerr == nil) != (berr == nil) {
				t.Errorf("PostgresToMySQL is not the MariaDB flavor: %q %v, %q %v", a, aerr, b, berr)
			}
		})
	}
}

func TestTypeErrorMessage(t *testing.T) {
	_, err := PostgresToMySQL(Column{Name: "tags", Type: "integer[]"})
	if got, want := err.Error(), "column tags (integer[]) cannot be carried exactly into MySQL: MySQL has no array type"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	_, err = MySQLToPostgres(Column{Name: "shape", DataType: "point", Type: "point"})
	if got, want := err.Error(), "column shape (point) cannot be carried exactly into PostgreSQL: spatial types have no exact PostgreSQL type without PostGIS, which migrated does not map"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func table(schemaName, name string, key []string, cols ...Column) *Table {
	t := &Table{ID: cdc.TableID{Schema: schemaName, Name: name}, Key: key, Columns: cols}
	t.Root = t.ID
	return t
}

func TestTypeMap(t *testing.T) {
	pg := table("app", "events", []string{"id"},
		Column{Name: "id", Type: "bigint"},
		Column{Name: "tags", Type: "integer[]"},
		Column{Name: "amount", Type: "numeric"},
		Column{Name: "body", Type: "jsonb"},
		Column{Name: "mood", Type: "mood"},
	)
	m := TypeMap{Dir: DirPostgresToMySQL, Overrides: map[string]string{"app.events.amount": "decimal(65,30)", "app.events.gone": "int"}}

	if got, err := m.Type(pg, pg.Columns[2]); err != nil || got != "decimal(65,30)" {
		t.Errorf("override: Type = %q, %v", got, err)
	}
	if got, err := m.Type(pg, pg.Columns[3]); err != nil || got != "json" {
		t.Errorf("map: Type = %q, %v", got, err)
	}
	if got, err := (TypeMap{Dir: DirPostgresToMySQL, Flavor: FlavorMySQL}).Type(pg, pg.Columns[3]); err != nil || got != "longtext"+mysqlText {
		t.Errorf("mysql flavor: Type = %q, %v", got, err)
	}
	if got, err := (TypeMap{Dir: "postgres->postgres"}).Type(pg, pg.Columns[1]); err != nil || got != "integer[]" {
		t.Errorf("same engine: Type = %q, %v", got, err)
	}
	if _, err := m.Type(pg, pg.Columns[1]); err == nil {
		t.Error("array mapped without an override")
	}

	want := []string{
		`column app.events.tags (integer[]) cannot be carried exactly into MySQL: MySQL has no array type; add "app.events.tags": "longtext" under tables.types in the config to create it as longtext once you are sure every value fits that type, or exclude the table`,
		`column app.events.mood (mood) cannot be carried exactly into MySQL: migrated has no rule for this type (user-defined enums, domains and extension types have none); add "app.events.mood": "<MySQL type>" under tables.types in the config to choose its type yourself, or exclude the table`,
	}
	if got := m.Unmappable(pg); !reflect.DeepEqual(got, want) {
		t.Errorf("Unmappable =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := UnmappableColumns(pg, "postgres->mysql", m.Overrides); !reflect.DeepEqual(got, want) {
		t.Errorf("UnmappableColumns = %q", got)
	}
	if got := UnmappableColumns(pg, "postgres->postgres", nil); got != nil {
		t.Errorf("same engine: UnmappableColumns = %q", got)
	}

	probs := m.Problems([]*Table{pg})
	if len(probs) != 3 {
		t.Fatalf("Problems = %v", probs)
	}
	if probs[0].Check != "types" || probs[1].Check != "types" {
		t.Errorf("checks = %q, %q", probs[0].Check, probs[1].Check)
	}
	if got, want := probs[2].String(), "tables.types: tables.types names app.events.gone, which is not a column of a migrated table; correct the name (schema.table.column, as the source spells them) or remove it"; got != want {
		t.Errorf("unused override:\n got %q\nwant %q", got, want)
	}

	my := table("shop", "places", []string{"id"},
		Column{Name: "id", DataType: "int", Type: "int(10) unsigned", Unsigned: true},
		Column{Name: "location", DataType: "point", Type: "point"},
		Column{Name: "name", DataType: "varchar", Type: "varchar(20)", Length: 20, Charset: "big5"},
	)
	got := TypeMap{Dir: DirMySQLToPostgres}.Unmappable(my)
	if len(got) != 2 || !strings.HasPrefix(got[0], "column shop.places.location (point) cannot be carried exactly into PostgreSQL: ") ||
		!strings.HasSuffix(got[0], `add "shop.places.location": "bytea" under tables.types in the config to create it as bytea once you are sure every value fits that type, or exclude the table`) ||
		!strings.Contains(got[1], "character set big5") {
		t.Errorf("Unmappable = %q", got)
	}
	if got := (TypeMap{Dir: DirMySQLToPostgres, Overrides: map[string]string{"shop.places.location": "bytea", "shop.places.name": "text"}}).Unmappable(my); got != nil {
		t.Errorf("overridden: Unmappable = %q", got)
	}
}

func TestTypeMapKeys(t *testing.T) {
	for _, c := range []struct {
		name      string
		key       []string
		cols      []Column
		overrides map[string]string
		want      []string // substrings, one per message
	}{
		{"text key", []string{"slug"}, []Column{{Name: "slug", Type: "text"}}, nil,
			[]string{`column app.t.slug (text) is in the key of app.t, and MySQL indexes a longtext only by a prefix, which cannot identify a row; add "app.t.slug": "varchar(255)"`}},
		{"bytea key", []string{"h"}, []Column{{Name: "h", Type: "bytea"}}, nil, []string{`MySQL indexes a longblob only by a prefix; add "app.t.h": "varbinary(255)"`}},
		{"json key", []string{"j"}, []Column{{Name: "j", Type: "jsonb"}}, nil, []string{"MySQL indexes a json only by a prefix"}},
		{"overridden text key", []string{"slug"}, []Column{{Name: "slug", Type: "text"}}, map[string]string{"app.t.slug": "varchar(100)"}, nil},
		{"text outside the key", []string{"id"}, []Column{{Name: "id", Type: "integer"}, {Name: "body", Type: "text"}}, nil, nil},
		{"varchar key fits", []string{"a", "b", "c"}, []Column{{Name: "a", Type: "character varying(500)"}, {Name: "b", Type: "character(255)"}, {Name: "c", Type: "character varying(13)"}}, nil, nil},
		{"varchar key too wide", []string{"a", "b", "c"}, []Column{{Name: "a", Type: "character varying(500)"}, {Name: "b", Type: "character(255)"}, {Name: "c", Type: "character varying(14)"}}, nil,
			[]string{"the key of app.t (a, b, c) takes up to 3076 bytes in MySQL, more than InnoDB's 3072-byte index limit"}},
		{"uuid key", []string{"id"}, []Column{{Name: "id", Type: "uuid"}}, nil, nil},
		{"ascii key counts a byte a character", []string{"id", "a"}, []Column{{Name: "id", Type: "uuid"}, {Name: "a", Type: "character varying(759)"}}, nil, nil},
		{"ascii key too wide", []string{"id", "a"}, []Column{{Name: "id", Type: "uuid"}, {Name: "a", Type: "character varying(760)"}}, nil,
			[]string{"the key of app.t (id, a) takes up to 3076 bytes"}},
		{"row fits", []string{"id"}, []Column{{Name: "id", Type: "integer"}, {Name: "a", Type: "character varying(16000)"}, {Name: "b", Type: "character varying(255)"}, {Name: "c", Type: "text"}}, nil, nil},
		{"row too wide", []string{"id"}, []Column{{Name: "id", Type: "integer"}, {Name: "a", Type: "character varying(9000)"}, {Name: "b", Type: "character varying(10000)"}, {Name: "c", Type: "character(10)"}}, nil,
			[]string{`the character columns of app.t take up to 76044 bytes per row in MySQL, more than its 65535-byte row size limit (longtext columns do not count); add "app.t.b": "longtext" under tables.types`}},
		{"row fits with an override", []string{"id"}, []Column{{Name: "id", Type: "integer"}, {Name: "a", Type: "character varying(9000)"}, {Name: "b", Type: "character varying(10000)"}}, map[string]string{"app.t.b": "longtext"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := TypeMap{Dir: DirPostgresToMySQL, Overrides: c.overrides}.Unmappable(table("app", "t", c.key, c.cols...))
			if len(got) != len(c.want) {
				t.Fatalf("Unmappable = %q, want %d messages", got, len(c.want))
			}
			for i, w := range c.want {
				// The want strings skip the middle of a message with "; ".
				for _, part := range strings.Split(w, "; ") {
					if !strings.Contains(got[i], part) {
						t.Errorf("message %q does not contain %q", got[i], part)
					}
				}
			}
		})
	}
	// The key rule is for a MySQL target only.
	if got := (TypeMap{Dir: DirMySQLToPostgres}).Unmappable(table("app", "t", []string{"b"}, Column{Name: "b", DataType: "longblob", Type: "longblob"})); got != nil {
		t.Errorf("mysql->postgres: %q", got)
	}
}

// TestTypeMappingDoc keeps docs/type-mapping.md in step with the maps: every row of its tables
// is run through the map it documents.
func TestTypeMappingDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/type-mapping.md")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	mappers := map[string]func(typ string) (string, error){
		"MySQL or MariaDB column|PostgreSQL column": func(typ string) (string, error) {
			col := Column{Name: "c", Type: typ}
			if before, cs, ok := strings.Cut(typ, " CHARACTER SET "); ok {
				col.Type, col.Charset = before, cs
			}
			return MySQLToPostgres(col)
		},
		"PostgreSQL column|MariaDB column": func(typ string) (string, error) {
			return PostgresToMySQLFlavor(Column{Name: "c", Type: typ}, FlavorMariaDB)
		},
		"PostgreSQL column|MySQL 8 column": func(typ string) (string, error) {
			return PostgresToMySQLFlavor(Column{Name: "c", Type: typ}, FlavorMySQL)
		},
	}
	rows := map[string]int{}
	var mapper func(string) (string, error) // nil outside a mapping table
	var header string
	inTable := false
	for n, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !inTable {
			inTable = true
			header = cells[0] + "|" + cells[1]
			mapper = mappers[header]
			continue
		}
		if mapper == nil || strings.HasPrefix(cells[0], "---") {
			continue
		}
		sources := code.FindAllStringSubmatch(cells[0], -1)
		if len(sources) == 0 {
			t.Errorf("line %d: no `type` in the first cell: %s", n+1, line)
		}
		want, refused := "", cells[1] == "refused"
		if !refused {
			m := code.FindStringSubmatch(cells[1])
			if m == nil || m[0] != cells[1] {
				t.Errorf("line %d: the second cell must be one `type` or refused: %s", n+1, line)
				continue
			}
			want = m[1]
		}
		for _, s := range sources {
			got, err := mapper(s[1])
			switch {
			case refused && err == nil:
				t.Errorf("line %d: %s maps to %q, but the doc says refused", n+1, s[1], got)
			case !refused && (err != nil || got != want):
				t.Errorf("line %d: %s maps to %q, %v; the doc says %q", n+1, s[1], got, err, want)
			}
			rows[header]++
		}
	}
	// Guard against a parse that finds nothing and so checks nothing.
	for h, min := range map[string]int{"MySQL or MariaDB column|PostgreSQL column": 40, "PostgreSQL column|MariaDB column": 40, "PostgreSQL column|MySQL 8 column": 4} {
		if rows[h] < min {
			t.Errorf("table %q: %d types checked, want at least %d", h, rows[h], min)
		}
	}
}
