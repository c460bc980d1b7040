package mysql

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// Reasons a PostgreSQL value cannot be carried into MySQL. A *PGValueError wraps one of them.
var (
	ErrNotFinite   = errors.New("MySQL has no infinity or NaN")
	ErrOutOfRange  = errors.New("the value is outside the MySQL column's range")
	ErrTooPrecise  = errors.New("the value has more digits than the MySQL column keeps")
	ErrPGMalformed = errors.New("the value is not in PostgreSQL's text output form")
)

// mysqlMaxIndexBytes is the widest index InnoDB creates (with the DYNAMIC row format).
const mysqlMaxIndexBytes = 3072

// ForeignTables builds the MySQL schema for tables read from PostgreSQL, in database db.
//
// pre creates each table as db.<table name>: the PostgreSQL schema name is dropped, as a MySQL
// database is one namespace (preflight refuses two tables that would share a name; so does
// ForeignTables). Columns are typed by tm, NOT NULL is kept, and the table's Key becomes the
// primary key. Generated columns are left out, since their expressions are PostgreSQL SQL, and
// so are partitions: their rows are streamed and copied under the root's name, into the root's
// table.
//
// post adds the secondary indexes, one ALTER TABLE per table, to run after the copy: building
// an index once is faster than maintaining it row by row, and a unique index must not exist
// while the copy and the stream pass through states where two rows share a value. Only BTREE
// indexes have a MySQL counterpart. An index is also left out when MySQL cannot build it
// exactly: on a column it indexes only by a prefix (TEXT, BLOB, JSON), on a generated column,
// or wider than InnoDB's 3072 bytes. skipped describes everything left out, and why.
func ForeignTables(db string, tables []*schema.Table, indexes map[cdc.TableID][]schema.Index, tm schema.TypeMap) (pre, post, skipped []string, err error) {
	names := map[string]cdc.TableID{}
	for _, t := range tables {
		if t.Root != (cdc.TableID{}) && !t.IsRoot() {
			skipped = append(skipped, fmt.Sprintf("partition %s (its rows go to the table of %s)", t.ID, t.Root))
			continue
		}
		if other, ok := names[t.ID.Name]; ok {
			return nil, nil, nil, fmt.Errorf("tables %s and %s would both be %s on the target; exclude one of them", other, t.ID, QuoteTable(db, t.ID.Name))
		}
		names[t.ID.Name] = t.ID
		target := QuoteTable(db, t.ID.Name)

		types := make(map[string]string, len(t.Columns)) // column name to MySQL type; "" for generated
		auto, err := AutoIncrementColumn(t, tm)
		if err != nil {
			return nil, nil, nil, err
		}
		var defs []string
		for _, c := range t.Columns {
			if c.Generated {
				types[c.Name] = ""
				skipped = append(skipped, fmt.Sprintf("generated column %s.%s", t.ID, c.Name))
				continue
			}
			typ, err := tm.Type(t, c)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("table %s: %w", t.ID, err)
			}
			types[c.Name] = typ
			def := Quote(c.Name) + " " + typ
			if c.NotNull {
				def += " NOT NULL"
			}
			if !c.AutoIncrement {
				if d, ok := schema.MySQLDefault(c.Default, c.Type, typ); !ok {
					skipped = append(skipped, fmt.Sprintf("the default %s of %s.%s (not translated: set it on MySQL by hand if the application relies on it)", c.Default, t.ID, c.Name))
				} else if d != "" {
					def += " DEFAULT " + d
				}
			} else if why := autoIncrementProblem(typ, c, auto); why != "" {
				skipped = append(skipped, fmt.Sprintf("the ids of %s.%s (identity or serial): %s", t.ID, c.Name, why))
			} else {
				def += " AUTO_INCREMENT"
			}
			defs = append(defs, def)
		}
		if len(t.Key) > 0 {
			for _, k := range t.Key {
				if types[k] == "" {
					return nil, nil, nil, fmt.Errorf("table %s: key column %s is generated or missing, and generated columns are not created on MySQL; give the table another key", t.ID, k)
				}
			}
			defs = append(defs, "PRIMARY KEY ("+quoteNames(t.Key)+")")
		}
		if auto != "" && (len(t.Key) == 0 || t.Key[0] != auto) {
			// InnoDB needs an AUTO_INCREMENT column to lead an index, from the start.
			defs = append(defs, "KEY "+Quote(autoIncrementKey(auto, indexes[t.ID]))+" ("+Quote(auto)+")")
		}
		pre = append(pre, "CREATE TABLE "+target+" (\n  "+strings.Join(defs, ",\n  ")+"\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")

		var adds []string
		for _, ix := range indexes[t.ID] {
			if len(t.Key) > 0 && strings.Join(ix.Columns, "\x00") == strings.Join(t.Key, "\x00") {
				continue // the primary key already
			}
			if reason := indexProblem(ix, types); reason != "" {
				skipped = append(skipped, fmt.Sprintf("%s index %s on %s: %s", strings.ToLower(ix.Kind), ix.Name, t.ID, reason))
				continue
			}
			name := ix.Name
			if strings.EqualFold(name, "PRIMARY") {
				name = t.ID.Name + "_" + name // MySQL reserves the name for the primary key
			}
			unique := ""
			if ix.Unique {
				unique = "UNIQUE "
			}
			adds = append(adds, "ADD "+unique+"INDEX "+Quote(name)+" ("+quoteNames(ix.Columns)+")")
		}
		if len(adds) > 0 {
			post = append(post, "ALTER TABLE "+target+" "+strings.Join(adds, ", "))
		}
	}
	return pre, post, skipped, nil
}

