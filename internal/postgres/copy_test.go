package postgres

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

func TestPlanChunks(t *testing.T) {
	const gib = 1 << 30
	for _, tt := range []struct {
		name      string
		rows      int64
		bytes     int64
		splitRows int64
		workers   int
		want      string // FromPage-ToPage per chunk
	}{
		{"small table is one chunk", 100, 10 * pageSize, 1000, 1, "0-0"},
		{"estimate at the limit is one chunk", 1000, 10 * pageSize, 1000, 1, "0-0"},
		{"split by estimated rows", 1000, 100 * pageSize, 300, 1, "0-25 25-50 50-75 75-0"},
		{"uneven pages go to the open last chunk", 1000, 10 * pageSize, 300, 1, "0-2 2-4 4-6 6-0"},
		{"no more chunks than pages", 1_000_000, 3 * pageSize, 10, 1, "0-1 1-2 2-0"},
		{"one page", 1_000_000, pageSize, 10, 1, "0-0"},
		{"empty table", 1_000_000, 0, 10, 1, "0-0"},
		{"splitting off", 1_000_000, 100 * pageSize, 0, 1, "0-0"},
		{"never analyzed, small", 0, gib, 1000, 1, "0-0"},
		{"never analyzed, split by size", 0, 3 * gib, 1000, 1, "0-131072 131072-262144 262144-0"},
		{"never analyzed, just over the size limit", 0, gib + pageSize, 1000, 1, "0-65536 65536-0"},
		{"rounded up to a multiple of workers", 4_000_454, 1000 * pageSize, 2_000_000, 2, "0-250 250-500 500-750 750-0"},
		{"already a multiple of workers", 4_000_000, 1000 * pageSize, 1_000_000, 2, "0-250 250-500 500-750 750-0"},
		{"one chunk is not rounded up", 100, 1000 * pageSize, 2_000_000, 4, "0-0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tbl := &schema.Table{ID: cdc.TableID{Schema: "public", Name: "t"}, EstimatedRows: tt.rows, Bytes: tt.bytes}
			chunks := PlanChunks(tbl, tt.splitRows, tt.workers)
			var got []string
			for i, c := range chunks {
				got = append(got, fmt.Sprintf("%d-%d", c.FromPage, c.ToPage))
				if c.Table != tbl || c.Index != i || c.Count != len(chunks) {
					t.Errorf("chunk %d = {Index %d, Count %d}, want {%d, %d} of the table", i, c.Index, c.Count, i, len(chunks))
				}
				if i > 0 && c.FromPage != chunks[i-1].ToPage {
					t.Errorf("chunk %d starts at page %d, previous ends at %d: pages lost or copied twice", i, c.FromPage, chunks[i-1].ToPage)
				}
			}
			if got, want := strings.Join(got, " "), tt.want; got != want {
				t.Errorf("chunks = %s, want %s", got, want)
			}
		})
	}
}

