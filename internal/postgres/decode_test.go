package postgres

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/cdc"
)

var (
	items   = cdc.TableID{Schema: "public", Name: "items"}
	notes   = cdc.TableID{Schema: "public", Name: "notes"}
	t0      = time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	itemCol = []relCol{{"id", true, 23}, {"sku", false, 25}, {"body", false, 25}}
)

// decodeAll feeds msgs to d in order and returns the events they produced.
func decodeAll(t *testing.T, d *decoder, msgs ...[]byte) []*cdc.Event {
	t.Helper()
	var evs []*cdc.Event
	for i, m := range msgs {
		ev, err := d.decode(m, 0)
		if err != nil {
			t.Fatalf("decode message %d (%c): %v", i, m[0], err)
		}
		if ev != nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// render is a compact, comparable form of a value list: 't:x' text, 'n' null, 'u' unchanged.
func render(vals []cdc.Value) string {
	if vals == nil {
		return "<nil>"
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		switch v.Kind {
		case cdc.ValueText:
			parts[i] = "t:" + string(v.Data)
		case cdc.ValueNull:
			parts[i] = "n"
		case cdc.ValueUnchanged:
			parts[i] = "u"
		default:
			parts[i] = fmt.Sprintf("kind(%d)", v.Kind)
		}
	}
	return strings.Join(parts, ",")
}

func TestDecodeChanges(t *testing.T) {
	for _, tt := range []struct {
		name     string
		msg      []byte
		op       cdc.Op
		old, new string
	}{
		{"insert text and null", insertMsg(1, txt("1"), null, txt("hello")), cdc.OpInsert, "<nil>", "t:1,n,t:hello"},
		{"insert empty string is not null", insertMsg(1, txt("1"), txt(""), null), cdc.OpInsert, "<nil>", "t:1,t:,n"},
		{"update without old tuple", updateMsg(1, 0, nil, txt("1"), txt("b"), unchanged), cdc.OpUpdate, "<nil>", "t:1,t:b,u"},
		{"update with key tuple", updateMsg(1, 'K', []col{txt("1"), null, null}, txt("2"), txt("b"), unchanged), cdc.OpUpdate, "t:1,n,n", "t:2,t:b,u"},
		{"update with old row", updateMsg(1, 'O', []col{txt("1"), txt("a"), txt("x")}, txt("1"), txt("b"), txt("y")), cdc.OpUpdate, "t:1,t:a,t:x", "t:1,t:b,t:y"},
		{"delete by key", deleteMsg(1, 'K', txt("7"), null, null), cdc.OpDelete, "t:7,n,n", "<nil>"},
		{"delete with old row", deleteMsg(1, 'O', txt("7"), txt("a"), null), cdc.OpDelete, "t:7,t:a,n", "<nil>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(nil, 0, nil)
			evs := decodeAll(t, d, relationMsg(1, "public", "items", itemCol...), beginMsg(0x100, t0, 9), tt.msg)
			if got, want := len(evs), 2; got != want {
				t.Fatalf("events = %d, want %d", got, want)
			}
			ev := evs[1]
			if got, want := ev.Kind, cdc.EventChange; got != want {
				t.Fatalf("kind = %d, want %d", got, want)
			}
			c := ev.Change
			if got, want := c.Op, tt.op; got != want {
				t.Errorf("op = %s, want %s", got, want)
			}
			if got, want := c.Relation.Table, items; got != want {
				t.Errorf("table = %s, want %s", got, want)
			}
			if got, want := render(c.Old), tt.old; got != want {
				t.Errorf("old = %s, want %s", got, want)
			}
			if got, want := render(c.New), tt.new; got != want {
				t.Errorf("new = %s, want %s", got, want)
			}
		})
	}
}

func TestDecodeTransaction(t *testing.T) {
	d := newDecoder(nil, 0, nil)
	evs := decodeAll(t, d,
		relationMsg(1, "public", "items", itemCol...),
		typeMsg(16390, "public", "mood"),
		originMsg(0x50, "elsewhere"),
		beginMsg(0x1000, t0, 42),
		insertMsg(1, txt("1"), txt("a"), txt("b")),
		commitMsg(0x1000, 0x1028, t0),
	)
	if got, want := len(evs), 3; got != want {
		t.Fatalf("events = %d, want %d", got, want)
	}
	begin, commit := evs[0], evs[2]
	if got, want := begin.Kind, cdc.EventBegin; got != want {
		t.Errorf("first kind = %d, want %d", got, want)
	}
	if got, want := begin.CommitTime, t0; !got.Equal(want) {
		t.Errorf("begin commit time = %s, want %s", got, want)
	}
	if got, want := commit.Kind, cdc.EventCommit; got != want {
		t.Errorf("last kind = %d, want %d", got, want)
	}
	// The resume point of a transaction is the end of its commit record, not its start.
	if got, want := commit.Position, cdc.Position(LSN(0x1028)); got != want {
		t.Errorf("commit position = %v, want %v", got, want)
	}
	if got, want := commit.CommitTime, t0; !got.Equal(want) {
		t.Errorf("commit time = %s, want %s", got, want)
	}
}

func TestDecodeCopiesData(t *testing.T) {
	d := newDecoder(nil, 0, nil)
	decodeAll(t, d, relationMsg(1, "public", "items", itemCol...), beginMsg(0x100, t0, 1))
	buf := updateMsg(1, 'K', []col{txt("old-key"), null, null}, txt("new-key"), txt("sku-1"), txt("body-1"))
	ev, err := d.decode(buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	// pgconn reuses its receive buffer for the next message.
	for i := range buf {
		buf[i] = 'X'
	}
	if got, want := render(ev.Change.New), "t:new-key,t:sku-1,t:body-1"; got != want {
		t.Errorf("new after reuse = %s, want %s", got, want)
	}
	if got, want := render(ev.Change.Old), "t:old-key,n,n"; got != want {
		t.Errorf("old after reuse = %s, want %s", got, want)
	}
	for i, v := range ev.Change.New {
		if bytes.Contains(v.Data, []byte("XXX")) {
			t.Errorf("value %d aliases the input buffer", i)
		}
	}
}

func TestDecodeResume(t *testing.T) {
	const resume = LSN(0x2000)
	// A transaction whose commit record ends exactly at the resume point was applied; one whose
	// commit record starts there was not.
	for _, tt := range []struct {
		name          string
		final, end    LSN
		wantEvents    int
		wantCommitPos LSN
	}{
		{"long before", 0x100, 0x128, 0, 0},
		{"ends at resume", resume - 0x28, resume, 0, 0},
		{"commit starts at resume", resume, resume + 0x28, 3, resume + 0x28},
		{"after", 0x3000, 0x3028, 3, 0x3028},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(nil, resume, nil)
			evs := decodeAll(t, d,
				relationMsg(1, "public", "items", itemCol...),
				beginMsg(tt.final, t0, 1),
				insertMsg(1, txt("1"), txt("a"), txt("b")),
				commitMsg(tt.final, tt.end, t0),
			)
			if got, want := len(evs), tt.wantEvents; got != want {
				t.Fatalf("events = %d, want %d", got, want)
			}
			if tt.wantEvents > 0 {
				if got, want := evs[2].Position, cdc.Position(tt.wantCommitPos); got != want {
					t.Errorf("commit position = %v, want %v", got, want)
				}
			}
		})
	}
}

