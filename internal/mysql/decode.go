package mysql

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// Position is a point in a MySQL or MariaDB binlog: the GTID set of every transaction before
// it, in the server's flavor ("0-1-42" on MariaDB, "uuid:1-42" on MySQL).
type Position struct {
	Flavor string
	GTID   string
	// File and Offset are the binlog coordinates just past the event that ended the
	// transaction, when the stream knows them: for the lag in bytes only, never checkpointed.
	File   string
	Offset uint32
}

// String returns the GTID set text.
func (p Position) String() string { return p.GTID }

// ParsePosition reads a GTID set of the flavor (mysql.MySQLFlavor or mysql.MariaDBFlavor) and
// returns it in its normal form. The empty set is valid: it means the start of the binlog.
func ParsePosition(flavor, s string) (Position, error) {
	set, err := parseGTIDSet(flavor, s)
	if err != nil {
		return Position{}, err
	}
	return Position{Flavor: flavor, GTID: set.String()}, nil
}

func parseGTIDSet(flavor, s string) (mysql.GTIDSet, error) {
	// MySQL prints gtid_executed with a newline after each comma.
	s = strings.Join(strings.Fields(s), "")
	if flavor != mysql.MySQLFlavor && flavor != mysql.MariaDBFlavor {
		return nil, fmt.Errorf("gtid position: unknown flavor %q", flavor)
	}
	set, err := mysql.ParseGTIDSet(flavor, s)
	if err != nil {
		return nil, fmt.Errorf("gtid position %q is not a %s GTID set: %w", s, flavor, err)
	}
	return set, nil
}

// Behind reports whether the GTID set seen lacks a transaction of the set applied: a source
// position read before that transaction was applied. Sets that do not parse are not compared.
func Behind(flavor, seen, applied string) bool {
	s, err := parseGTIDSet(flavor, seen)
	if err != nil {
		return false
	}
	a, err := parseGTIDSet(flavor, applied)
	return err == nil && !s.Contain(a)
}

// CurrentPosition reads the server's current GTID position: @@gtid_binlog_pos on MariaDB,
// @@gtid_executed on MySQL.
func CurrentPosition(c *client.Conn) (Position, error) {
	version, _, err := QueryString(c, "SELECT VERSION()")
	if err != nil {
		return Position{}, fmt.Errorf("read the server version: %w", err)
	}
	flavor := Flavor(version)
	query := "SELECT @@GLOBAL.gtid_executed"
	if flavor == mysql.MariaDBFlavor {
		query = "SELECT @@GLOBAL.gtid_binlog_pos"
	}
	s, _, err := QueryString(c, query)
	if err != nil {
		return Position{}, fmt.Errorf("read the gtid position: %w", err)
	}
	return ParsePosition(flavor, s)
}

// appendBinlog appends a non-NULL binlog row value, as go-mysql decodes it (ParseTime and
// UseDecimal off, timestamps in UTC), in canonical form.
func (k colCodec) appendBinlog(buf []byte, v any) ([]byte, error) {
	switch k.kind {
	case kindSigned, kindUnsigned:
		if u, ok := v.(uint64); ok { // with full row metadata, unsigned columns come unsigned
			return strconv.AppendUint(buf, u, 10), nil
		}
		n, ok := binlogInt(v)
		if !ok {
			break
		}
		if k.kind == kindSigned || n >= 0 {
			return strconv.AppendInt(buf, n, 10), nil
		}
		// Without row metadata the binlog gives every integer as signed.
		return strconv.AppendUint(buf, uint64(n)&(uint64(1)<<k.bits-1), 10), nil
	case kindFloat:
		if f, ok := v.(float32); ok {
			return appendFloat32(buf, f), nil
		}
	case kindDouble:
		if f, ok := v.(float64); ok {
			return strconv.AppendFloat(buf, f, 'g', -1, 64), nil
		}
	case kindBit:
		if n, ok := v.(int64); ok {
			return strconv.AppendUint(buf, uint64(n), 10), nil
		}
	case kindYear:
		if n, ok := v.(int); ok {
			if n == 0 {
				return append(buf, "0000"...), nil
			}
			return strconv.AppendInt(buf, int64(n), 10), nil
		}
	case kindEnum:
		if n, ok := v.(int64); ok {
			if n == 0 { // the empty string MySQL stores for an invalid value
				return buf, nil
			}
			if n < 0 || int(n) > len(k.elements) {
				return buf, fmt.Errorf("enum index %d out of range: the column has %d members", n, len(k.elements))
			}
			return append(buf, k.elements[n-1]...), nil
		}
	case kindSet:
		if n, ok := v.(int64); ok {
			mask := uint64(n)
			if len(k.elements) < 64 && mask>>len(k.elements) != 0 {
				return buf, fmt.Errorf("set bitmap %#x has members beyond the column's %d", mask, len(k.elements))
			}
			for first := true; mask != 0; first = false {
				i := bits.TrailingZeros64(mask)
				mask &^= 1 << i
				if !first {
					buf = append(buf, ',')
				}
				buf = append(buf, k.elements[i]...)
			}
			return buf, nil
		}
	case kindBinary:
		start := len(buf)
		buf = appendRaw(buf, v)
		for len(buf)-start < k.length {
			buf = append(buf, 0)
		}
		return buf, nil
	case kindTime:
		s, ok := v.(string)
		if !ok {
			break
		}
		buf = append(buf, s...)
		if k.scale > 0 && !strings.Contains(s, ".") {
			buf = append(buf, '.')
			for range k.scale {
				buf = append(buf, '0')
			}
		}
		return buf, nil
	default:
		switch v.(type) {
		case string, []byte:
			return appendRaw(buf, v), nil
		case *replication.JsonDiff:
			return buf, errors.New("a partial JSON update: set binlog_row_value_options='' on the source")
		}
	}
	return buf, fmt.Errorf("unexpected binlog value %T", v)
}

