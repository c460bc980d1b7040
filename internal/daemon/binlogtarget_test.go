package daemon

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
)

func text(s string) cdc.Value { return cdc.Value{Kind: cdc.ValueText, Data: []byte(s)} }

// recordTxn keeps what it is given.
type recordTxn struct {
	apply.Txn
	got []*cdc.Change
}

func (r *recordTxn) Add(_ context.Context, c *cdc.Change) error { r.got = append(r.got, c); return nil }

type recordWriter struct{ txn *recordTxn }

func (w recordWriter) Begin(context.Context) (apply.Txn, error) { return w.txn, nil }

// TestMapWriter: rows are rewritten into new slices (a chunk emitted twice must not be
// converted twice), unchanged TOAST values come from the old row, and with all set a table
// without a converter is refused.
func TestMapWriter(t *testing.T) {
	rel := &cdc.Relation{Table: cdc.TableID{Schema: "s", Name: "t"}, Columns: []cdc.Column{{Name: "id", Key: true}, {Name: "b"}, {Name: "big"}}}
	rec := &recordTxn{}
	w := &mapWriter{w: recordWriter{rec}, all: true, rows: map[cdc.TableID]rowFunc{
		rel.Table: func(row []cdc.Value) ([]cdc.Value, error) { return toBytea(row, []int{1}), nil },
	}}
	txn, _ := w.Begin(context.Background())
	row := []cdc.Value{text("1"), text("\x00\xff"), {Kind: cdc.ValueUnchanged}}
	old := []cdc.Value{text("1"), text("\x01"), text("large value")}
	if err := txn.Add(context.Background(), &cdc.Change{Op: cdc.OpUpdate, Relation: rel, New: row, Old: old}); err != nil {
		t.Fatal(err)
	}
	got := rec.got[0]
	if string(got.New[1].Data) != `\x00ff` || string(got.New[2].Data) != "large value" || got.New[2].Kind != cdc.ValueText {
		t.Errorf("new row: %q %q", got.New[1].Data, got.New[2].Data)
	}
	if string(got.Old[1].Data) != `\x01` {
		t.Errorf("old row: %q", got.Old[1].Data)
	}
	if string(row[1].Data) != "\x00\xff" || row[2].Kind != cdc.ValueUnchanged {
		t.Error("the input row was changed")
	}
	// Without an old row the unchanged value stays, for the target to refuse.
	if err := txn.Add(context.Background(), &cdc.Change{Op: cdc.OpUpdate, Relation: rel, New: row}); err != nil {
		t.Fatal(err)
	}
	if rec.got[1].New[2].Kind != cdc.ValueUnchanged {
		t.Error("an unchanged value was invented")
	}
	other := &cdc.Relation{Table: cdc.TableID{Schema: "s", Name: "other"}}
	if err := txn.Add(context.Background(), &cdc.Change{Op: cdc.OpInsert, Relation: other, New: nil}); err == nil {
		t.Error("a change to an unknown table was accepted")
	}
}

// TestLowerUUIDs: the reverse writer writes uuid keys in one case, so that two spellings of
// one uuid are one key to the target's folding too; the row it was given stays as it was.
func TestLowerUUIDs(t *testing.T) {
	row := []cdc.Value{text("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), text("Keep Case"), {Kind: cdc.ValueNull}}
	got := lower(row, []int{0, 2})
	if string(got[0].Data) != "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" || string(got[1].Data) != "Keep Case" || got[2].Kind != cdc.ValueNull {
		t.Errorf("lower: %q %q %v", got[0].Data, got[1].Data, got[2].Kind)
	}
	if string(row[0].Data) != "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11" {
		t.Error("the input row was changed")
	}
	if same := lower(row, nil); &same[0] != &row[0] {
		t.Error("a row without uuid columns was copied")
	}
}

// TestPostSteps: the parallel steps run on at most workers sessions at once, the rest after all
// of them, in order, and a failed step stops what has not started.
func TestPostSteps(t *testing.T) {
	var mu sync.Mutex
	var running, most, opened int
	var finished []int
	open := func(fail int) func(context.Context) (func(context.Context, int) error, func(), error) {
		return func(context.Context) (func(context.Context, int) error, func(), error) {
			mu.Lock()
			opened++
			mu.Unlock()
			run := func(_ context.Context, i int) error {
				mu.Lock()
				running++
				most = max(most, running)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // let the sessions overlap
				mu.Lock()
				defer mu.Unlock()
				running--
				if i == fail {
					return errors.New("refused")
				}
				finished = append(finished, i)
				return nil
			}
			return run, func() {}, nil
		}
	}
	if err := postSteps(context.Background(), 8, 6, 3, open(-1)); err != nil {
		t.Fatal(err)
	}
	if most < 2 || most > 3 || opened != 4 {
		t.Errorf("%d steps at once on %d sessions, want 2 or 3 at once on 3 + 1", most, opened)
	}
	if len(finished) != 8 || !slices.Equal(finished[6:], []int{6, 7}) {
		t.Errorf("steps finished in order %v, want 0..5 in any order, then 6, 7", finished)
	}
	for i := range 6 {
		if !slices.Contains(finished[:6], i) {
			t.Errorf("parallel step %d did not run before the serial ones: %v", i, finished)
		}
	}

	finished, opened = nil, 0
	err := postSteps(context.Background(), 8, 6, 2, open(1))
	if err == nil || err.Error() != "refused" {
		t.Fatalf("a failed step: err = %v", err)
	}
	if slices.Contains(finished, 6) || slices.Contains(finished, 7) {
		t.Errorf("the serial steps ran after a failed one: %v", finished)
	}
	// No parallel steps: one session runs them all in order.
	finished, opened = nil, 0
	if err := postSteps(context.Background(), 3, 0, 4, open(-1)); err != nil || !slices.Equal(finished, []int{0, 1, 2}) || opened != 1 {
		t.Errorf("serial only: %v, %v on %d sessions", err, finished, opened)
	}
}