func TestDecodeSkipBefore(t *testing.T) {
	skip := map[cdc.TableID]LSN{items: 0x5000}
	rels := [][]byte{
		relationMsg(1, "public", "items", itemCol...),
		relationMsg(2, "public", "notes", relCol{"id", true, 23}),
	}
	for _, tt := range []struct {
		name  string
		final LSN
		// tables changed, in order, as the decoder emits them
		want []string
	}{
		{"before the re-copy snapshot", 0x4000, []string{"insert public.notes", "truncate public.notes"}},
		{"at the re-copy snapshot", 0x5000, []string{"insert public.items", "insert public.notes", "truncate public.items,public.notes"}},
		{"after", 0x6000, []string{"insert public.items", "insert public.notes", "truncate public.items,public.notes"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(nil, 0, skip)
			msgs := append(rels,
				beginMsg(tt.final, t0, 1),
				insertMsg(1, txt("1"), txt("a"), txt("b")),
				insertMsg(2, txt("1")),
				truncateMsg(0, 1, 2),
				commitMsg(tt.final, tt.final+0x28, t0),
			)
			evs := decodeAll(t, d, msgs...)
			var got []string
			for _, ev := range evs {
				if ev.Kind != cdc.EventChange {
					continue
				}
				if ev.Change.Op == cdc.OpTruncate {
					var names []string
					for _, r := range ev.Change.Truncated {
						names = append(names, r.Table.String())
					}
					got = append(got, "truncate "+strings.Join(names, ","))
					continue
				}
				got = append(got, ev.Change.Op.String()+" "+ev.Change.Relation.Table.String())
			}
			if got, want := strings.Join(got, "; "), strings.Join(tt.want, "; "); got != want {
				t.Errorf("changes = %q, want %q", got, want)
			}
			// The transaction itself still opens and closes: its position must be checkpointed.
			if got, want := evs[len(evs)-1].Kind, cdc.EventCommit; got != want {
				t.Errorf("last event kind = %d, want commit", got)
			}
		})
	}
}