func appendRaw(buf []byte, v any) []byte {
	switch s := v.(type) {
	case string:
		return append(buf, s...)
	case []byte:
		return append(buf, s...)
	}
	return buf
}

func binlogInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int8:
		return int64(n), true
	case int16:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	}
	return 0, false
}

// tableDecoder turns binlog rows of one table into canonical values of its Relation.
type tableDecoder struct {
	table  *schema.Table
	rel    *cdc.Relation
	codecs []colCodec // one per table column, generated ones included
	keys   []int      // key column indexes in rel
	// copied holds the indexes in table.Columns of the columns of rel.
	copied []int
}

func newTableDecoder(t *schema.Table) *tableDecoder {
	d := &tableDecoder{table: t, rel: Relation(t)}
	for i := range t.Columns {
		d.codecs = append(d.codecs, newCodec(&t.Columns[i]))
		if !t.Columns[i].Generated {
			d.copied = append(d.copied, i)
		}
	}
	d.keys = d.rel.KeyColumns()
	return d
}

// check verifies that the binlog's table still has the columns the migration read from the
// catalog. A mismatch means DDL the stream did not see, or saw and was told to pass.
func (d *tableDecoder) check(tm *replication.TableMapEvent) error {
	if int(tm.ColumnCount) != len(d.table.Columns) {
		return &cdc.DecodeError{Err: fmt.Errorf("table %s has %d columns in the binlog but %d in the catalog migrated read: "+
			"the source table changed; apply the same change to the target, then restart migrated", d.table.ID, tm.ColumnCount, len(d.table.Columns))}
	}
	if names := tm.ColumnNameString(); len(names) == len(d.table.Columns) {
		for i, n := range names {
			if !strings.EqualFold(n, d.table.Columns[i].Name) {
				return &cdc.DecodeError{Err: fmt.Errorf("table %s: binlog column %d is %s but the catalog migrated read has %s: "+
					"the source table changed; apply the same change to the target, then restart migrated", d.table.ID, i+1, n, d.table.Columns[i].Name)}
			}
		}
	}
	return nil
}

// decode converts one row image into values of rel. skipped lists the columns the image left
// out, which only a binlog_row_image other than FULL does.
func (d *tableDecoder) decode(row []any, skipped []int) ([]cdc.Value, error) {
	for _, i := range skipped {
		if i < len(d.table.Columns) && !d.table.Columns[i].Generated {
			return nil, &cdc.DecodeError{Err: fmt.Errorf("table %s: the binlog row lacks column %s: set binlog_row_image=FULL on the source", d.table.ID, d.table.Columns[i].Name)}
		}
	}
	vals := make([]cdc.Value, len(d.copied))
	var ends [64]int
	end := ends[:0]
	if len(d.copied) > len(ends) {
		end = make([]int, 0, len(d.copied))
	}
	buf := make([]byte, 0, binlogRowSize(row))
	var err error
	for j, i := range d.copied {
		if row[i] == nil {
			vals[j].Kind = cdc.ValueNull
		} else if buf, err = d.codecs[i].appendBinlog(buf, row[i]); err != nil {
			return nil, &cdc.DecodeError{Err: fmt.Errorf("table %s column %s: %w", d.table.ID, d.table.Columns[i].Name, err)}
		}
		end = append(end, len(buf))
	}
	start := 0
	for j := range end {
		if vals[j].Kind == cdc.ValueText {
			vals[j].Data = buf[start:end[j]:end[j]]
		}
		start = end[j]
	}
	return vals, nil
}

func binlogRowSize(row []any) int {
	n := 1
	for _, v := range row {
		switch s := v.(type) {
		case string:
			n += len(s)
		case []byte:
			n += len(s)
		default:
			n += 20
		}
	}
	return n
}

