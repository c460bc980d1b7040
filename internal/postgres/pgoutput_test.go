package postgres

import (
	"encoding/binary"
	"time"
)

// This file builds pgoutput protocol version 1 messages byte by byte, as a server sends them
// inside XLogData ("Logical Replication Message Formats" in the PostgreSQL docs).

// pgEpoch is the zero of PostgreSQL timestamps.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type wire []byte

func (w wire) u8(v byte) wire      { return append(w, v) }
func (w wire) u16(v uint16) wire   { return binary.BigEndian.AppendUint16(w, v) }
func (w wire) u32(v uint32) wire   { return binary.BigEndian.AppendUint32(w, v) }
func (w wire) u64(v uint64) wire   { return binary.BigEndian.AppendUint64(w, v) }
func (w wire) str(s string) wire   { return append(append(w, s...), 0) }
func (w wire) ts(t time.Time) wire { return w.u64(uint64(t.Sub(pgEpoch).Microseconds())) }

// relCol is one column of a Relation message.
type relCol struct {
	name string
	key  bool
	oid  uint32
}

func relationMsg(id uint32, namespace, name string, cols ...relCol) []byte {
	w := wire{'R'}.u32(id).str(namespace).str(name).u8('d').u16(uint16(len(cols)))
	for _, c := range cols {
		var flags byte
		if c.key {
			flags = 1
		}
		w = w.u8(flags).str(c.name).u32(c.oid).u32(0xFFFFFFFF) // typmod -1
	}
	return w
}

func beginMsg(finalLSN LSN, commit time.Time, xid uint32) []byte {
	return wire{'B'}.u64(uint64(finalLSN)).ts(commit).u32(xid)
}

func commitMsg(commitLSN, endLSN LSN, commit time.Time) []byte {
	return wire{'C'}.u8(0).u64(uint64(commitLSN)).u64(uint64(endLSN)).ts(commit)
}

// col is one column of a TupleData: kind 't' (text), 'n' (null) or 'u' (unchanged TOAST).
type col struct {
	kind byte
	data string
}

func txt(s string) col { return col{kind: 't', data: s} }

var (
	null      = col{kind: 'n'}
	unchanged = col{kind: 'u'}
)

func (w wire) tuple(cols ...col) wire {
	w = w.u16(uint16(len(cols)))
	for _, c := range cols {
		w = w.u8(c.kind)
		if c.kind == 't' || c.kind == 'b' {
			w = append(w.u32(uint32(len(c.data))), c.data...)
		}
	}
	return w
}

func insertMsg(rel uint32, cols ...col) []byte {
	return wire{'I'}.u32(rel).u8('N').tuple(cols...)
}

// updateMsg builds an Update; oldKind is 'K' (key), 'O' (old row) or 0 for no old tuple.
func updateMsg(rel uint32, oldKind byte, old []col, cols ...col) []byte {
	w := wire{'U'}.u32(rel)
	if oldKind != 0 {
		w = w.u8(oldKind).tuple(old...)
	}
	return w.u8('N').tuple(cols...)
}

func deleteMsg(rel uint32, oldKind byte, old ...col) []byte {
	return wire{'D'}.u32(rel).u8(oldKind).tuple(old...)
}

func truncateMsg(option byte, rels ...uint32) []byte {
	w := wire{'T'}.u32(uint32(len(rels))).u8(option)
	for _, r := range rels {
		w = w.u32(r)
	}
	return w
}

func logicalMsg(transactional bool, lsn LSN, prefix, content string) []byte {
	var flags byte
	if transactional {
		flags = 1
	}
	return append(wire{'M'}.u8(flags).u64(uint64(lsn)).str(prefix).u32(uint32(len(content))), content...)
}

func originMsg(lsn LSN, name string) []byte { return wire{'O'}.u64(uint64(lsn)).str(name) }

func typeMsg(oid uint32, namespace, name string) []byte {
	return wire{'Y'}.u32(oid).str(namespace).str(name)
}