func TestDecodeTruncateAllSkipped(t *testing.T) {
	d := newDecoder(nil, 0, map[cdc.TableID]LSN{items: 0x5000})
	evs := decodeAll(t, d, relationMsg(1, "public", "items", itemCol...), beginMsg(0x100, t0, 1), truncateMsg(0, 1))
	if got, want := len(evs), 1; got != want {
		t.Fatalf("events = %d, want only the begin", got)
	}
}

func TestDecodeHeartbeat(t *testing.T) {
	beat := t0.Format(time.RFC3339Nano)
	for _, tt := range []struct {
		name     string
		msgs     [][]byte
		want     bool
		wantTime time.Time
	}{
		{"heartbeat", [][]byte{logicalMsg(false, 0x3000, heartbeatPrefix, beat)}, true, t0},
		{"unparsable time", [][]byte{logicalMsg(false, 0x3000, heartbeatPrefix, "yesterday")}, true, time.Time{}},
		{"transactional", [][]byte{logicalMsg(true, 0x3000, heartbeatPrefix, beat)}, false, time.Time{}},
		{"other prefix", [][]byte{logicalMsg(false, 0x3000, "app.audit", beat)}, false, time.Time{}},
		{"at resume", [][]byte{logicalMsg(false, 0x2000, heartbeatPrefix, beat)}, false, time.Time{}},
		{"before resume", [][]byte{logicalMsg(false, 0x1000, heartbeatPrefix, beat)}, false, time.Time{}},
		{"inside a transaction", [][]byte{beginMsg(0x4000, t0, 1), logicalMsg(false, 0x3000, heartbeatPrefix, beat)}, false, time.Time{}},
		{"after a transaction", [][]byte{beginMsg(0x2800, t0, 1), commitMsg(0x2800, 0x2828, t0), logicalMsg(false, 0x3000, heartbeatPrefix, beat)}, true, t0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(nil, 0x2000, nil)
			var hb *cdc.Event
			for _, ev := range decodeAll(t, d, tt.msgs...) {
				if ev.Kind == cdc.EventHeartbeat {
					hb = ev
				}
			}
			if got, want := hb != nil, tt.want; got != want {
				t.Fatalf("heartbeat emitted = %t, want %t", got, want)
			}
			if hb == nil {
				return
			}
			if got, want := hb.Position, cdc.Position(LSN(0x3000)); got != want {
				t.Errorf("position = %v, want %v", got, want)
			}
			if got, want := hb.CommitTime, tt.wantTime; !got.Equal(want) {
				t.Errorf("time = %s, want %s", got, want)
			}
		})
	}
}

