package mysql

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// Match decides whether a table takes part in the migration.
type Match func(db, table string) bool

// StateDB is the database holding migrated's own tables on a MySQL server: the checkpoint and
// progress on a target, the watermark and heartbeat table on a source.
const StateDB = "_migrated"

const tablesSQL = `
SELECT t.TABLE_NAME, coalesce(t.TABLE_ROWS, 0), coalesce(t.DATA_LENGTH, 0), coalesce(t.ENGINE, '')
  FROM information_schema.TABLES t
 WHERE t.TABLE_SCHEMA = ? AND t.TABLE_TYPE = 'BASE TABLE'
 ORDER BY t.TABLE_NAME`

const columnsSQL = `
SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, coalesce(EXTRA, ''),
       coalesce(CHARACTER_MAXIMUM_LENGTH, 0), coalesce(NUMERIC_PRECISION, 0), coalesce(NUMERIC_SCALE, 0),
       coalesce(DATETIME_PRECISION, 0), coalesce(CHARACTER_SET_NAME, ''), coalesce(COLLATION_NAME, ''),
       COLUMN_DEFAULT
  FROM information_schema.COLUMNS
 WHERE TABLE_SCHEMA = ?
 ORDER BY TABLE_NAME, ORDINAL_POSITION`

// Unique keys whose columns are all NOT NULL, the primary key first.
const keysSQL = `
SELECT s.TABLE_NAME, s.INDEX_NAME, s.COLUMN_NAME, s.SEQ_IN_INDEX, s.NULLABLE, coalesce(s.SUB_PART, 0)
  FROM information_schema.STATISTICS s
 WHERE s.TABLE_SCHEMA = ? AND s.NON_UNIQUE = 0
 ORDER BY s.TABLE_NAME, s.INDEX_NAME = 'PRIMARY' DESC, s.INDEX_NAME, s.SEQ_IN_INDEX`

// Tables reads the base tables of db that match, with their columns, the key that identifies a
// row (the primary key, else the first unique key on NOT NULL columns without a prefix) and the
// server's row and size estimates.
func Tables(c *client.Conn, db string, match Match) ([]*schema.Table, error) {
	rows, err := QueryStrings(c, tablesSQL, db)
	if err != nil {
		return nil, fmt.Errorf("read the mysql catalog of %s: %w", db, err)
	}
	byName := map[string]*schema.Table{}
	var tables []*schema.Table
	for _, r := range rows {
		name := *r[0]
		if match != nil && !match(db, name) {
			continue
		}
		t := &schema.Table{ID: cdc.TableID{Schema: db, Name: name}}
		t.Root = t.ID
		t.EstimatedRows, _ = strconv.ParseInt(*r[1], 10, 64)
		t.Bytes, _ = strconv.ParseInt(*r[2], 10, 64)
		byName[name] = t
		tables = append(tables, t)
	}
	if len(tables) == 0 {
		return nil, nil
	}
	flavor := Flavor(c.GetServerVersion())
	cols, err := QueryStrings(c, columnsSQL, db)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", db, err)
	}
	for _, r := range cols {
		t := byName[*r[0]]
		if t == nil {
			continue
		}
		t.Columns = append(t.Columns, parseColumn(r, flavor))
	}
	keys, err := QueryStrings(c, keysSQL, db)
	if err != nil {
		return nil, fmt.Errorf("read the keys of %s: %w", db, err)
	}
	type index struct {
		cols   []string
		usable bool
	}
	indexes := map[string]map[string]*index{}
	var order = map[string][]string{}
	for _, r := range keys {
		table, name := *r[0], *r[1]
		if byName[table] == nil {
			continue
		}
		if indexes[table] == nil {
			indexes[table] = map[string]*index{}
		}
		ix := indexes[table][name]
		if ix == nil {
			ix = &index{usable: true}
			indexes[table][name] = ix
			order[table] = append(order[table], name)
		}
		ix.cols = append(ix.cols, *r[2])
		// A nullable column or a prefix (SUB_PART) cannot identify a row.
		if *r[4] == "YES" || *r[5] != "0" {
			ix.usable = false
		}
	}
	for _, t := range tables {
		for _, name := range order[t.ID.Name] {
			ix := indexes[t.ID.Name][name]
			if !ix.usable {
				continue
			}
			t.Key = ix.cols
			t.KeyKind = "unique key " + name
			if name == "PRIMARY" {
				t.KeyKind = "primary key"
			}
			break
		}
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].ID.Name < tables[j].ID.Name })
	return tables, nil
}