func TestChunkString(t *testing.T) {
	tbl := &schema.Table{ID: cdc.TableID{Schema: "public", Name: "orders"}}
	if got, want := (Chunk{Table: tbl, Index: 2, Count: 5}).String(), "public.orders chunk 3/5"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

// copyField is one field of a binary COPY tuple; nil is NULL.
type copyField []byte

// binaryCopy builds a PostgreSQL binary COPY stream: signature, flags, header extension, the
// tuples (field count, then length and bytes per field, -1 for NULL) and the -1 trailer.
func binaryCopy(ext []byte, tuples ...[]copyField) []byte {
	b := []byte("PGCOPY\n\377\r\n\000")
	b = binary.BigEndian.AppendUint32(b, 0) // flags: no OIDs
	b = binary.BigEndian.AppendUint32(b, uint32(len(ext)))
	b = append(b, ext...)
	for _, tup := range tuples {
		b = binary.BigEndian.AppendUint16(b, uint16(len(tup)))
		for _, f := range tup {
			if f == nil {
				b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xFFFF)
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func int4(v uint32) copyField { return binary.BigEndian.AppendUint32(nil, v) }

func TestRowCounterBinary(t *testing.T) {
	// Field contents that look like framing: a -1 trailer, a huge length, newlines.
	tricky := copyField{0xFF, 0xFF, 0xFF, 0xFF, '\n', 0x7F, 0xFF}
	for _, tt := range []struct {
		name   string
		stream []byte
		rows   int64
	}{
		{"no rows", binaryCopy(nil), 0},
		{"one row", binaryCopy(nil, []copyField{int4(1), copyField("a")}), 1},
		{"nulls and empty fields", binaryCopy(nil,
			[]copyField{int4(1), nil, copyField{}},
			[]copyField{nil, nil, nil},
			[]copyField{copyField{}, copyField{}, int4(3)},
		), 3},
		{"zero-column rows", binaryCopy(nil, []copyField{}, []copyField{}), 2},
		{"header extension", binaryCopy([]byte("ext-data\xff\xff"), []copyField{int4(1)}, []copyField{int4(2)}), 2},
		{"framing-like data", binaryCopy(nil, []copyField{tricky, int4(0xFFFFFFFF)}, []copyField{tricky}), 2},
		{"large field", binaryCopy(nil, []copyField{bytes.Repeat([]byte("x"), 300), nil}, []copyField{int4(2), copyField("y")}), 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Every read size from a byte at a time to the whole stream at once.
			for size := 1; size <= len(tt.stream); size++ {
				var rows atomic.Int64
				c := &rowCounter{r: &chunkReader{r: bytes.NewReader(tt.stream), n: size}, binary: true, rows: &rows}
				out, err := io.ReadAll(c)
				if err != nil {
					t.Fatalf("read size %d: %v", size, err)
				}
				if !bytes.Equal(out, tt.stream) {
					t.Fatalf("read size %d: stream altered", size)
				}
				if got, want := rows.Load(), tt.rows; got != want {
					t.Fatalf("read size %d: rows = %d, want %d", size, got, want)
				}
			}
		})
	}
}

func TestRowCounterBinaryManyRows(t *testing.T) {
	var tuples [][]copyField
	for i := 0; i < 1000; i++ {
		tuples = append(tuples, []copyField{int4(uint32(i)), nil, bytes.Repeat([]byte{byte(i)}, i%17)})
	}
	stream := binaryCopy(nil, tuples...)
	for _, r := range []struct {
		name string
		r    func(io.Reader) io.Reader
	}{
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data with EOF", iotest.DataErrReader},
		{"odd size", func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 7} }},
	} {
		t.Run(r.name, func(t *testing.T) {
			var rows atomic.Int64
			if _, err := io.Copy(io.Discard, &rowCounter{r: r.r(bytes.NewReader(stream)), binary: true, rows: &rows}); err != nil {
				t.Fatal(err)
			}
			if got, want := rows.Load(), int64(1000); got != want {
				t.Errorf("rows = %d, want %d", got, want)
			}
		})
	}
}

func TestRowCounterText(t *testing.T) {
	// In text COPY a newline inside a value is escaped as \n: raw newlines end rows.
	stream := []byte("1\tplain\n2\t\\N\n3\tline\\nbreak\n4\t\n")
	for size := 1; size <= len(stream); size++ {
		var rows atomic.Int64
		out, err := io.ReadAll(&rowCounter{r: &chunkReader{r: bytes.NewReader(stream), n: size}, rows: &rows})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, stream) {
			t.Fatalf("read size %d: stream altered", size)
		}
		if got, want := rows.Load(), int64(4); got != want {
			t.Fatalf("read size %d: rows = %d, want %d", size, got, want)
		}
	}
}

func TestRowCounterWithoutCounter(t *testing.T) {
	stream := binaryCopy(nil, []copyField{int4(1)})
	out, err := io.ReadAll(&rowCounter{r: bytes.NewReader(stream), binary: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, stream) {
		t.Error("stream altered")
	}
}

func TestRowCounterPassesErrors(t *testing.T) {
	boom := fmt.Errorf("source gone")
	var rows atomic.Int64
	r := io.MultiReader(bytes.NewReader([]byte("1\n2\n")), iotest.ErrReader(boom))
	_, err := io.ReadAll(&rowCounter{r: r, rows: &rows})
	if err != boom {
		t.Errorf("err = %v, want %v", err, boom)
	}
	if got, want := rows.Load(), int64(2); got != want {
		t.Errorf("rows = %d, want %d", got, want)
	}
}

func TestLiteral(t *testing.T) {
	if got, want := literal("00000003-0000001B-1"), "'00000003-0000001B-1'"; got != want {
		t.Errorf("literal = %s, want %s", got, want)
	}
	if got, want := literal("it's"), "'it''s'"; got != want {
		t.Errorf("literal = %s, want %s", got, want)
	}
}