// indexProblem says why MySQL cannot build ix exactly, or returns "". types maps each column to
// its MySQL type, "" for a generated column.
// AutoIncrementColumn returns the identity or serial column of t that becomes AUTO_INCREMENT on
// MySQL, which allows one per table, of an integer type and NOT NULL (MySQL writes a new id for
// a NULL): the one that leads the primary key if there is one, else the first; "" if none can.
func AutoIncrementColumn(t *schema.Table, tm schema.TypeMap) (string, error) {
	var first string
	for _, c := range t.Columns {
		if !c.AutoIncrement || c.Generated || !c.NotNull {
			continue
		}
		typ, err := tm.Type(t, c)
		if err != nil {
			return "", fmt.Errorf("table %s: %w", t.ID, err)
		}
		if !integerType(typ) {
			continue
		}
		if len(t.Key) > 0 && t.Key[0] == c.Name {
			return c.Name, nil
		}
		if first == "" {
			first = c.Name
		}
	}
	return first, nil
}

// autoIncrementProblem tells why an identity or serial column c, of MySQL type typ, cannot be
// AUTO_INCREMENT on MySQL, where auto is the table's one that is (see AutoIncrementColumn), or
// returns "".
func autoIncrementProblem(typ string, c schema.Column, auto string) string {
	switch {
	case !integerType(typ):
		return fmt.Sprintf("MySQL's AUTO_INCREMENT needs an integer column, and it is %s", typ)
	case !c.NotNull:
		return "the column can be NULL, and MySQL writes a new id where an AUTO_INCREMENT column is given NULL"
	case c.Name != auto:
		return fmt.Sprintf("MySQL allows one AUTO_INCREMENT column per table, and it is %s; the target hands out no ids for this one, so the application must give them", auto)
	}
	return ""
}

func integerType(typ string) bool {
	switch base, _ := mysqlTypeShape(typ); base {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		return true
	}
	return false
}

// autoIncrementKey names the index that an AUTO_INCREMENT column not leading the primary key
// gets, within MySQL's 64 characters and unlike any of the table's own indexes, which the
// post-data step adds after it (a name already there would count as built).
func autoIncrementKey(col string, own []schema.Index) string {
	for n := 1; ; n++ {
		suffix := "_auto_increment"
		if n > 1 {
			suffix += "_" + strconv.Itoa(n)
		}
		name := []rune(col)
		name = append(name[:min(len(name), 64-len(suffix))], []rune(suffix)...)
		if !slices.ContainsFunc(own, func(ix schema.Index) bool { return strings.EqualFold(ix.Name, string(name)) }) {
			return string(name)
		}
	}
}

