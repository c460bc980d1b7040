package mysql

import (
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// colKind is how a column's value is brought to the canonical form (see the package doc).
type colKind uint8

const (
	// kindText is already canonical as the server prints it: strings, blobs, decimals,
	// dates, JSON.
	kindText colKind = iota
	kindSigned
	kindUnsigned
	kindFloat
	kindDouble
	kindBit
	kindYear
	kindEnum
	kindSet
	// kindBinary is BINARY(n): the binlog drops the trailing zero bytes the column keeps.
	kindBinary
	// kindTime is TIME(fsp): the binlog drops a zero fraction the server prints.
	kindTime
)

// colCodec carries one column's value from either source, the text protocol or the binlog, to
// the canonical form.
type colCodec struct {
	kind colKind
	// bits is the width of an integer type, to read a signed binlog value as unsigned.
	bits uint
	// length is the byte length of BINARY(n); scale the fractional digits of TIME.
	length, scale int
	elements      []string
}

func newCodec(c *schema.Column) colCodec {
	switch c.DataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		k := colCodec{kind: kindSigned, bits: intWidth(c.DataType)}
		if c.Unsigned {
			k.kind = kindUnsigned
		}
		return k
	case "float":
		return colCodec{kind: kindFloat}
	case "double", "real", "double precision":
		return colCodec{kind: kindDouble}
	case "bit":
		return colCodec{kind: kindBit}
	case "year":
		return colCodec{kind: kindYear}
	case "enum":
		return colCodec{kind: kindEnum, elements: c.Elements}
	case "set":
		return colCodec{kind: kindSet, elements: c.Elements}
	case "binary":
		return colCodec{kind: kindBinary, length: int(c.Length)}
	case "time":
		return colCodec{kind: kindTime, scale: c.Scale}
	}
	return colCodec{kind: kindText}
}

func intWidth(dataType string) uint {
	switch dataType {
	case "tinyint":
		return 8
	case "smallint":
		return 16
	case "mediumint":
		return 24
	case "int", "integer":
		return 32
	}
	return 64
}

// SelectList returns the comma-separated SELECT expressions that read CopyColumns(t) in the
// canonical form. The server prints FLOAT with six significant digits and FLOAT(M,D) and
// DOUBLE(M,D) with D decimals, which loses bits, so both are read through CAST AS DOUBLE,
// which prints every bit; BIT is read as its unsigned integer.
func SelectList(t *schema.Table) string {
	var b strings.Builder
	for i := range t.Columns {
		c := &t.Columns[i]
		if c.Generated {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		switch newCodec(c).kind {
		case kindBit:
			b.WriteString("CAST(" + Quote(c.Name) + " AS UNSIGNED)")
		case kindFloat, kindDouble:
			b.WriteString("CAST(" + Quote(c.Name) + " AS DOUBLE)")
		default:
			b.WriteString(Quote(c.Name))
		}
	}
	return b.String()
}

// RowValues converts one text-protocol row read with SelectList (for instance by
// ExecuteSelectStreaming) into canonical values, one per CopyColumns(t) column. The values
// share one new buffer: go-mysql reuses the row's own buffers for the next row.
func RowValues(t *schema.Table, row []mysql.FieldValue) []cdc.Value {
	vals := make([]cdc.Value, len(row))
	var ends [64]int
	end := ends[:0]
	if len(row) > len(ends) {
		end = make([]int, 0, len(row))
	}
	buf := make([]byte, 0, textRowSize(row))
	i := 0
	for ci := range t.Columns {
		c := &t.Columns[ci]
		if c.Generated {
			continue
		}
		if i >= len(row) {
			break
		}
		fv := &row[i]
		if fv.Type == mysql.FieldValueTypeNull {
			vals[i].Kind = cdc.ValueNull
		} else {
			k := newCodec(c)
			buf = k.appendText(buf, fv)
		}
		end = append(end, len(buf))
		i++
	}
	start := 0
	for j := range end {
		if vals[j].Kind == cdc.ValueText {
			vals[j].Data = buf[start:end[j]:end[j]]
		}
		start = end[j]
	}
	return vals
}

// textRowSize guesses the bytes a row's canonical text takes, to allocate its buffer once.
func textRowSize(row []mysql.FieldValue) int {
	n := 1
	for i := range row {
		if row[i].Type == mysql.FieldValueTypeString {
			n += len(row[i].AsString())
		} else {
			n += 20
		}
	}
	return n
}

// appendText appends a non-NULL text-protocol value in canonical form. go-mysql has already
// parsed integer and floating point columns; they are printed again exactly.
func (k colCodec) appendText(buf []byte, fv *mysql.FieldValue) []byte {
	switch fv.Type {
	case mysql.FieldValueTypeSigned:
		v := fv.AsInt64()
		if k.kind == kindYear && v == 0 {
			return append(buf, "0000"...)
		}
		return strconv.AppendInt(buf, v, 10)
	case mysql.FieldValueTypeUnsigned:
		v := fv.AsUint64()
		if k.kind == kindYear && v == 0 {
			return append(buf, "0000"...)
		}
		return strconv.AppendUint(buf, v, 10)
	case mysql.FieldValueTypeFloat:
		if k.kind == kindFloat {
			return appendFloat32(buf, float32(fv.AsFloat64()))
		}
		return strconv.AppendFloat(buf, fv.AsFloat64(), 'g', -1, 64)
	}
	return append(buf, fv.AsString()...)
}

// appendFloat32 prints a FLOAT in the shortest form that reads back to the same bits.
func appendFloat32(buf []byte, f float32) []byte {
	return strconv.AppendFloat(buf, float64(f), 'g', -1, 32)
}
