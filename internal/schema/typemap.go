package schema

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The cross-engine type maps. Each rule either carries every value of the source type exactly
// or refuses the column, so that a value is never rounded, truncated or reinterpreted in
// silence. docs/type-mapping.md lists the rules and a test keeps it in step with this file.
//
// PostgreSQL types are written as format_type prints them ("character varying(255)",
// "timestamp(6) with time zone"), in both directions: the PostgreSQL catalog reads that form,
// and a mapped type compares equal to the catalog of the table created from it. MySQL types
// are written as MySQL's COLUMN_TYPE prints them, lower case.

// Direction names a migration's engines, source first, as the config spells them:
// Direction(cfg.Source.Engine + "->" + cfg.Target.Engine).
type Direction string

// The directions that cross engines. PostgreSQL to PostgreSQL and MySQL to MySQL carry every
// type as it is.
const (
	DirMySQLToPostgres Direction = "mysql->postgres"
	DirPostgresToMySQL Direction = "postgres->mysql"
)

// Collations of the character columns created on a MySQL target. PostgreSQL compares text byte
// by byte (with its default deterministic collations) and keeps trailing spaces significant; a
// case-insensitive or PAD SPACE collation would make two distinct PostgreSQL keys one MySQL key,
// and an upsert would then merge two rows. These are the binary NO PAD collations.
const (
	MariaDBTextCollation = "utf8mb4_nopad_bin"
	MySQLTextCollation   = "utf8mb4_0900_bin" // MySQL 8.0.17 and later
)

// Target flavors of PostgresToMySQLFlavor, as mysql.Flavor reports them.
const (
	FlavorMariaDB = "mariadb"
	FlavorMySQL   = "mysql"
)

// TypeError says why a column cannot be carried exactly into the other engine.
type TypeError struct {
	Column string // the column's name
	Type   string // its source type
	Engine string // the target engine: "PostgreSQL" or "MySQL"
	Reason string
	// Suggest is a target type an operator may choose as an override when the values fit it,
	// or "".
	Suggest string
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("column %s (%s) cannot be carried exactly into %s: %s", e.Column, e.Type, e.Engine, e.Reason)
}