func indexProblem(ix schema.Index, types map[string]string) string {
	if ix.Kind != "BTREE" {
		return fmt.Sprintf("MySQL has no %s index", strings.ToLower(ix.Kind))
	}
	if ix.Prefix {
		return "a prefix index has no PostgreSQL counterpart"
	}
	width := 0
	for _, col := range ix.Columns {
		typ, ok := types[col]
		switch {
		case !ok:
			return fmt.Sprintf("column %s is not in the table", col)
		case typ == "":
			return fmt.Sprintf("column %s is generated, and generated columns are not created on MySQL", col)
		}
		base, args := mysqlTypeShape(typ)
		switch base {
		case "tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob", "mediumblob", "longblob", "json":
			return fmt.Sprintf("MySQL indexes column %s (%s) only by a prefix; override its type with varchar(n) or varbinary(n) under tables.types in the config to keep the index", col, base)
		case "char", "varchar":
			if len(args) > 0 {
				if strings.Contains(strings.ToLower(typ), "character set ascii") || strings.Contains(strings.ToLower(typ), "character set latin1") {
					width += args[0]
				} else {
					width += 4 * args[0]
				}
			}
		case "binary", "varbinary":
			if len(args) > 0 {
				width += args[0]
			}
		}
	}
	if width > mysqlMaxIndexBytes {
		return fmt.Sprintf("its character columns take up to %d bytes, more than InnoDB's %d-byte index limit", width, mysqlMaxIndexBytes)
	}
	return ""
}

// mysqlTypeShape returns a MySQL type's base name, lower case, and the integers in its first
// parenthesis: "decimal(20,4)" gives "decimal" and [20 4], "datetime" gives "datetime" and nil.
func mysqlTypeShape(typ string) (string, []int) {
	typ = strings.TrimSpace(typ)
	end := strings.IndexAny(typ, "( ")
	if end < 0 {
		return strings.ToLower(typ), nil
	}
	base := strings.ToLower(typ[:end])
	rest := strings.TrimLeft(typ[end:], " ")
	if !strings.HasPrefix(rest, "(") {
		return base, nil
	}
	inner, _, ok := strings.Cut(rest[1:], ")")
	if !ok {
		return base, nil
	}
	var args []int
	for part := range strings.SplitSeq(inner, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 0 {
			return base, nil
		}
		args = append(args, n)
	}
	return base, args
}

func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = Quote(n)
	}
	return strings.Join(q, ", ")
}

// PGValueError is a PostgreSQL value that cannot be carried exactly into its MySQL column.
type PGValueError struct {
	Table  cdc.TableID
	Column string
	Type   string // the PostgreSQL type
	Target string // the MySQL type
	Value  []byte // the value, clipped
	Err    error  // the reason, wrapping one of ErrNotFinite, ErrOutOfRange, ErrTooPrecise, ErrPGMalformed
}

func (e *PGValueError) Error() string {
	return fmt.Sprintf("table %s column %s: %s value %q cannot be carried exactly into MySQL %s: %v; correct the value on the source, or choose another type for the column under tables.types in the config",
		e.Table, e.Column, e.Type, e.Value, e.Target, e.Err)
}

func (e *PGValueError) Unwrap() error { return e.Err }

// PGConverter converts the values of one PostgreSQL table, as PostgreSQL's text output prints
// them, into the canonical MySQL form (see the package doc) of the MySQL column types the type
// map gives them. pgoutput's text values and SELECT col::text both use that output, in any
// session TimeZone, with DateStyle ISO and the default extra_float_digits (1 or more: a lower
// setting rounds floats before they are read, and the converter cannot tell).
//
// A value the MySQL column cannot hold exactly is an error, never rounded: an infinite or NaN
// number, a date before year 1000 or after 9999 (also after conversion to UTC), a BC date, a
// number with more digits than the decimal's precision or scale.
type PGConverter struct {
	table cdc.TableID
	cols  []pgColumn
}

type pgColumn struct {
	name, typ, target string
	pgConv
}

// pgConv is the conversion of one column's non-NULL text values: at most one of its functions
// is set, and none for text that is already canonical.
type pgConv struct {
	// appendTo appends the converted value to dst.
	appendTo func(dst, src []byte) ([]byte, error)
	// grow is how many bytes appendTo may add to a value, to size a row's buffer.
	grow int
	// view returns the converted value as a subslice of src.
	view func(src []byte) ([]byte, error)
}

