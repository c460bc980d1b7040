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
	"github.com/migrated/migrated/internal/postgres"
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

// TestPostSteps: groups run at once on at most maxPostSessions sessions, each group's steps in
// order, the serial steps after all of them, in order; a failed step stops what has not started.
func TestPostSteps(t *testing.T) {
	var mu sync.Mutex
	var running, most, opened int
	var finished []int
	// Step 0 waits until another step runs beside it: the groups must run at once.
	beside := make(chan struct{})
	var besideOnce sync.Once
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
				if i == 0 {
					select {
					case <-beside:
					case <-time.After(10 * time.Second):
						return errors.New("no step ran beside step 0")
					}
				} else {
					besideOnce.Do(func() { close(beside) })
				}
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
	groups := [][]int{{0}, {1, 2, 3}, {4}, {5}, {6}, {7}}
	if err := postSteps(context.Background(), groups, []int{8, 9}, 64, open(-1)); err != nil {
		t.Fatal(err)
	}
	if most > maxPostSessions || opened != maxPostSessions+1 {
		t.Errorf("%d steps at once on %d sessions, want at most %d at once on %d + 1", most, opened, maxPostSessions, maxPostSessions)
	}
	if len(finished) != 10 || !slices.Equal(finished[8:], []int{8, 9}) {
		t.Errorf("steps finished in order %v, want 0..7, then 8, 9", finished)
	}
	if a, b, c := slices.Index(finished, 1), slices.Index(finished, 2), slices.Index(finished, 3); a < 0 || a > b || b > c {
		t.Errorf("a group's steps finished out of order: %v", finished)
	}

	finished, opened = nil, 0
	err := postSteps(context.Background(), [][]int{{1, 2}, {4}}, []int{8}, 2, open(1))
	if err == nil || err.Error() != "refused" {
		t.Fatalf("a failed step: err = %v", err)
	}
	if slices.Contains(finished, 2) || slices.Contains(finished, 8) {
		t.Errorf("steps after a failed one ran: %v", finished)
	}
	// Serial steps only: one session runs them in order.
	finished, opened = nil, 0
	if err := postSteps(context.Background(), nil, []int{1, 2, 3}, 4, open(-1)); err != nil || !slices.Equal(finished, []int{1, 2, 3}) || opened != 1 {
		t.Errorf("serial only: %v, %v on %d sessions", err, finished, opened)
	}
}

// TestPrefix: the record of post-data progress counts the steps done from the first on, so
// that a restart never skips a step that did not finish.
func TestPrefix(t *testing.T) {
	p := newPrefix(5)
	for _, step := range []struct {
		finish, want int
		grew         bool
	}{{2, 0, false}, {1, 0, false}, {0, 3, true}, {4, 3, false}, {3, 5, true}} {
		if n, grew := p.finish(step.finish); n != step.want || grew != step.grew {
			t.Errorf("finish(%d) = %d, %v; want %d, %v", step.finish, n, grew, step.want, step.grew)
		}
	}
}

// TestPGStreamBehind: the status never shows the source's position behind the applied one.
func TestPGStreamBehind(t *testing.T) {
	var p pgStream
	for _, tt := range []struct {
		seen string
		lsn  postgres.LSN
		want bool
	}{{"0/10", 0x20, true}, {"0/20", 0x20, false}, {"0/30", 0x20, false}, {"", 0x20, true}, {"junk", 0x20, false}} {
		if got := p.behind(tt.seen, tt.lsn); got != tt.want {
			t.Errorf("behind(%q, %s) = %v, want %v", tt.seen, tt.lsn, got, tt.want)
		}
	}
}
