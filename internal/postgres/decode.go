package postgres

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/migrated/migrated/internal/cdc"
)

// decoder turns pgoutput messages into cdc events. It keeps the relations the stream announced
// and drops transactions the target already holds.
type decoder struct {
	relations map[uint32]*cdc.Relation
	// keys gives, per table, the key columns apply uses (primary key or replica identity index).
	// pgoutput flags every column as key under REPLICA IDENTITY FULL, so the catalog decides.
	keys map[cdc.TableID][]string
	// resume is the checkpointed position: a transaction ending at or before it is already applied.
	resume LSN
	// skipBefore holds tables copied from a later snapshot than the stream's start: their changes
	// in transactions committed before that snapshot are already in the copied data.
	skipBefore map[cdc.TableID]LSN

	inTxn     bool
	skipTxn   bool
	commitLSN LSN
}

func newDecoder(keys map[cdc.TableID][]string, resume LSN, skipBefore map[cdc.TableID]LSN) *decoder {
	return &decoder{relations: map[uint32]*cdc.Relation{}, keys: keys, resume: resume, skipBefore: skipBefore}
}

// decode converts one pgoutput message. It returns nil when the message produces no event.
// walStart is the position of the XLogData that carried the message.
func (d *decoder) decode(data []byte, walStart LSN) (ev *cdc.Event, err error) {
	if len(data) == 0 {
		return nil, &cdc.DecodeError{Err: fmt.Errorf("empty pgoutput message at %s", walStart)}
	}
	// pglogrepl does not bounds-check every field: a malformed message must stop the stream
	// with an error, never crash the daemon.
	defer func() {
		if r := recover(); r != nil {
			ev, err = nil, &cdc.DecodeError{Err: fmt.Errorf("malformed pgoutput message %q at %s: %v", data[0], walStart, r)}
		}
		var de *cdc.DecodeError
		if err != nil && !errors.As(err, &de) {
			err = &cdc.DecodeError{Err: err}
		}
	}()
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		d.relations[m.RelationID] = d.relation(m)
		return nil, nil
	case *pglogrepl.BeginMessage:
		d.inTxn = true
		d.commitLSN = LSN(m.FinalLSN)
		// A transaction whose commit record lies before the resume point ends before it too.
		d.skipTxn = LSN(m.FinalLSN) < d.resume
		if d.skipTxn {
			return nil, nil
		}
		return &cdc.Event{Kind: cdc.EventBegin, CommitTime: m.CommitTime}, nil
	case *pglogrepl.CommitMessage:
		d.inTxn = false
		if d.skipTxn || LSN(m.TransactionEndLSN) <= d.resume {
			return nil, nil
		}
		return &cdc.Event{Kind: cdc.EventCommit, Position: LSN(m.TransactionEndLSN), CommitTime: m.CommitTime}, nil
	case *pglogrepl.InsertMessage:
		return d.change(cdc.OpInsert, m.RelationID, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		return d.change(cdc.OpUpdate, m.RelationID, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return d.change(cdc.OpDelete, m.RelationID, m.OldTuple, nil)
	case *pglogrepl.TruncateMessage:
		return d.truncate(m)
	case *pglogrepl.LogicalDecodingMessage:
		if m.Transactional && m.Prefix == WatermarkPrefix {
			if !d.inTxn || d.skipTxn {
				return nil, nil
			}
			mark := append([]byte(nil), m.Content...)
			return &cdc.Event{Kind: cdc.EventChange, Change: &cdc.Change{Op: cdc.OpInsert, Relation: WatermarkRelation,
				New: []cdc.Value{{Kind: cdc.ValueText, Data: []byte("0")}, {Kind: cdc.ValueText, Data: mark}}}}, nil
		}
		if m.Transactional || m.Prefix != heartbeatPrefix || d.inTxn || LSN(m.LSN) <= d.resume {
			return nil, nil
		}
		return &cdc.Event{Kind: cdc.EventHeartbeat, Position: LSN(m.LSN), CommitTime: heartbeatTime(m.Content)}, nil
	case *pglogrepl.TypeMessage, *pglogrepl.OriginMessage:
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected pgoutput message %s at %s", msg.Type(), walStart)
}

func (d *decoder) relation(m *pglogrepl.RelationMessage) *cdc.Relation {
	rel := &cdc.Relation{Table: cdc.TableID{Schema: m.Namespace, Name: m.RelationName}}
	keys, known := d.keys[rel.Table]
	for _, c := range m.Columns {
		col := cdc.Column{Name: c.Name, TypeOID: c.DataType, Key: c.Flags&1 == 1}
		if known {
			col.Key = contains(keys, c.Name)
		}
		rel.Columns = append(rel.Columns, col)
	}
	return rel
}

func (d *decoder) change(op cdc.Op, relID uint32, old, new *pglogrepl.TupleData) (*cdc.Event, error) {
	if d.skipTxn {
		return nil, nil
	}
	rel, ok := d.relations[relID]
	if !ok {
		return nil, fmt.Errorf("pgoutput %s for relation %d before its relation message", op, relID)
	}
	if skip, ok := d.skipBefore[rel.Table]; ok && d.commitLSN < skip {
		return nil, nil
	}
	c := &cdc.Change{Op: op, Relation: rel}
	var err error
	if new != nil {
		if c.New, err = values(rel, new); err != nil {
			return nil, err
		}
	}
	if old != nil {
		if c.Old, err = values(rel, old); err != nil {
			return nil, err
		}
		// A NULL in the old key would make the change match no row: refuse rather than lose it.
		for _, i := range rel.KeyColumns() {
			if c.Old[i].Kind != cdc.ValueText {
				return nil, fmt.Errorf("pgoutput %s on %s: key column %s has no old value; the table's replica identity does not cover the key migrated uses (%s); set REPLICA IDENTITY DEFAULT or USING INDEX on the key and restart",
					op, rel.Table, rel.Columns[i].Name, strings.Join(d.keys[rel.Table], ", "))
			}
		}
	}
	return &cdc.Event{Kind: cdc.EventChange, Change: c}, nil
}

func (d *decoder) truncate(m *pglogrepl.TruncateMessage) (*cdc.Event, error) {
	if d.skipTxn {
		return nil, nil
	}
	c := &cdc.Change{Op: cdc.OpTruncate}
	for _, id := range m.RelationIDs {
		rel, ok := d.relations[id]
		if !ok {
			return nil, fmt.Errorf("pgoutput truncate of relation %d before its relation message", id)
		}
		if skip, ok := d.skipBefore[rel.Table]; ok && d.commitLSN < skip {
			continue
		}
		c.Truncated = append(c.Truncated, rel)
	}
	if len(c.Truncated) == 0 {
		return nil, nil
	}
	return &cdc.Event{Kind: cdc.EventChange, Change: c}, nil
}

// values copies a tuple out of the receive buffer, which pgconn reuses for the next message.
func values(rel *cdc.Relation, t *pglogrepl.TupleData) ([]cdc.Value, error) {
	if len(t.Columns) != len(rel.Columns) {
		return nil, fmt.Errorf("pgoutput tuple for %s has %d columns, relation has %d; was the table altered? apply the same DDL to the target and restart",
			rel.Table, len(t.Columns), len(rel.Columns))
	}
	vals := make([]cdc.Value, len(t.Columns))
	for i, col := range t.Columns {
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull:
			vals[i] = cdc.Value{Kind: cdc.ValueNull}
		case pglogrepl.TupleDataTypeToast:
			vals[i] = cdc.Value{Kind: cdc.ValueUnchanged}
		case pglogrepl.TupleDataTypeText:
			vals[i] = cdc.Value{Kind: cdc.ValueText, Data: append([]byte(nil), col.Data...)}
		default:
			return nil, fmt.Errorf("pgoutput column %s.%s: unsupported tuple format %q", rel.Table, rel.Columns[i].Name, col.DataType)
		}
	}
	return vals, nil
}

const heartbeatPrefix = "migrated.heartbeat"

// WatermarkPrefix is the prefix of the transactional messages a reconciled snapshot writes as
// its watermarks. The stream passes each as an insert into WatermarkRelation, which is how a
// snapshot.Reconciler recognises them.
const WatermarkPrefix = "migrated.watermark"

// WatermarkRelation is the relation watermark messages arrive as: a key and the mark.
var WatermarkRelation = &cdc.Relation{
	Table:   cdc.TableID{Schema: "_migrated", Name: "watermark"},
	Columns: []cdc.Column{{Name: "id", Key: true}, {Name: "mark"}},
}

func heartbeatTime(content []byte) time.Time {
	t, err := time.Parse(time.RFC3339Nano, string(content))
	if err != nil {
		return time.Time{}
	}
	return t
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