// NewPGConverter prepares the conversion of rows of t, a table read from PostgreSQL, whose
// values come in the order of its non-generated columns (the cdc.Relation order).
//
// Each column is converted by its PostgreSQL type and the family of the MySQL type tm gives
// it, with the MySQL type's precision: fractional second digits of datetime(p) and time(p),
// decimal(p,s). An overridden column is converted in the same way when its MySQL type is of
// the family the built-in map uses (bytea to varbinary is decoded, numeric to decimal(65,30)
// padded to 30 digits), and passes through unchanged otherwise (interval to varchar).
func NewPGConverter(t *schema.Table, tm schema.TypeMap) (*PGConverter, error) {
	c := &PGConverter{table: t.ID}
	for _, col := range t.Columns {
		if col.Generated {
			continue
		}
		target, err := tm.Type(t, col)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", t.ID, err)
		}
		c.cols = append(c.cols, pgColumn{name: col.Name, typ: col.Type, target: target, pgConv: pgConvFor(pgBaseType(col.Type), target)})
	}
	return c, nil
}

// Row converts one row, one value per column, into a new slice; row is not modified. A value
// that needs no conversion shares row's bytes. NULL stays NULL, and an unchanged TOAST value
// (cdc.ValueUnchanged) stays unchanged: the MySQL writer refuses it with its own error.
func (c *PGConverter) Row(row []cdc.Value) ([]cdc.Value, error) {
	if len(row) != len(c.cols) {
		return nil, fmt.Errorf("table %s: a row of %d values for %d columns", c.table, len(row), len(c.cols))
	}
	out := make([]cdc.Value, len(row))
	size := 0
	for i := range row {
		if row[i].Kind == cdc.ValueText && c.cols[i].appendTo != nil {
			size += len(row[i].Data) + c.cols[i].grow
		}
	}
	var buf []byte
	if size > 0 {
		buf = make([]byte, 0, size)
	}
	for i, v := range row {
		out[i] = v
		col := &c.cols[i]
		if v.Kind != cdc.ValueText {
			continue
		}
		var err error
		switch {
		case col.appendTo != nil:
			start := len(buf)
			if buf, err = col.appendTo(buf, v.Data); err == nil {
				// Capped, so that appending to one value cannot overwrite the next.
				out[i].Data = buf[start:len(buf):len(buf)]
			}
		case col.view != nil:
			out[i].Data, err = col.view(v.Data)
		}
		if err != nil {
			return nil, &PGValueError{Table: c.table, Column: col.name, Type: col.typ, Target: col.target,
				Value: append([]byte(nil), clipForError(v.Data)...), Err: err}
		}
	}
	return out, nil
}

// pgBaseType returns a format_type name without its modifiers, lower case:
// "timestamp(3) with time zone" gives "timestamp with time zone".
func pgBaseType(typ string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(typ); i++ {
		switch ch := typ[i]; {
		case ch == '(':
			depth++
		case ch == ')':
			depth--
		case depth == 0:
			b.WriteByte(ch)
		}
	}
	return strings.ToLower(strings.Join(strings.Fields(b.String()), " "))
}

// pgConvFor returns the conversion from a PostgreSQL type to a MySQL type, empty when the
// text carries over as it is.
func pgConvFor(pgType, target string) pgConv {
	base, args := mysqlTypeShape(target)
	arg := func(i, def int) int {
		if i < len(args) {
			return args[i]
		}
		return def
	}
	switch pgType {
	case "boolean":
		switch base {
		case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "bit", "bool", "boolean":
			return pgConv{appendTo: convBool, grow: 1}
		}
	case "bytea":
		switch base {
		case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
			return pgConv{appendTo: convBytea}
		}
	case "timestamp with time zone":
		if base == "datetime" || base == "timestamp" {
			scale := arg(0, 0)
			return pgConv{appendTo: func(dst, src []byte) ([]byte, error) { return convTimestamp(dst, src, true, scale) }, grow: 1 + scale}
		}
	case "timestamp without time zone":
		if base == "datetime" || base == "timestamp" {
			scale := arg(0, 0)
			return pgConv{appendTo: func(dst, src []byte) ([]byte, error) { return convTimestamp(dst, src, false, scale) }, grow: 1 + scale}
		}
	case "date":
		if base == "date" {
			return pgConv{view: convDate}
		}
	case "time without time zone":
		if base == "time" {
			scale := arg(0, 0)
			return pgConv{appendTo: func(dst, src []byte) ([]byte, error) { return convTime(dst, src, scale) }, grow: 1 + scale}
		}
	case "numeric":
		if base == "decimal" || base == "numeric" || base == "dec" || base == "fixed" {
			p, s := arg(0, 10), arg(1, 0)
			return pgConv{appendTo: func(dst, src []byte) ([]byte, error) { return convDecimal(dst, src, p, s) }, grow: 1 + s}
		}
	case "real", "double precision":
		from := 64
		if pgType == "real" {
			from = 32
		}
		switch {
		case base == "float" && from == 32:
			return pgConv{appendTo: func(dst, src []byte) ([]byte, error) { return convFloat(dst, src, 32, 32) }, grow: 8}
		case base == "double" || base == "real":
			return pgConv{appendTo: func(dst, src []byte) ([]byte, error) { return convFloat(dst, src, from, 64) }, grow: 16}
		}
	case "character":
		if base == "char" {
			return pgConv{view: convTrimSpaces}
		}
	}
	return pgConv{}
}