// MySQLToPostgres maps a MySQL or MariaDB column to a PostgreSQL type, or returns a *TypeError
// saying why the column cannot be carried exactly. It reads DataType, Unsigned, Length,
// Precision, Scale and Charset, and falls back to parsing Type (COLUMN_TYPE, such as
// "int(10) unsigned") for any of them left zero.
func MySQLToPostgres(c Column) (string, error) {
	base, unsigned, args := mysqlShape(c)
	refuse := func(reason, suggest string) (string, error) {
		return "", &TypeError{Column: c.Name, Type: mysqlTypeName(c), Engine: "PostgreSQL", Reason: reason, Suggest: suggest}
	}
	arg := func(have, i, def int) int {
		if have != 0 {
			return have
		}
		if i < len(args) {
			return args[i]
		}
		return def
	}
	switch base {
	case "tinyint":
		return "smallint", nil // unsigned 0..255 fits too
	case "smallint":
		if unsigned {
			return "integer", nil
		}
		return "smallint", nil
	case "mediumint":
		return "integer", nil
	case "int", "integer":
		if unsigned {
			return "bigint", nil
		}
		return "integer", nil
	case "bigint":
		if unsigned {
			return "numeric(20,0)", nil
		}
		return "bigint", nil
	case "decimal", "numeric", "dec", "fixed":
		// MySQL allows at most 65 digits and scale 30; PostgreSQL allows 1000.
		p, s := arg(c.Precision, 0, 10), arg(c.Scale, 1, 0)
		return fmt.Sprintf("numeric(%d,%d)", p, s), nil
	case "float":
		return "real", nil
	case "double", "real", "double precision":
		return "double precision", nil
	case "bit":
		// Values travel as their unsigned integer value in decimal.
		if n := arg(c.Precision, 0, 1); n <= 63 {
			return "bigint", nil
		}
		return "numeric(20,0)", nil
	case "char", "varchar":
		if reason := charsetProblem(c.Charset); reason != "" {
			return refuse(reason, "")
		}
		// MySQL strips CHAR's trailing spaces when it reads it, so both become varchar:
		// PostgreSQL's character(n) would pad the value again.
		return fmt.Sprintf("character varying(%d)", arg(int(c.Length), 0, 1)), nil
	case "tinytext", "text", "mediumtext", "longtext":
		if reason := charsetProblem(c.Charset); reason != "" {
			return refuse(reason, "")
		}
		return "text", nil
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		return "bytea", nil
	case "date":
		return "date", nil
	case "datetime":
		return fmt.Sprintf("timestamp(%d) without time zone", arg(c.Scale, 0, 0)), nil
	case "timestamp":
		// TIMESTAMP is an instant: it is read in UTC and written with its offset.
		return fmt.Sprintf("timestamp(%d) with time zone", arg(c.Scale, 0, 0)), nil
	case "time":
		// TIME is a signed duration up to 838:59:59, not a time of day.
		return fmt.Sprintf("interval(%d)", arg(c.Scale, 0, 0)), nil
	case "year":
		return "smallint", nil
	case "json":
		// json keeps the text as MySQL prints it; jsonb would reorder keys and drop duplicates.
		return "json", nil
	case "enum", "set":
		if reason := charsetProblem(c.Charset); reason != "" {
			return refuse(reason, "")
		}
		return "text", nil
	case "uuid":
		return "uuid", nil
	case "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
		"multipolygon", "geometrycollection", "geomcollection":
		return refuse("spatial types have no exact PostgreSQL type without PostGIS, which migrated does not map", "bytea")
	case "inet4", "inet6":
		return refuse("PostgreSQL's inet prints some addresses differently, so the values would not compare equal", "text")
	default:
		return refuse(fmt.Sprintf("migrated has no rule for MySQL type %s", base), "")
	}
}

// charsetProblem explains why values of a character set cannot be carried, or returns "". The
// session reads every column as utf8mb4, so the server converts the value to UTF-8 on the way
// out: exact for the Unicode sets, ASCII and latin1 (MySQL's latin1 is cp1252 with the five
// undefined bytes mapped to C1 controls), but not for the legacy multi-byte sets, where some
// strings have no UTF-8 form or two byte strings share one.
func charsetProblem(cs string) string {
	switch strings.ToLower(cs) {
	case "", "utf8mb4", "utf8mb3", "utf8", "ascii", "latin1", "ucs2", "utf16", "utf16le", "utf32", "binary":
		return ""
	}
	return fmt.Sprintf("its character set %s does not convert to UTF-8 exactly in every case; convert the column to utf8mb4 on the source (ALTER TABLE ... MODIFY ... CHARACTER SET utf8mb4)", cs)
}

// PostgresToMySQL maps a PostgreSQL column (Type as format_type prints it) to a MariaDB type,
// or returns a *TypeError saying why the column cannot be carried exactly. See
// PostgresToMySQLFlavor for a MySQL 8 target.
func PostgresToMySQL(c Column) (string, error) { return PostgresToMySQLFlavor(c, FlavorMariaDB) }

