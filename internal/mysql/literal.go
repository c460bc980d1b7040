package mysql

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// Errors of literal rendering. The target writer names the table and column around them.
var (
	ErrUnchangedValue = errors.New("an unchanged (unsent) value cannot be written")
	ErrBadNumber      = errors.New("not a number")
)

// literalClass says how a column's values are written as SQL literals.
type literalClass uint8

const (
	// literalString is a quoted, backslash-escaped string: character types, temporal types,
	// ENUM, SET, JSON, and anything not listed below.
	literalString literalClass = iota
	// literalNumber is written bare, after checking that it is a number and nothing else.
	literalNumber
	// literalBytes is a hex literal X'..', which is a binary string whatever the connection
	// character set, so no byte is reinterpreted.
	literalBytes
	// literalFloat32 is a FLOAT value, written with the digits of its exact double value: the
	// server reads a literal as a double, and the shortest float32 text of the largest FLOAT
	// (3.4028235e+38) reads as a double just above the FLOAT range.
	literalFloat32
)

// literalClassOf returns the literal class of a column by its DATA_TYPE.
func literalClassOf(col *schema.Column) literalClass {
	switch col.DataType {
	case "float":
		return literalFloat32
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint",
		"decimal", "numeric", "double", "double precision", "real", "year", "bit":
		return literalNumber
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob",
		// A spatial value travels in MySQL's internal form (SRID + WKB), which the server
		// accepts back from a binary string.
		"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
		"multipolygon", "geometrycollection", "geomcollection":
		return literalBytes
	}
	return literalString
}

// appendLiteral appends v as a SQL literal for a column of class cl. It refuses an unchanged
// value and a "number" that is anything but a number, so a value can never become SQL.
func appendLiteral(b []byte, cl literalClass, v cdc.Value) ([]byte, error) {
	null, err := isNull(v)
	if err != nil {
		return b, err
	}
	if null {
		return append(b, "NULL"...), nil
	}
	switch cl {
	case literalFloat32:
		if !isNumberLiteral(v.Data) {
			return b, fmt.Errorf("%w: %q", ErrBadNumber, clipForError(v.Data))
		}
		f, err := strconv.ParseFloat(string(v.Data), 32)
		if err != nil {
			return b, fmt.Errorf("%w: %q", ErrBadNumber, clipForError(v.Data))
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64), nil
	case literalNumber:
		if !isNumberLiteral(v.Data) {
			return b, fmt.Errorf("%w: %q", ErrBadNumber, clipForError(v.Data))
		}
		return append(b, v.Data...), nil
	case literalBytes:
		b = append(b, "X'"...)
		b = hex.AppendEncode(b, v.Data)
		return append(b, '\''), nil
	}
	return appendQuotedString(b, v.Data), nil
}

// isNull reports whether v is NULL, and refuses an unchanged value, which cannot be written.
func isNull(v cdc.Value) (bool, error) {
	switch v.Kind {
	case cdc.ValueNull:
		return true, nil
	case cdc.ValueUnchanged:
		return false, ErrUnchangedValue
	case cdc.ValueText:
		return false, nil
	}
	return false, fmt.Errorf("unknown value kind %d", v.Kind)
}

// isNumberLiteral reports whether s is [+-]digits[.digits][(e|E)[+-]digits] with at least one digit
// in the mantissa: the forms MySQL prints for integers, DECIMAL, FLOAT, DOUBLE, YEAR and BIT
// (as a decimal). Anything else, even a harmless-looking "1-1", would be evaluated as an
// expression, so it is refused.
func isNumberLiteral(s []byte) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

// appendQuotedString appends s as a single-quoted string literal with backslash escapes, which the
// session's sql_mode (no NO_BACKSLASH_ESCAPES, see sessionSetup) reads back byte for byte.
// Runs of bytes that need no escape are copied whole.
func appendQuotedString(b []byte, s []byte) []byte {
	b = append(b, '\'')
	start := 0
	for i, c := range s {
		var esc byte
		switch c {
		case 0:
			esc = '0'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case 0x1a:
			esc = 'Z'
		case '\\', '\'', '"':
			esc = c
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, '\\', esc)
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '\'')
}

// quoteLiteral returns s as a string literal, for the few literals outside the hot path.
func quoteLiteral(s string) string { return string(appendQuotedString(nil, []byte(s))) }

// truncate shortens a value quoted in an error message.
func clipForError(s []byte) []byte {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}