// convBool carries a boolean as tinyint(1)'s 1 or 0. Its output function prints "t" or "f"
// (pgoutput, COPY), but its cast to text gives "true" or "false".
func convBool(dst, src []byte) ([]byte, error) {
	switch string(src) {
	case "t", "true":
		return append(dst, '1'), nil
	case "f", "false":
		return append(dst, '0'), nil
	}
	return dst, fmt.Errorf("%w: a boolean is t, f, true or false", ErrPGMalformed)
}

// convTrimSpaces strips the spaces PostgreSQL pads a character(n) value with: MySQL strips them
// from a CHAR when it reads it, so the canonical form has none.
func convTrimSpaces(src []byte) ([]byte, error) {
	end := len(src)
	for end > 0 && src[end-1] == ' ' {
		end--
	}
	return src[:end:end], nil
}

// convBytea decodes bytea's hex output (\x0a0b), or its escape output when the session has
// bytea_output = escape (octal \ooo for unprintable bytes, \\ for a backslash).
func convBytea(dst, src []byte) ([]byte, error) {
	if len(src) >= 2 && src[0] == '\\' && src[1] == 'x' {
		b, err := hex.AppendDecode(dst, src[2:])
		if err != nil {
			return dst, fmt.Errorf("%w: bad hex bytea: %v", ErrPGMalformed, err)
		}
		return b, nil
	}
	b := dst
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		switch {
		case i+1 < len(src) && src[i+1] == '\\':
			b = append(b, '\\')
			i++
		case i+3 < len(src) && isOctal(src[i+1], '3') && isOctal(src[i+2], '7') && isOctal(src[i+3], '7'):
			b = append(b, (src[i+1]-'0')<<6|(src[i+2]-'0')<<3|(src[i+3]-'0'))
			i += 3
		default:
			return dst, fmt.Errorf("%w: bad escape in bytea", ErrPGMalformed)
		}
	}
	return b, nil
}

func isOctal(c, hi byte) bool { return c >= '0' && c <= hi }

// pgStamp is a parsed timestamp as PostgreSQL prints it with DateStyle ISO:
// "2024-01-31 10:00:00.5+05:30", or without the offset.
type pgStamp struct {
	year, month, day, hour, min, sec int
	frac                             []byte // the digits after the point
	offset                           int    // seconds east of UTC
}

var (
	errStampForm     = fmt.Errorf("%w: a timestamp is YYYY-MM-DD HH:MM:SS[.ffffff]", ErrPGMalformed)
	errStampZoneForm = fmt.Errorf("%w: a timestamp with time zone is YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM[:SS]]", ErrPGMalformed)
)

// parsePGStamp parses src as a timestamp, with a UTC offset if zone is set. It refuses
// infinity and BC dates, which MySQL cannot hold.
func parsePGStamp(src []byte, zone bool) (pgStamp, error) {
	var st pgStamp
	if err := notFiniteOrBC(src); err != nil {
		return st, err
	}
	bad := errStampForm
	if zone {
		bad = errStampZoneForm
	}
	i, ok := 0, true
	if st.year, i, ok = readDate(src); !ok {
		return st, bad
	}
	st.month, st.day = num2(src, i-5), num2(src, i-2)
	if len(src) < i+9 || src[i] != ' ' || !isClock(src[i+1:i+9]) {
		return st, bad
	}
	st.hour, st.min, st.sec = num2(src, i+1), num2(src, i+4), num2(src, i+7)
	i += 9
	st.frac, i = readFraction(src, i)
	if zone {
		if i >= len(src) || (src[i] != '+' && src[i] != '-') || !digitsAt(src, i+1, 2) {
			return st, bad
		}
		sign := 1
		if src[i] == '-' {
			sign = -1
		}
		off := num2(src, i+1) * 3600
		i += 3
		for unit := 60; unit >= 1 && i < len(src); unit /= 60 {
			if src[i] != ':' || !digitsAt(src, i+1, 2) {
				return st, bad
			}
			off += num2(src, i+1) * unit
			i += 3
		}
		st.offset = sign * off
	}
	if i != len(src) {
		return st, bad
	}
	return st, nil
}