func TestDecodeRelationKeys(t *testing.T) {
	// Under REPLICA IDENTITY FULL pgoutput flags every column as part of the key.
	full := []relCol{{"tenant", true, 23}, {"id", true, 23}, {"name", true, 25}}
	for _, tt := range []struct {
		name string
		keys map[cdc.TableID][]string
		cols []relCol
		want string
	}{
		{"flags when the table is unknown", nil, itemCol, "id"},
		{"flags under full identity", nil, full, "tenant,id,name"},
		{"catalog overrides full identity", map[cdc.TableID][]string{items: {"tenant", "id"}}, full, "tenant,id"},
		{"catalog overrides flags", map[cdc.TableID][]string{items: {"sku"}}, itemCol, "sku"},
		{"other table's keys do not apply", map[cdc.TableID][]string{notes: {"sku"}}, itemCol, "id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(tt.keys, 0, nil)
			decodeAll(t, d, relationMsg(7, "public", "items", tt.cols...))
			rel := d.relations[7]
			var keys []string
			for _, i := range rel.KeyColumns() {
				keys = append(keys, rel.Columns[i].Name)
			}
			if got, want := strings.Join(keys, ","), tt.want; got != want {
				t.Errorf("keys = %s, want %s", got, want)
			}
			if got, want := rel.Columns[0].TypeOID, tt.cols[0].oid; got != want {
				t.Errorf("type oid = %d, want %d", got, want)
			}
		})
	}
}