// PostgresToMySQLFlavor is PostgresToMySQL for a target of the given flavor ("mariadb" or
// "mysql"). The flavors differ in the collation of character columns and in JSON: MariaDB's
// JSON is LONGTEXT and keeps the text, MySQL's is binary and rewrites it, so MySQL gets longtext.
func PostgresToMySQLFlavor(c Column, flavor string) (string, error) {
	typ := strings.TrimSpace(c.Type)
	base, args := pgShape(typ)
	refuse := func(reason, suggest string) (string, error) {
		return "", &TypeError{Column: c.Name, Type: typ, Engine: "MySQL", Reason: reason, Suggest: suggest}
	}
	coll := MariaDBTextCollation
	if flavor == FlavorMySQL {
		coll = MySQLTextCollation
	}
	text := func(t string) string { return t + " CHARACTER SET utf8mb4 COLLATE " + coll }
	if strings.HasSuffix(typ, "[]") {
		return refuse("MySQL has no array type", "longtext")
	}
	switch {
	case strings.HasPrefix(base, "interval"):
		return refuse("MySQL has no interval type, and TIME holds neither days, months nor years", "varchar(64)")
	case strings.HasSuffix(base, "range"): // and multirange
		return refuse("MySQL has no range type", "varchar(255)")
	}
	switch base {
	case "smallint":
		return "smallint", nil
	case "integer":
		return "int", nil
	case "bigint":
		return "bigint", nil
	case "numeric":
		if len(args) == 0 {
			return refuse("an unconstrained numeric holds up to 131072 digits before the point and 16383 after it, and MySQL's DECIMAL at most 65 digits, 30 after the point", "decimal(65,30)")
		}
		p, s := args[0], 0
		if len(args) > 1 {
			s = args[1]
		}
		if p > 65 || s < 0 || s > 30 || s > p {
			return refuse("MySQL's DECIMAL holds at most 65 digits, at most 30 of them after the point, and no negative scale", "")
		}
		return fmt.Sprintf("decimal(%d,%d)", p, s), nil
	case "real":
		return "float", nil
	case "double precision":
		return "double", nil
	case "boolean":
		return "tinyint(1)", nil
	case "text":
		return text("longtext"), nil
	case "character varying":
		// 16383 characters of 4 bytes fill the 65535-byte row limit of a VARCHAR.
		if len(args) == 0 || args[0] > 16383 {
			return text("longtext"), nil
		}
		return text(fmt.Sprintf("varchar(%d)", args[0])), nil
	case "character":
		n := 1
		if len(args) > 0 {
			n = args[0]
		}
		if n > 255 {
			return refuse("MySQL's CHAR holds at most 255 characters", fmt.Sprintf("varchar(%d)", n))
		}
		return text(fmt.Sprintf("char(%d)", n)), nil
	case "bytea":
		return "longblob", nil
	case "date":
		return "date", nil
	case "timestamp without time zone", "timestamp with time zone":
		// Both become DATETIME: MySQL's TIMESTAMP ends in 2038. An instant is written in UTC.
		return fmt.Sprintf("datetime(%d)", precision(args)), nil
	case "time without time zone":
		return fmt.Sprintf("time(%d)", precision(args)), nil
	case "time with time zone":
		return refuse("MySQL's TIME keeps no UTC offset", "varchar(32)")
	case "uuid":
		return "char(36) CHARACTER SET ascii COLLATE ascii_bin", nil
	case "json", "jsonb":
		if flavor == FlavorMySQL {
			return text("longtext"), nil
		}
		return "json", nil
	case "money":
		return refuse("money is printed with the currency symbol of lc_monetary; change the column to numeric on the source", "")
	case "inet", "cidr":
		return refuse("MySQL has no network address type", "varchar(43)")
	case "hstore":
		return refuse("MySQL has no hstore type", "longtext")
	default:
		return refuse("migrated has no rule for this type (user-defined enums, domains and extension types have none)", "")
	}
}

// precision is the fractional-second digits of a PostgreSQL time type: 6 unless given.
func precision(args []int) int {
	if len(args) > 0 {
		return args[0]
	}
	return 6
}

var typeArgsRE = regexp.MustCompile(`\(([^)]*)\)`)