// convTimestamp carries a timestamp into DATETIME(scale): with zone, as the UTC instant; without,
// as the same wall-clock time. The fraction is padded to scale digits.
func convTimestamp(dst, src []byte, zone bool, scale int) ([]byte, error) {
	st, err := parsePGStamp(src, zone)
	if err != nil {
		return dst, err
	}
	if zone {
		t := time.Date(st.year, time.Month(st.month), st.day, st.hour, st.min, st.sec, 0, time.UTC).
			Add(-time.Duration(st.offset) * time.Second)
		if y := t.Year(); y < 1000 || y > 9999 {
			return dst, fmt.Errorf("%w: in UTC it is in year %d, and MySQL's DATETIME holds years 1000 to 9999", ErrOutOfRange, y)
		}
		dst = t.AppendFormat(dst, time.DateTime)
	} else {
		// A year outside 1000 to 9999 is printed with other than four digits.
		if st.year < 1000 || st.year > 9999 || src[4] != '-' {
			return dst, fmt.Errorf("%w: MySQL's DATETIME holds years 1000 to 9999", ErrOutOfRange)
		}
		dst = append(dst, src[:len(time.DateTime)]...)
	}
	return appendFraction(dst, st.frac, scale)
}

// convDate checks that a date fits MySQL's DATE, whose text is the same.
func convDate(src []byte) ([]byte, error) {
	if err := notFiniteOrBC(src); err != nil {
		return nil, err
	}
	year, i, ok := readDate(src)
	if !ok || i != len(src) {
		return nil, fmt.Errorf("%w: a date is YYYY-MM-DD", ErrPGMalformed)
	}
	if year < 1000 || year > 9999 || i != 10 {
		return nil, fmt.Errorf("%w: MySQL's DATE holds years 1000 to 9999", ErrOutOfRange)
	}
	return src, nil
}

// convTime carries a time of day (00:00:00 to 24:00:00) into TIME(scale), which holds it as a
// duration and prints it the same way, with scale fractional digits.
func convTime(dst, src []byte, scale int) ([]byte, error) {
	if len(src) < 8 || !isClock(src[:8]) {
		return dst, fmt.Errorf("%w: a time is HH:MM:SS[.ffffff]", ErrPGMalformed)
	}
	frac, i := readFraction(src, 8)
	if i != len(src) {
		return dst, fmt.Errorf("%w: a time is HH:MM:SS[.ffffff]", ErrPGMalformed)
	}
	return appendFraction(append(dst, src[:8]...), frac, scale)
}

// notFiniteOrBC refuses the date and timestamp values MySQL has no form for.
func notFiniteOrBC(src []byte) error {
	switch {
	case string(src) == "infinity" || string(src) == "-infinity":
		return fmt.Errorf("%w: PostgreSQL's %s is no date", ErrNotFinite, src)
	case bytes.HasSuffix(src, []byte(" BC")):
		return fmt.Errorf("%w: a BC date is before year 1000, the first MySQL holds", ErrOutOfRange)
	}
	return nil
}

// readDate reads "YYYY-MM-DD" at the start of src, with a year of four or more digits. It
// returns the year and the index after the date.
func readDate(src []byte) (year, end int, ok bool) {
	i := 0
	for i < len(src) && i < 9 && src[i] >= '0' && src[i] <= '9' {
		year = year*10 + int(src[i]-'0')
		i++
	}
	if i < 4 || len(src) < i+6 || src[i] != '-' || !digitsAt(src, i+1, 2) || src[i+3] != '-' || !digitsAt(src, i+4, 2) {
		return 0, 0, false
	}
	return year, i + 6, true
}

// isClock reports whether b is "HH:MM:SS".
func isClock(b []byte) bool {
	return len(b) == 8 && digitsAt(b, 0, 2) && b[2] == ':' && digitsAt(b, 3, 2) && b[5] == ':' && digitsAt(b, 6, 2)
}