func TestDecodeRelationReplaced(t *testing.T) {
	d := newDecoder(nil, 0, nil)
	evs := decodeAll(t, d,
		relationMsg(1, "public", "items", itemCol[:2]...),
		beginMsg(0x100, t0, 1),
		insertMsg(1, txt("1"), txt("a")),
		relationMsg(1, "public", "items", itemCol...), // ALTER TABLE ADD COLUMN
		insertMsg(1, txt("2"), txt("b"), txt("c")),
	)
	first, second := evs[1].Change, evs[2].Change
	if got, want := len(first.Relation.Columns), 2; got != want {
		t.Errorf("first change columns = %d, want %d: a change keeps the relation it was decoded with", got, want)
	}
	if got, want := len(second.Relation.Columns), 3; got != want {
		t.Errorf("second change columns = %d, want %d", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"insert for unknown relation", insertMsg(99, txt("1")), "relation 99"},
		{"update for unknown relation", updateMsg(99, 0, nil, txt("1")), "relation 99"},
		{"delete for unknown relation", deleteMsg(99, 'K', txt("1")), "relation 99"},
		{"truncate of unknown relation", truncateMsg(0, 1, 99), "relation 99"},
		{"too few columns", insertMsg(1, txt("1"), txt("a")), "DDL"},
		{"too many columns", updateMsg(1, 0, nil, txt("1"), txt("a"), txt("b"), txt("c")), "DDL"},
		{"old tuple with wrong columns", deleteMsg(1, 'K', txt("1")), "DDL"},
		{"binary tuple", insertMsg(1, txt("1"), col{kind: 'b', data: "\x00"}, null), "unsupported tuple format"},
		{"unknown message type", []byte{'Z', 0, 0, 0, 0}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(nil, 0, nil)
			decodeAll(t, d, relationMsg(1, "public", "items", itemCol...), beginMsg(0x100, t0, 1))
			ev, err := d.decode(tt.msg, 0x100)
			if err == nil {
				t.Fatalf("decode = %+v, want an error", ev)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestDecodeSkippedTxnIgnoresUnknownRelation(t *testing.T) {
	// A transaction before the resume point is dropped whole, without looking at its changes.
	d := newDecoder(nil, 0x2000, nil)
	evs := decodeAll(t, d, beginMsg(0x100, t0, 1), insertMsg(99, txt("1")), truncateMsg(0, 99), commitMsg(0x100, 0x128, t0))
	if got, want := len(evs), 0; got != want {
		t.Errorf("events = %d, want %d", got, want)
	}
}

// validMessages is one of each message the decoder handles, in a decodable order.
func validMessages() [][]byte {
	return [][]byte{
		relationMsg(1, "public", "items", itemCol...),
		typeMsg(16390, "public", "mood"),
		beginMsg(0x100, t0, 1),
		insertMsg(1, txt("1"), null, txt("x")),
		updateMsg(1, 'K', []col{txt("1"), null, null}, txt("2"), txt("a"), unchanged),
		updateMsg(1, 'O', []col{txt("1"), txt("a"), txt("b")}, txt("1"), txt("c"), txt("d")),
		deleteMsg(1, 'K', txt("2"), null, null),
		truncateMsg(1, 1),
		commitMsg(0x100, 0x128, t0),
		logicalMsg(false, 0x200, heartbeatPrefix, t0.Format(time.RFC3339Nano)),
	}
}

func TestDecodeTruncatedMessages(t *testing.T) {
	for i, full := range validMessages() {
		t.Run(fmt.Sprintf("%d %c", i, full[0]), func(t *testing.T) {
			var panicked []int
			for n := 0; n < len(full); n++ {
				func() {
					defer func() {
						if recover() != nil {
							panicked = append(panicked, n)
						}
					}()
					d := newDecoder(nil, 0, nil)
					decodeAll(t, d, relationMsg(1, "public", "items", itemCol...), beginMsg(0x100, t0, 1))
					_, _ = d.decode(full[:n], 0)
				}()
			}
			if len(panicked) > 0 {
				t.Errorf("decode of the first %v of %d bytes panicked", panicked, len(full))
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range validMessages() {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) == 0 {
			t.Skip()
		}
		d := newDecoder(nil, 0, nil)
		_, _ = d.decode(relationMsg(1, "public", "items", itemCol...), 0)
		_, _ = d.decode(beginMsg(0x100, t0, 1), 0)
		ev, err := d.decode(msg, 0)
		if err != nil || ev == nil || ev.Change == nil {
			return
		}
		for _, vals := range [][]cdc.Value{ev.Change.New, ev.Change.Old} {
			if vals != nil && len(vals) != len(itemCol) {
				t.Errorf("decoded %d values for %d columns", len(vals), len(itemCol))
			}
		}
	})
}

func TestReplicaIdentityOtherThanPrimaryKey(t *testing.T) {
	// public.items has PRIMARY KEY (id) and REPLICA IDENTITY USING INDEX items_email_key.
	keys := map[cdc.TableID][]string{items: {"id"}}
	relMsg := relationMsg(1, "public", "items", relCol{"id", false, 23}, relCol{"email", true, 25}, relCol{"doc", false, 25})
	for _, tt := range []struct {
		name string
		msg  []byte
	}{
		{"delete", deleteMsg(1, 'K', null, txt("a@example.com"), null)},
		{"update of the identity with unchanged toast", updateMsg(1, 'K', []col{null, txt("a@example.com"), null},
			txt("1"), txt("b@example.com"), unchanged)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder(keys, 0, nil)
			decodeAll(t, d, relMsg, beginMsg(0x100, t0, 1))
			ev, err := d.decode(tt.msg, 0)
			if err != nil {
				if !strings.Contains(err.Error(), "replica identity") {
					t.Errorf("refusal does not say why: %v", err)
				}
				return // refusing the change is safe; losing it is not
			}
			stmts, err := statements(ev.Change)
			if err != nil {
				return // refusing the change is safe; losing it is not
			}
			for _, s := range stmts {
				if !strings.Contains(s.sql, "WHERE") {
					continue
				}
				if key := s.args[len(s.args)-1]; key == nil {
					t.Errorf("%s matches no row: its key argument is NULL", s.sql)
				}
			}
		})
	}
}