// keyChanged reports whether an update moved the row to another key.
func (d *tableDecoder) keyChanged(before, after []cdc.Value) bool {
	for _, i := range d.keys {
		if before[i].Kind != after[i].Kind || string(before[i].Data) != string(after[i].Data) {
			return true
		}
	}
	return false
}

// unsupportedType reports column types whose binlog form this package cannot yet print the
// way the server's text protocol does.
func unsupportedType(t *schema.Table) error {
	for _, c := range t.Columns {
		switch c.DataType {
		case "inet4", "inet6", "uuid":
			return &cdc.DecodeError{Err: fmt.Errorf("table %s column %s: type %s is not supported by the binlog stream", t.ID, c.Name, c.DataType)}
		}
	}
	return nil
}

// queryKind is what a query event does, as far as the stream is concerned.
type queryKind uint8

const (
	queryOther queryKind = iota
	queryBegin
	queryCommit
	// queryDML changes rows by statement: the stream cannot see which.
	queryDML
	queryTruncate
	// queryDDL changes or removes tables.
	queryDDL
)

// queryStmt is a query event reduced to what the stream acts on.
type queryStmt struct {
	kind queryKind
	// tables are the tables a DDL or TRUNCATE changes, or every name a DML statement mentions
	// (the check errs on the side of stopping).
	tables []cdc.TableID
	// dbs are the databases a DROP DATABASE removes.
	dbs []string
}

// readQuery reads a query event's statement. defaultDB is the event's current database, which
// unqualified table names belong to.
func readQuery(query []byte, defaultDB string) queryStmt {
	switch string(query) { // the statements of every transaction on MySQL, without a lexer
	case "BEGIN":
		return queryStmt{kind: queryBegin}
	case "COMMIT":
		return queryStmt{kind: queryCommit}
	}
	p := &queryParser{toks: tokenizeQuery(string(query)), db: defaultDB}
	switch p.next() {
	case "BEGIN":
		return queryStmt{kind: queryBegin}
	case "START":
		if p.next() == "TRANSACTION" {
			return queryStmt{kind: queryBegin}
		}
	case "COMMIT":
		return queryStmt{kind: queryCommit}
	case "ROLLBACK":
		for p.i < len(p.toks) {
			if p.next() == "TO" { // ROLLBACK TO SAVEPOINT ends nothing
				return queryStmt{}
			}
		}
		return queryStmt{kind: queryCommit}
	case "INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD":
		return queryStmt{kind: queryDML, tables: p.allNames()}
	case "TRUNCATE":
		p.accept("TABLE")
		if t, ok := p.name(); ok {
			return queryStmt{kind: queryTruncate, tables: []cdc.TableID{t}}
		}
	case "ALTER":
		p.accept("ONLINE")
		p.accept("IGNORE")
		if p.accept("TABLE") {
			p.ifExists()
			return p.ddl(p.name())
		}
	case "DROP":
		switch p.next() {
		case "TABLE", "TABLES":
			return p.ddlList("")
		case "INDEX":
			return p.onTable()
		case "DATABASE", "SCHEMA":
			p.ifExists()
			if p.i < len(p.toks) && p.toks[p.i].ident {
				return queryStmt{kind: queryDDL, dbs: []string{p.toks[p.i].s}}
			}
		}
	case "RENAME":
		if p.accept("TABLE") || p.accept("TABLES") {
			return p.ddlList("TO")
		}
	case "CREATE":
		replace := p.accept("OR") && p.accept("REPLACE")
		if p.accept("TEMPORARY") {
			return queryStmt{}
		}
		for p.accept("UNIQUE") || p.accept("FULLTEXT") || p.accept("SPATIAL") || p.accept("ONLINE") || p.accept("OFFLINE") {
		}
		if p.accept("INDEX") {
			return p.onTable()
		}
		if replace && p.accept("TABLE") { // CREATE OR REPLACE drops the table first
			return p.ddl(p.name())
		}
	}
	return queryStmt{}
}

type queryToken struct {
	s     string
	ident bool // a word or a `quoted` identifier, not punctuation or a literal
	// quoted identifiers are never keywords.
	quoted bool
}

type queryParser struct {
	toks []queryToken
	i    int
	db   string
}

// next returns the next token as an upper case keyword, or "" when it cannot be one.
func (p *queryParser) next() string {
	if p.i >= len(p.toks) {
		return ""
	}
	t := p.toks[p.i]
	p.i++
	if !t.ident || t.quoted {
		return ""
	}
	return strings.ToUpper(t.s)
}

