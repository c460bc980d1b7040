// Package schema is the engine-neutral catalog model: the tables a migration moves, their
// columns, keys and sizes.
package schema

import "github.com/migrated/migrated/internal/cdc"

// Table is one source table.
type Table struct {
	ID      cdc.TableID
	Columns []Column
	// Key is the column list that identifies a row: the primary key, or the replica identity
	// index. Empty means the table cannot be migrated online.
	Key []string
	// KeyKind says where Key came from: "primary key", "replica identity index", or "".
	KeyKind string
	// EstimatedRows and Bytes come from the engine's statistics; they plan chunks and show progress.
	EstimatedRows int64
	Bytes         int64
	// Partitioned is true for a partitioned parent, which holds no rows itself.
	Partitioned bool
	// Root is the top of the partition tree for a partition, and the table itself otherwise.
	// Changes to partitions are streamed under the root's name.
	Root cdc.TableID
}

// Column is a column of a Table.
type Column struct {
	Name    string
	Type    string // the engine's type name, e.g. "numeric(20,4)"
	NotNull bool
	// Generated columns are computed by the target itself: never copied, never applied.
	Generated bool

	// The fields below are filled by engines that need them to carry values exactly (MySQL)
	// and by the cross-engine type maps. PostgreSQL's catalog leaves them zero.

	// DataType is the base type name without modifiers, lower case: "int", "varchar", "enum".
	DataType string
	// Unsigned is set for MySQL integer and decimal columns declared UNSIGNED.
	Unsigned bool
	// Length is the declared length of a character or binary column, in characters or bytes.
	Length int64
	// Precision and Scale are the declared digits of a decimal, or fractional second digits
	// (Scale) of a time type.
	Precision, Scale int
	// Elements are the members of an ENUM or SET, in declaration order.
	Elements []string
	// Charset and Collation of a character column; empty for other types.
	Charset, Collation string
	// Default is the column default as the engine prints it, "" for none.
	Default string
	// AutoIncrement marks a column that hands out ids: MySQL's AUTO_INCREMENT, or a PostgreSQL
	// identity or serial column (one that owns a sequence).
	AutoIncrement bool
}

// CopyColumns returns the names of the columns that the snapshot copies and apply writes.
func (t *Table) CopyColumns() []string {
	var cols []string
	for _, c := range t.Columns {
		if !c.Generated {
			cols = append(cols, c.Name)
		}
	}
	return cols
}

// Relation returns the stream's view of t: its copied columns (generated ones are left out,
// the target computes them) in table order, with the key columns flagged.
func (t *Table) Relation() *cdc.Relation {
	key := map[string]bool{}
	for _, k := range t.Key {
		key[k] = true
	}
	rel := &cdc.Relation{Table: t.ID}
	for _, c := range t.Columns {
		if c.Generated {
			continue
		}
		rel.Columns = append(rel.Columns, cdc.Column{Name: c.Name, Key: key[c.Name]})
	}
	return rel
}

// IsLeaf reports whether the table holds rows: it is not a partitioned parent.
func (t *Table) IsLeaf() bool { return !t.Partitioned }

// IsRoot reports whether the table is not a partition of another table.
func (t *Table) IsRoot() bool { return t.Root == t.ID }

// Problem is one failed preflight check: which check, and what to do about it.
type Problem struct {
	Check   string `json:"check"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Check + ": " + p.Message }

// Index is a secondary index of a table, as the cross-engine schema builder needs it.
type Index struct {
	Name    string
	Unique  bool
	Columns []string
	// Kind is the engine's index kind: "BTREE", "HASH", "FULLTEXT", "SPATIAL".
	Kind string
	// Prefix is set when some column is indexed by a prefix only (MySQL's col(10)).
	Prefix bool
}
