// Package cdc holds the engine-neutral model of a change stream (Event, Change, Position) and the
// supervision around it: reconnect with backoff, heartbeats and lag.
//
// Engines (internal/postgres, internal/mysql) decode their native stream into Events. The apply
// stage consumes them without knowing which engine produced them.
package cdc

import (
	"fmt"
	"time"
)

// Op is the kind of a row change.
type Op uint8

// The row operations a stream carries.
const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
	OpTruncate
	// OpMark is not a row change: it records snapshot progress (Change.Mark) that the target
	// must store in the same transaction as the rows before it. Only a snapshot reconciled with
	// a running stream (MySQL, by watermarks) emits it.
	OpMark
)

func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	case OpMark:
		return "mark"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// TableID names a table on the source. The target uses the same name.
type TableID struct {
	Schema string
	Name   string
}

func (t TableID) String() string { return t.Schema + "." + t.Name }

// Relation describes the columns of a table as the stream reports them. Engines send it before the
// first change of a table and again after DDL; a Change points at the Relation current when it was
// decoded.
type Relation struct {
	Table   TableID
	Columns []Column
}

// KeyColumns returns the indexes of the columns that identify a row.
func (r *Relation) KeyColumns() []int {
	var idx []int
	for i, c := range r.Columns {
		if c.Key {
			idx = append(idx, i)
		}
	}
	return idx
}

// Column is one column of a Relation.
type Column struct {
	Name string
	// Key is true for the columns of the replica identity (primary key or chosen unique key).
	Key bool
	// TypeOID is the engine's type identifier, kept for engines that need it to encode values.
	TypeOID uint32
}

// ValueKind says what a Value holds.
type ValueKind uint8

// The kinds of a Value.
const (
	// ValueText is a value in the engine's text representation, passed through unchanged.
	ValueText ValueKind = iota
	// ValueNull is SQL NULL.
	ValueNull
	// ValueUnchanged marks a TOASTed value the source did not send because it did not change.
	// Apply must leave the target's value alone: it is never a placeholder to write.
	ValueUnchanged
)

// Value is one column value of a row image.
type Value struct {
	Kind ValueKind
	Data []byte
}

// Change is one row change inside a source transaction.
type Change struct {
	Op       Op
	Relation *Relation
	// New is the row after an insert or update, one Value per column of Relation.
	New []Value
	// Old is the row image before an update or delete, one Value per column of Relation. Only the
	// key columns are meaningful unless the table has REPLICA IDENTITY FULL. For an update it is nil
	// when the key did not change: the key is then taken from New.
	Old []Value
	// Truncated lists the tables of a truncate; Relation is nil then.
	Truncated []*Relation
	// Mark is the snapshot progress an OpMark records, for the table of Relation.
	Mark *SnapshotMark
}

// SnapshotMark is how far the copy of one table has come: every row with a key up to Cursor
// (in key order) is on the target once the transaction holding the mark commits.
type SnapshotMark struct {
	// Cursor is the last copied key, one text value per key column; nil before the first chunk.
	Cursor []string
	// Rows is how many rows the copy of this table has written so far.
	Rows int64
	// Done is set when the table is copied completely.
	Done bool
}

// Position is a point in a source's change stream: an LSN for PostgreSQL, a GTID set for MySQL.
// It is opaque to the stage packages, which only store and show its text form.
type Position interface {
	String() string
}

// EventKind says what an Event carries.
type EventKind uint8

// The kinds of an Event.
const (
	// EventBegin opens a source transaction. Changes follow, then EventCommit.
	EventBegin EventKind = iota + 1
	EventChange
	// EventCommit closes a source transaction. Its Position is where the stream resumes after it.
	EventCommit
	// EventHeartbeat is a point outside any transaction where the stream may checkpoint: a
	// heartbeat message, or a keepalive that proves nothing is pending before Position.
	EventHeartbeat
)

// Event is one item of a decoded stream. Changes of a transaction arrive contiguously between
// its Begin and Commit, so apply can write a transaction of any size with bounded memory.
type Event struct {
	Kind   EventKind
	Change *Change
	// Position is set on Commit and Heartbeat: the position to checkpoint once this is durable.
	Position Position
	// CommitTime is the source commit time (Begin, Commit) or the heartbeat's time.
	CommitTime time.Time
}

// DecodeError is a change the stream could not decode: a malformed message, or a row that no
// longer fits its table (DDL on the source). Reconnecting would meet it again, so it stops the
// stream.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }
