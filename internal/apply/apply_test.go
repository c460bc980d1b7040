package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/cdc"
	"go.uber.org/zap"
)

// pos is a test stream position.
type pos string

func (p pos) String() string { return string(p) }

// fakeWriter opens fakeTxns.
type fakeWriter struct {
	begin func(ctx context.Context) (Txn, error)
}

func (w fakeWriter) Begin(ctx context.Context) (Txn, error) { return w.begin(ctx) }

type fakeTxn struct {
	add      func(ctx context.Context, c *cdc.Change) error
	commit   func(ctx context.Context, p cdc.Position, at time.Time) error
	rollback func(ctx context.Context)
}

func (x fakeTxn) Add(ctx context.Context, c *cdc.Change) error { return x.add(ctx, c) }
func (x fakeTxn) Commit(ctx context.Context, p cdc.Position, at time.Time) error {
	return x.commit(ctx, p, at)
}
func (x fakeTxn) Rollback(ctx context.Context) { x.rollback(ctx) }

// durableCall is one call of the Durable callback.
type durableCall struct {
	pos   cdc.Position
	at    time.Time
	stats BatchStats
}

// target records what the applier did to it, one line per call, e.g. "begin", "add insert 3",
// "commit 0/30", "rollback". Set addErr, beginErr or commitErr to fail those calls.
type target struct {
	mu        sync.Mutex
	log       []string
	durable   []durableCall
	commitAt  []time.Time
	addErr    func(c *cdc.Change) error
	beginErr  error
	commitErr error
}

func (tg *target) record(s string) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.log = append(tg.log, s)
}

func (tg *target) writer() Writer {
	return fakeWriter{begin: func(ctx context.Context) (Txn, error) {
		if tg.beginErr != nil {
			return nil, tg.beginErr
		}
		tg.record("begin")
		return fakeTxn{
			add: func(ctx context.Context, c *cdc.Change) error {
				if tg.addErr != nil {
					if err := tg.addErr(c); err != nil {
						return err
					}
				}
				tg.record(fmt.Sprintf("add %s %s", c.Op, c.New[0].Data))
				return nil
			},
			commit: func(ctx context.Context, p cdc.Position, at time.Time) error {
				if tg.commitErr != nil {
					return tg.commitErr
				}
				tg.record("commit " + p.String())
				tg.mu.Lock()
				tg.commitAt = append(tg.commitAt, at)
				tg.mu.Unlock()
				return nil
			},
			rollback: func(ctx context.Context) {
				if ctx.Err() != nil {
					tg.record("rollback with a cancelled context")
					return
				}
				tg.record("rollback")
			},
		}, nil
	}}
}

func (tg *target) onDurable(p cdc.Position, at time.Time, s BatchStats) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.durable = append(tg.durable, durableCall{p, at, s})
}

func (tg *target) String() string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return strings.Join(tg.log, "; ")
}

var (
	rel   = &cdc.Relation{Table: cdc.TableID{Schema: "public", Name: "t"}, Columns: []cdc.Column{{Name: "id", Key: true}}}
	epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
)

// at is the commit time of the source transaction or heartbeat ending at position n.
func at(n int) time.Time { return epoch.Add(time.Duration(n) * time.Second) }

func posOf(n int) pos { return pos(fmt.Sprintf("0/%d", n)) }

// txn returns the events of a source transaction with the given row ids, committed at end.
func txn(end int, ids ...string) []cdc.Event {
	evs := []cdc.Event{{Kind: cdc.EventBegin, CommitTime: at(end)}}
	for _, id := range ids {
		evs = append(evs, change(cdc.OpInsert, id))
	}
	return append(evs, cdc.Event{Kind: cdc.EventCommit, Position: posOf(end), CommitTime: at(end)})
}

func change(op cdc.Op, id string) cdc.Event {
	return cdc.Event{Kind: cdc.EventChange, Change: &cdc.Change{Op: op, Relation: rel,
		New: []cdc.Value{{Kind: cdc.ValueText, Data: []byte(id)}}}}
}

func heartbeat(n int) cdc.Event {
	return cdc.Event{Kind: cdc.EventHeartbeat, Position: posOf(n), CommitTime: at(n)}
}

func concat(parts ...[]cdc.Event) []cdc.Event {
	var evs []cdc.Event
	for _, p := range parts {
		evs = append(evs, p...)
	}
	return evs
}

// queued returns a closed channel holding evs: everything is already waiting, as when apply is
// behind the stream.
func queued(evs []cdc.Event) <-chan cdc.Event {
	ch := make(chan cdc.Event, len(evs))
	for _, ev := range evs {
		ch <- ev
	}
	close(ch)
	return ch
}

// oneByOne returns a channel that hands over evs one at a time, never with more waiting, as when
// apply keeps up with the stream.
func oneByOne(evs []cdc.Event) <-chan cdc.Event {
	ch := make(chan cdc.Event)
	go func() {
		defer close(ch)
		for _, ev := range evs {
			ch <- ev
		}
	}()
	return ch
}

// patient never closes a group for time: only the channel and MaxChanges decide.
var patient = Options{MaxDelay: time.Hour, HeartbeatEvery: time.Hour}

func run(t *testing.T, tg *target, opts Options, events <-chan cdc.Event) error {
	t.Helper()
	return New(tg.writer(), opts, tg.onDurable, zap.NewNop()).Run(context.Background(), events)
}

func TestGrouping(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opts   Options
		events func([]cdc.Event) <-chan cdc.Event
		stream []cdc.Event
		want   string
	}{
		{
			name: "queued transactions share one target transaction", opts: patient, events: queued,
			stream: concat(txn(10, "1"), txn(20, "2", "3"), txn(30, "4")),
			want:   "begin; add insert 1; add insert 2; add insert 3; add insert 4; commit 0/30",
		},
		{
			name: "a drained channel commits each transaction", opts: patient, events: oneByOne,
			stream: concat(txn(10, "1"), txn(20, "2", "3")),
			want:   "begin; add insert 1; commit 0/10; begin; add insert 2; add insert 3; commit 0/20",
		},
		{
			name: "MaxChanges closes the group at the next source commit", events: queued,
			opts:   Options{MaxChanges: 3, MaxDelay: time.Hour, HeartbeatEvery: time.Hour},
			stream: concat(txn(10, "1", "2"), txn(20, "3", "4"), txn(30, "5", "6", "7", "8", "9"), txn(40, "10")),
			want: "begin; add insert 1; add insert 2; add insert 3; add insert 4; commit 0/20; " +
				"begin; add insert 5; add insert 6; add insert 7; add insert 8; add insert 9; commit 0/30; " +
				"begin; add insert 10; commit 0/40",
		},
		{
			name: "MaxDelay closes the group at the next source commit", events: queued,
			opts:   Options{MaxDelay: time.Nanosecond, HeartbeatEvery: time.Hour},
			stream: concat(txn(10, "1"), txn(20, "2")),
			want:   "begin; add insert 1; commit 0/10; begin; add insert 2; commit 0/20",
		},
		{
			name: "empty source transactions still move the position", opts: patient, events: queued,
			stream: concat(txn(10), txn(20)),
			want:   "begin; commit 0/20",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tg := &target{}
			if err := run(t, tg, tt.opts, tt.events(tt.stream)); err != nil {
				t.Fatal(err)
			}
			if got, want := tg.String(), tt.want; got != want {
				t.Errorf("target calls:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestDurable(t *testing.T) {
	tg := &target{}
	stream := concat(txn(10, "1"), txn(20, "2"), txn(30, "3"))
	stream = append(stream[:len(stream)-1], change(cdc.OpDelete, "4"), change(cdc.OpInsert, "5"), stream[len(stream)-1])
	if err := run(t, tg, patient, queued(stream)); err != nil {
		t.Fatal(err)
	}
	if got, want := len(tg.durable), 1; got != want {
		t.Fatalf("durable calls = %d, want %d", got, want)
	}
	d := tg.durable[0]
	if got, want := d.pos, cdc.Position(posOf(30)); got != want {
		t.Errorf("durable position = %v, want %v", got, want)
	}
	if got, want := d.at, at(30); !got.Equal(want) {
		t.Errorf("durable commit time = %s, want the last transaction's %s", got, want)
	}
	if got, want := tg.commitAt[0], at(30); !got.Equal(want) {
		t.Errorf("checkpoint commit time = %s, want %s", got, want)
	}
	if got, want := d.stats.Txns, 3; got != want {
		t.Errorf("stats.Txns = %d, want %d", got, want)
	}
	if got, want := fmt.Sprint(d.stats.Changes), "map[insert:4 delete:1]"; got != want {
		t.Errorf("stats.Changes = %s, want %s", got, want)
	}
	if d.stats.Duration < 0 {
		t.Errorf("stats.Duration = %s", d.stats.Duration)
	}
}

func TestHeartbeat(t *testing.T) {
	for _, tt := range []struct {
		name         string
		opts         Options
		events       func([]cdc.Event) <-chan cdc.Event
		stream       []cdc.Event
		want         string
		wantDurable  []durableCall
		wantCommitAt []time.Time
	}{
		{
			name: "alone it checkpoints", opts: patient, events: oneByOne,
			stream:      []cdc.Event{heartbeat(50)},
			want:        "begin; commit 0/50",
			wantDurable: []durableCall{{posOf(50), at(50), BatchStats{}}},
		},
		{
			name: "queued heartbeats are limited by HeartbeatEvery", opts: patient, events: queued,
			stream: []cdc.Event{heartbeat(50), heartbeat(60), heartbeat(70), heartbeat(80)},
			want:   "begin; commit 0/50; begin; commit 0/80",
		},
		{
			name: "heartbeats one by one all checkpoint", opts: patient, events: oneByOne,
			stream: []cdc.Event{heartbeat(50), heartbeat(60)},
			want:   "begin; commit 0/50; begin; commit 0/60",
		},
		{
			name: "rides along an open group", opts: patient, events: queued,
			stream:      concat(txn(10, "1"), []cdc.Event{heartbeat(15)}, txn(20, "2")),
			want:        "begin; add insert 1; add insert 2; commit 0/20",
			wantDurable: []durableCall{{posOf(20), at(20), BatchStats{Txns: 2}}},
		},
		{
			name: "closes an open group when nothing follows", opts: patient, events: queued,
			stream: concat(txn(10, "1"), txn(20, "2"), []cdc.Event{heartbeat(25)}),
			want:   "begin; add insert 1; add insert 2; commit 0/25",
			// The time stays the last source commit's: the heartbeat adds no applied transaction.
			wantDurable: []durableCall{{posOf(25), at(20), BatchStats{Txns: 2}}},
		},
		{
			name: "after a committed transaction it checkpoints alone", opts: patient, events: oneByOne,
			stream:      concat(txn(10, "1"), []cdc.Event{heartbeat(15)}),
			want:        "begin; add insert 1; commit 0/10; begin; commit 0/15",
			wantDurable: []durableCall{{posOf(10), at(10), BatchStats{Txns: 1}}, {posOf(15), at(15), BatchStats{}}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tg := &target{}
			if err := run(t, tg, tt.opts, tt.events(tt.stream)); err != nil {
				t.Fatal(err)
			}
			if got, want := tg.String(), tt.want; got != want {
				t.Errorf("target calls:\n got %s\nwant %s", got, want)
			}
			if tt.wantDurable == nil {
				return
			}
			if got, want := len(tg.durable), len(tt.wantDurable); got != want {
				t.Fatalf("durable calls = %d, want %d", got, want)
			}
			for i, w := range tt.wantDurable {
				d := tg.durable[i]
				if d.pos != w.pos || !d.at.Equal(w.at) || d.stats.Txns != w.stats.Txns {
					t.Errorf("durable %d = (%v, %s, %d txns), want (%v, %s, %d txns)",
						i, d.pos, d.at, d.stats.Txns, w.pos, w.at, w.stats.Txns)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	errAdd, errBegin, errCommit := errors.New("add failed"), errors.New("begin failed"), errors.New("commit failed")
	for _, tt := range []struct {
		name    string
		tg      *target
		stream  []cdc.Event
		wantErr error  // matched with errors.Is, or
		wantMsg string // a part of the message
		want    string
	}{
		{
			name: "an error from Add rolls back",
			tg: &target{addErr: func(c *cdc.Change) error {
				if string(c.New[0].Data) == "3" {
					return errAdd
				}
				return nil
			}},
			stream:  concat(txn(10, "1"), txn(20, "2", "3", "4"), txn(30, "5")),
			wantErr: errAdd,
			want:    "begin; add insert 1; add insert 2; rollback",
		},
		{
			name: "an error from Begin", tg: &target{beginErr: errBegin},
			stream: txn(10, "1"), wantErr: errBegin, want: "",
		},
		{
			name: "an error from Commit rolls back", tg: &target{commitErr: errCommit},
			stream: txn(10, "1"), wantErr: errCommit, want: "begin; add insert 1; rollback",
		},
		{
			name: "change outside a transaction", tg: &target{},
			stream: []cdc.Event{change(cdc.OpInsert, "1")}, wantMsg: "change outside", want: "",
		},
		{
			name: "change after commit", tg: &target{},
			stream: append(txn(10, "1"), change(cdc.OpInsert, "2")), wantMsg: "change outside",
			want: "begin; add insert 1; rollback",
		},
		{
			name: "commit outside a transaction", tg: &target{},
			stream: []cdc.Event{{Kind: cdc.EventCommit, Position: posOf(10)}}, wantMsg: "commit outside", want: "",
		},
		{
			name: "heartbeat inside a transaction", tg: &target{},
			stream: []cdc.Event{txn(10, "1")[0], heartbeat(5)}, wantMsg: "heartbeat inside", want: "begin; rollback",
		},
		{
			name: "unknown event", tg: &target{},
			stream: []cdc.Event{{Kind: 99}}, wantMsg: "unknown event", want: "",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := run(t, tt.tg, patient, queued(tt.stream))
			switch {
			case err == nil:
				t.Fatal("Run returned nil, want an error")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("Run = %v, want %v", err, tt.wantErr)
			case tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg):
				t.Errorf("Run = %v, want it to mention %q", err, tt.wantMsg)
			}
			if got, want := tt.tg.String(), tt.want; got != want {
				t.Errorf("target calls:\n got %s\nwant %s", got, want)
			}
			if got := len(tt.tg.durable); got != 0 {
				t.Errorf("durable called %d times for work that never committed", got)
			}
		})
	}
}

func TestUnfinishedTransactionRollsBack(t *testing.T) {
	tg := &target{}
	stream := txn(10, "1", "2")
	if err := run(t, tg, patient, queued(stream[:len(stream)-1])); err != nil {
		t.Fatal(err)
	}
	if got, want := tg.String(), "begin; add insert 1; add insert 2; rollback"; got != want {
		t.Errorf("target calls:\n got %s\nwant %s", got, want)
	}
	if got := len(tg.durable); got != 0 {
		t.Errorf("durable calls = %d, want none", got)
	}
}

func TestCancel(t *testing.T) {
	tg := &target{}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan cdc.Event)
	done := make(chan error, 1)
	go func() { done <- New(tg.writer(), patient, tg.onDurable, zap.NewNop()).Run(ctx, events) }()
	for _, ev := range txn(10, "1")[:2] {
		events <- ev
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want %v", err, context.Canceled)
	}
	// The rollback must still reach the target after the context is gone.
	if got, want := tg.String(), "begin; add insert 1; rollback"; got != want {
		t.Errorf("target calls:\n got %s\nwant %s", got, want)
	}
}

func TestNewDefaults(t *testing.T) {
	a := New(fakeWriter{}, Options{}, nil, zap.NewNop())
	if got, want := a.opts.MaxChanges, 5000; got != want {
		t.Errorf("MaxChanges = %d, want %d", got, want)
	}
	if got, want := a.opts.MaxDelay, 200*time.Millisecond; got != want {
		t.Errorf("MaxDelay = %s, want %s", got, want)
	}
	if got, want := a.opts.HeartbeatEvery, time.Second; got != want {
		t.Errorf("HeartbeatEvery = %s, want %s", got, want)
	}
	// A nil Durable is allowed.
	tg := &target{}
	a = New(tg.writer(), patient, nil, zap.NewNop())
	if err := a.Run(context.Background(), queued(txn(10, "1"))); err != nil {
		t.Fatal(err)
	}
}