// typeArgs returns the integers in the first parenthesis of a type: "numeric(20,4)" gives
// [20 4]. Anything else inside it (enum members) gives nil.
func typeArgs(typ string) []int {
	m := typeArgsRE.FindStringSubmatch(typ)
	if m == nil {
		return nil
	}
	var out []int
	for _, part := range strings.Split(m[1], ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

// pgShape splits a format_type name into its name without modifiers and the modifiers:
// "timestamp(3) with time zone" gives "timestamp with time zone" and [3].
func pgShape(typ string) (string, []int) {
	args := typeArgs(typ)
	base := strings.Join(strings.Fields(typeArgsRE.ReplaceAllString(typ, " ")), " ")
	return strings.ToLower(base), args
}

// mysqlShape returns a MySQL column's base type, signedness and type arguments, from the
// catalog fields where set and from COLUMN_TYPE otherwise.
func mysqlShape(c Column) (string, bool, []int) {
	typ := strings.ToLower(strings.TrimSpace(c.Type))
	base := strings.ToLower(c.DataType)
	if base == "" {
		base = typ
		if i := strings.IndexAny(base, "( "); i >= 0 {
			base = base[:i]
		}
	}
	var args []int
	if base != "enum" && base != "set" {
		args = typeArgs(typ)
	}
	return base, c.Unsigned || strings.Contains(typ, " unsigned"), args
}

func mysqlTypeName(c Column) string {
	if c.Type != "" {
		return c.Type
	}
	return c.DataType
}

// TypeMap carries the columns of a migration across engines: the built-in map of its
// direction, with the operator's overrides on top.
type TypeMap struct {
	Dir Direction
	// Flavor is the MySQL target's flavor, FlavorMariaDB (the default) or FlavorMySQL.
	Flavor string
	// Overrides maps "schema.table.column" to the target type to create (the config's
	// tables.types). An override wins over the map and is not checked.
	Overrides map[string]string
}

// OverrideKey is the key of a column in TypeMap.Overrides: "schema.table.column".
func OverrideKey(t *Table, column string) string { return t.ID.String() + "." + column }

// Type returns the target type of column c of table t: the override if there is one, the
// source type unchanged when the direction does not cross engines, else the built-in map's.
func (m TypeMap) Type(t *Table, c Column) (string, error) {
	if typ, ok := m.Overrides[OverrideKey(t, c.Name)]; ok {
		return typ, nil
	}
	switch m.Dir {
	case DirMySQLToPostgres:
		return MySQLToPostgres(c)
	case DirPostgresToMySQL:
		return PostgresToMySQLFlavor(c, m.Flavor)
	}
	return c.Type, nil
}

// Unmappable returns one message per column of t that has no exact target type and no
// override, plus a message for a key MySQL cannot index. Each message names the column as
// schema.table.column and says which override would let it through.
func (m TypeMap) Unmappable(t *Table) []string {
	target := "PostgreSQL"
	if m.Dir == DirPostgresToMySQL {
		target = "MySQL"
	}
	var out []string
	fix := func(key, suggest string) string {
		if suggest == "" {
			return fmt.Sprintf(`add "%s": "<%s type>" under tables.types in the config to choose its type yourself, or exclude the table`, key, target)
		}
		return fmt.Sprintf(`add "%s": "%s" under tables.types in the config to create it as %s once you are sure every value fits that type, or exclude the table`, key, suggest, suggest)
	}
	var mapped []mappedColumn
	for _, c := range t.Columns {
		ok := OverrideKey(t, c.Name)
		if _, overridden := m.Overrides[ok]; overridden {
			continue
		}
		typ, err := m.Type(t, c)
		if err != nil {
			var te *TypeError
			if !errors.As(err, &te) {
				out = append(out, err.Error())
				continue
			}
			out = append(out, fmt.Sprintf("column %s (%s) cannot be carried exactly into %s: %s; %s", ok, te.Type, te.Engine, te.Reason, fix(ok, te.Suggest)))
			continue
		}
		mapped = append(mapped, mappedColumn{c, typ})
	}
	if m.Dir == DirPostgresToMySQL {
		out = append(out, mysqlLimits(t, mapped, fix)...)
	}
	return out
}

type mappedColumn struct {
	Column
	typ string // the target type
}

// MySQL's limits on a table, in bytes: InnoDB's widest index, and the row size that counts
// every column but the TEXT, BLOB and JSON ones.
const (
	mysqlMaxKeyBytes = 3072
	mysqlMaxRowBytes = 65535
)

// mysqlLimits checks the columns mapped for a MySQL target against what MySQL can create: a key
// column must not be a type MySQL indexes only by a prefix, the key must fit InnoDB's index
// limit, and the character columns must fit the row size limit. Column widths count 4 bytes per
// utf8mb4 character; other fixed-size columns are left out, so the sums are lower bounds.
func mysqlLimits(t *Table, cols []mappedColumn, fix func(key, suggest string) string) []string {
	var out []string
	key := map[string]bool{}
	for _, k := range t.Key {
		key[k] = true
	}
	keyBytes, rowBytes, widest, widestBytes := 0, 0, "", 0
	for _, c := range cols {
		base, args := pgShape(strings.Fields(c.typ)[0])
		width := 0
		if (base == "varchar" || base == "char") && len(args) == 1 {
			width = 4 * args[0]
			if strings.Contains(c.typ, "CHARACTER SET ascii") {
				width = args[0]
			}
		}
		if width > widestBytes {
			widest, widestBytes = c.Name, width
		}
		rowBytes += width
		if base == "varchar" {
			rowBytes += 2 // the length
		}
		if !key[c.Name] {
			continue
		}
		keyBytes += width
		if base == "longtext" || base == "longblob" || base == "json" {
			suggest := "varchar(255)"
			if base == "longblob" {
				suggest = "varbinary(255)"
			}
			ok := OverrideKey(t, c.Name)
			out = append(out, fmt.Sprintf("column %s (%s) is in the key of %s, and MySQL indexes a %s only by a prefix, which cannot identify a row; %s", ok, c.Type, t.ID, base, fix(ok, suggest)))
		}
	}
	if keyBytes > mysqlMaxKeyBytes {
		out = append(out, fmt.Sprintf("the key of %s (%s) takes up to %d bytes in MySQL, more than InnoDB's %d-byte index limit; give its character columns shorter types under tables.types in the config, if every value fits them",
			t.ID, strings.Join(t.Key, ", "), keyBytes, mysqlMaxKeyBytes))
	}
	if rowBytes > mysqlMaxRowBytes {
		out = append(out, fmt.Sprintf("the character columns of %s take up to %d bytes per row in MySQL, more than its %d-byte row size limit (longtext columns do not count); add \"%s\": \"longtext\" under tables.types in the config, and more such overrides until the rest fit",
			t.ID, rowBytes, mysqlMaxRowBytes, OverrideKey(t, widest)))
	}
	return out
}

// Problems returns the preflight problems of a migration's tables: every column that has no
// exact target type (check "types"), and every override that names no column of those tables
// (check "tables.types"), since a misspelt override would otherwise be ignored.
func (m TypeMap) Problems(tables []*Table) []Problem {
	var probs []Problem
	known := map[string]bool{}
	for _, t := range tables {
		for _, c := range t.Columns {
			known[OverrideKey(t, c.Name)] = true
		}
		for _, msg := range m.Unmappable(t) {
			probs = append(probs, Problem{Check: "types", Message: msg})
		}
	}
	var unused []string
	for k := range m.Overrides {
		if !known[k] {
			unused = append(unused, k)
		}
	}
	sort.Strings(unused)
	for _, k := range unused {
		probs = append(probs, Problem{Check: "tables.types", Message: fmt.Sprintf("tables.types names %s, which is not a column of a migrated table; correct the name (schema.table.column, as the source spells them) or remove it", k)})
	}
	return probs
}

// UnmappableColumns is TypeMap{Dir: dir, Overrides: overrides}.Unmappable(t).
func UnmappableColumns(t *Table, dir Direction, overrides map[string]string) []string {
	return TypeMap{Dir: dir, Overrides: overrides}.Unmappable(t)
}