// parseColumn reads one row of columnsSQL from a server of the flavor.
func parseColumn(r []*string, flavor string) schema.Column {
	col := schema.Column{
		Name:      *r[1],
		DataType:  strings.ToLower(*r[2]),
		Type:      *r[3],
		NotNull:   *r[4] == "NO",
		Charset:   *r[10],
		Collation: *r[11],
	}
	extra := strings.ToUpper(*r[5])
	// MySQL 8 marks a default that is an expression (CURRENT_TIMESTAMP, (uuid())) with
	// DEFAULT_GENERATED: such a column is an ordinary one, written like any other.
	expression := strings.Contains(extra, "DEFAULT_GENERATED")
	generated := strings.ReplaceAll(extra, "DEFAULT_GENERATED", "")
	col.Generated = strings.Contains(generated, "GENERATED") || strings.Contains(generated, "VIRTUAL") || strings.Contains(generated, "PERSISTENT") || strings.Contains(generated, "STORED")
	col.AutoIncrement = strings.Contains(extra, "AUTO_INCREMENT")
	col.Unsigned = strings.Contains(strings.ToLower(col.Type), "unsigned")
	col.Length, _ = strconv.ParseInt(*r[6], 10, 64)
	prec, _ := strconv.Atoi(*r[7])
	scale, _ := strconv.Atoi(*r[8])
	fsp, _ := strconv.Atoi(*r[9])
	switch col.DataType {
	case "decimal":
		col.Precision, col.Scale = prec, scale
	case "datetime", "timestamp", "time":
		col.Scale = fsp
	case "bit":
		col.Precision = prec
	case "enum", "set":
		col.Elements = parseElements(col.Type)
	}
	if r[12] != nil {
		col.Default = *r[12]
		// MySQL 8 prints a literal default unquoted; MariaDB, as the rest of migrated reads it,
		// quotes it. (MySQL 5.7 marks no expression, but its only one is CURRENT_TIMESTAMP.)
		now := (col.DataType == "timestamp" || col.DataType == "datetime") && strings.HasPrefix(strings.ToUpper(col.Default), "CURRENT_TIMESTAMP")
		if flavor == mysql.MySQLFlavor && !expression && !now && quotedDefault(col.DataType) {
			col.Default = "'" + strings.ReplaceAll(col.Default, "'", "''") + "'"
		}
	}
	return col
}

// quotedDefault reports whether MariaDB prints a literal default of a column of the data type
// quoted: character strings, dates and times, ENUM and SET. Numbers and BIT literals are
// printed bare by both; binary strings are left as MySQL prints them, and not carried.
func quotedDefault(dataType string) bool {
	switch dataType {
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set",
		"date", "datetime", "timestamp", "time":
		return true
	}
	return false
}

// parseElements reads the members of enum('a','b”c') or set(...).
func parseElements(colType string) []string {
	open := strings.IndexByte(colType, '(')
	if open < 0 {
		return nil
	}
	s := colType[open+1:]
	var out []string
	for {
		s = strings.TrimLeft(s, " ,")
		if len(s) == 0 || s[0] != '\'' {
			return out
		}
		var b strings.Builder
		i := 1
		for i < len(s) {
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					b.WriteByte('\'')
					i += 2
					continue
				}
				break
			}
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
			i++
		}
		out = append(out, b.String())
		if i >= len(s) {
			return out
		}
		s = s[i+1:]
	}
}

// ByName indexes tables by their ID.
func ByName(tables []*schema.Table) map[cdc.TableID]*schema.Table {
	m := make(map[cdc.TableID]*schema.Table, len(tables))
	for _, t := range tables {
		m[t.ID] = t
	}
	return m
}

// Relation returns the stream's view of t: see schema.Table.Relation.
func Relation(t *schema.Table) *cdc.Relation { return t.Relation() }

// CopyColumns returns t's copied columns, in the order of Relation.
func CopyColumns(t *schema.Table) []schema.Column {
	var out []schema.Column
	for _, c := range t.Columns {
		if !c.Generated {
			out = append(out, c)
		}
	}
	return out
}

const indexesSQL = `
SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, coalesce(SUB_PART, 0), INDEX_TYPE
  FROM information_schema.STATISTICS
 WHERE TABLE_SCHEMA = ? AND INDEX_NAME <> 'PRIMARY'
 ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`

// Indexes reads the secondary indexes of db's tables.
func Indexes(c *client.Conn, db string) (map[cdc.TableID][]schema.Index, error) {
	rows, err := QueryStrings(c, indexesSQL, db)
	if err != nil {
		return nil, fmt.Errorf("read the indexes of %s: %w", db, err)
	}
	out := map[cdc.TableID][]schema.Index{}
	for _, r := range rows {
		if r[3] == nil {
			continue // an index on an expression
		}
		id := cdc.TableID{Schema: db, Name: *r[0]}
		list := out[id]
		if n := len(list); n == 0 || list[n-1].Name != *r[1] {
			list = append(list, schema.Index{Name: *r[1], Unique: *r[2] == "0", Kind: *r[5]})
		}
		ix := &list[len(list)-1]
		ix.Columns = append(ix.Columns, *r[3])
		if *r[4] != "0" {
			ix.Prefix = true
		}
		out[id] = list
	}
	return out, nil
}