// accept consumes the keyword kw if it comes next.
func (p *queryParser) accept(kw string) bool {
	if p.i < len(p.toks) && p.toks[p.i].ident && !p.toks[p.i].quoted && strings.EqualFold(p.toks[p.i].s, kw) {
		p.i++
		return true
	}
	return false
}

// punct consumes the punctuation s if it comes next.
func (p *queryParser) punct(s string) bool {
	if p.i < len(p.toks) && !p.toks[p.i].ident && p.toks[p.i].s == s {
		p.i++
		return true
	}
	return false
}

// ifExists consumes IF [NOT] EXISTS.
func (p *queryParser) ifExists() {
	if p.accept("IF") {
		p.accept("NOT")
		p.accept("EXISTS")
	}
}

// name reads [db.]table.
func (p *queryParser) name() (cdc.TableID, bool) {
	if p.i >= len(p.toks) || !p.toks[p.i].ident {
		return cdc.TableID{}, false
	}
	first := p.toks[p.i].s
	p.i++
	if p.i+1 < len(p.toks) && p.toks[p.i+1].ident && p.punct(".") {
		p.i++
		return cdc.TableID{Schema: first, Name: p.toks[p.i-1].s}, true
	}
	return cdc.TableID{Schema: p.db, Name: first}, true
}

func (p *queryParser) ddl(t cdc.TableID, ok bool) queryStmt {
	if !ok {
		return queryStmt{}
	}
	return queryStmt{kind: queryDDL, tables: []cdc.TableID{t}}
}

// ddlList reads names separated by commas (and by sep, the TO of RENAME TABLE a TO b).
func (p *queryParser) ddlList(sep string) queryStmt {
	st := queryStmt{kind: queryDDL}
	for {
		p.ifExists()
		t, ok := p.name()
		if !ok {
			break
		}
		st.tables = append(st.tables, t)
		if (sep != "" && p.accept(sep)) || p.punct(",") {
			continue
		}
		break
	}
	if len(st.tables) == 0 {
		return queryStmt{}
	}
	return st
}

// onTable reads the table of CREATE INDEX ... ON t and DROP INDEX ... ON t.
func (p *queryParser) onTable() queryStmt {
	for p.i < len(p.toks) {
		if p.accept("ON") {
			return p.ddl(p.name())
		}
		p.i++
	}
	return queryStmt{}
}

// allNames returns every db.table pair and every identifier as a table of the current
// database.
func (p *queryParser) allNames() []cdc.TableID {
	var out []cdc.TableID
	for i, t := range p.toks {
		if !t.ident {
			continue
		}
		if i+2 < len(p.toks) && p.toks[i+1].s == "." && !p.toks[i+1].ident && p.toks[i+2].ident {
			out = append(out, cdc.TableID{Schema: t.s, Name: p.toks[i+2].s})
		}
		if i == 0 || p.toks[i-1].s != "." || p.toks[i-1].ident {
			out = append(out, cdc.TableID{Schema: p.db, Name: t.s})
		}
	}
	return out
}

// tokenizeQuery splits a statement into words, `identifiers`, literals (as a lone "'") and
// punctuation. Comments are dropped, except the executable /*! ... */ and /*M! ... */ kind,
// whose content counts.
func tokenizeQuery(q string) []queryToken {
	var toks []queryToken
	inExec := false
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#' || (c == '-' && strings.HasPrefix(q[i:], "-- ")) || (c == '-' && q[i:] == "--"):
			if j := strings.IndexByte(q[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(q)
			}
		case strings.HasPrefix(q[i:], "/*!") || strings.HasPrefix(q[i:], "/*M!"):
			i += strings.IndexByte(q[i:], '!') + 1
			for i < len(q) && q[i] >= '0' && q[i] <= '9' {
				i++
			}
			inExec = true
		case strings.HasPrefix(q[i:], "/*"):
			if j := strings.Index(q[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(q)
			}
		case c == '*' && inExec && strings.HasPrefix(q[i:], "*/"):
			inExec = false
			i += 2
		case c == '`':
			var b strings.Builder
			i++
			for i < len(q) {
				if q[i] == '`' {
					if i+1 < len(q) && q[i+1] == '`' {
						b.WriteByte('`')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(q[i])
				i++
			}
			toks = append(toks, queryToken{s: b.String(), ident: true, quoted: true})
		case c == '\'' || c == '"':
			i++
			for i < len(q) {
				if q[i] == '\\' {
					i += 2
					continue
				}
				if q[i] == c {
					if i+1 < len(q) && q[i+1] == c {
						i += 2
						continue
					}
					i++
					break
				}
				i++
			}
			toks = append(toks, queryToken{s: "'"})
		case isWordByte(c):
			j := i
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			toks = append(toks, queryToken{s: q[i:j], ident: true})
			i = j
		default:
			toks = append(toks, queryToken{s: q[i : i+1]})
			i++
		}
	}
	return toks
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}