// readFraction reads ".digits" at src[i:], if there, and returns the digits and the index after them.
func readFraction(src []byte, i int) ([]byte, int) {
	if i >= len(src) || src[i] != '.' {
		return nil, i
	}
	j := i + 1
	for j < len(src) && src[j] >= '0' && src[j] <= '9' {
		j++
	}
	return src[i+1 : j], j
}

// appendFraction appends the fractional second digits frac as exactly scale digits: padded
// with zeros, or cut when only zeros are cut.
func appendFraction(b, frac []byte, scale int) ([]byte, error) {
	if len(frac) > scale {
		for _, c := range frac[scale:] {
			if c != '0' {
				return b, fmt.Errorf("%w: %d fractional second digits, and the column keeps %d", ErrTooPrecise, len(bytes.TrimRight(frac, "0")), scale)
			}
		}
		frac = frac[:scale]
	}
	if scale == 0 {
		return b, nil
	}
	b = append(b, '.')
	b = append(b, frac...)
	for range scale - len(frac) {
		b = append(b, '0')
	}
	return b, nil
}

func digitsAt(b []byte, i, n int) bool {
	if i < 0 || i+n > len(b) {
		return false
	}
	for _, c := range b[i : i+n] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// num2 is the two-digit number at b[i:], already checked to be digits.
func num2(b []byte, i int) int { return int(b[i]-'0')*10 + int(b[i+1]-'0') }

// convDecimal carries a numeric into DECIMAL(p,s), which prints exactly s fractional digits. A
// value with more integer digits than p-s, or non-zero digits past s, does not fit.
func convDecimal(dst, src []byte, p, s int) ([]byte, error) {
	switch string(src) {
	case "NaN", "Infinity", "-Infinity":
		return dst, fmt.Errorf("%w: MySQL's DECIMAL has no %s", ErrNotFinite, src)
	}
	i := 0
	neg := len(src) > 0 && src[0] == '-'
	if neg {
		i++
	}
	intStart := i
	for i < len(src) && src[i] >= '0' && src[i] <= '9' {
		i++
	}
	intPart := src[intStart:i]
	var frac []byte
	if i < len(src) && src[i] == '.' {
		j := i + 1
		for j < len(src) && src[j] >= '0' && src[j] <= '9' {
			j++
		}
		frac, i = src[i+1:j], j
	}
	if i != len(src) || len(intPart) == 0 {
		return dst, fmt.Errorf("%w: a numeric is [-]digits[.digits]", ErrPGMalformed)
	}
	intPart = bytes.TrimLeft(intPart, "0")
	if len(intPart) > p-s {
		return dst, fmt.Errorf("%w: %d digits before the point, and decimal(%d,%d) holds %d", ErrOutOfRange, len(intPart), p, s, p-s)
	}
	if len(frac) > s {
		if len(bytes.TrimRight(frac[s:], "0")) > 0 {
			return dst, fmt.Errorf("%w: %d digits after the point, and decimal(%d,%d) holds %d", ErrTooPrecise, len(bytes.TrimRight(frac, "0")), p, s, s)
		}
		frac = frac[:s]
	}
	b := dst
	// MySQL has no negative zero: -0.00 is stored and printed as 0.00.
	if neg && (len(intPart) > 0 || len(bytes.TrimLeft(frac, "0")) > 0) {
		b = append(b, '-')
	}
	if len(intPart) == 0 {
		b = append(b, '0')
	}
	b = append(b, intPart...)
	if s > 0 {
		b = append(b, '.')
		b = append(b, frac...)
		for range s - len(frac) {
			b = append(b, '0')
		}
	}
	return b, nil
}

// convFloat reads a real (from 32 bits) or double precision (64) and prints it as MySQL's
// canonical FLOAT (to 32) or DOUBLE (64) text: the shortest that reads back the same bits.
// Negative zero becomes 0, which compares equal to it in both engines.
func convFloat(dst, src []byte, from, to int) ([]byte, error) {
	f, err := strconv.ParseFloat(string(src), from)
	switch {
	case err != nil:
		return dst, fmt.Errorf("%w: not a float", ErrPGMalformed)
	case math.IsNaN(f) || math.IsInf(f, 0):
		return dst, fmt.Errorf("%w: MySQL's FLOAT and DOUBLE have no %s", ErrNotFinite, src)
	}
	if f == 0 {
		// MariaDB stores -0 as 0, and the literal -0 is the integer 0 in both engines.
		f = 0
	}
	return strconv.AppendFloat(dst, f, 'g', -1, to), nil
}
