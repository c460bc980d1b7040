package snapshot

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"golang.org/x/sync/errgroup"
)

// fakeSource is a few source tables plus their change log. Every write and every watermark
// appends to the log under the same lock as the tables, so the log order is the commit order.
type fakeSource struct {
	mu   sync.Mutex
	rows map[tkey]string // table and key → value
	log  []cdc.Event
	more chan struct{}
	rels []*cdc.Relation
	wm   *cdc.Relation
	seq  int
}

// tkey is a row's table (its index in rels) and key.
type tkey struct{ t, k int }

type pos int

func (p pos) String() string { return strconv.Itoa(int(p)) }

func newFakeSource(tables int) *fakeSource {
	f := &fakeSource{
		rows: map[tkey]string{},
		more: make(chan struct{}),
		wm:   &cdc.Relation{Table: cdc.TableID{Schema: "_migrated", Name: "watermark"}, Columns: []cdc.Column{{Name: "id", Key: true}, {Name: "mark"}}},
	}
	for n := range tables {
		f.rels = append(f.rels, &cdc.Relation{Table: cdc.TableID{Schema: "app", Name: "t" + strconv.Itoa(n)}, Columns: []cdc.Column{{Name: "id", Key: true}, {Name: "v"}}})
	}
	return f
}

func text(s string) cdc.Value { return cdc.Value{Kind: cdc.ValueText, Data: []byte(s)} }

func (f *fakeSource) row(k int, v string) []cdc.Value {
	return []cdc.Value{text(strconv.Itoa(k)), text(v)}
}

// table returns the index of a relation's table.
func (f *fakeSource) table(rel *cdc.Relation) int {
	return slices.IndexFunc(f.rels, func(r *cdc.Relation) bool { return r.Table == rel.Table })
}

// commit appends one transaction; the caller holds mu.
func (f *fakeSource) commit(changes ...*cdc.Change) {
	f.seq++
	f.log = append(f.log, cdc.Event{Kind: cdc.EventBegin})
	for _, c := range changes {
		f.log = append(f.log, cdc.Event{Kind: cdc.EventChange, Change: c})
	}
	f.log = append(f.log, cdc.Event{Kind: cdc.EventCommit, Position: pos(f.seq)})
	close(f.more)
	f.more = make(chan struct{})
}

// write makes one random change to one of the tables: an insert, an update, a delete, a key
// change, and now and then a truncate.
func (f *fakeSource) write(r *rand.Rand, keys int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := r.IntN(len(f.rels))
	rel := f.rels[t]
	if r.IntN(2000) == 0 {
		for k := range f.rows {
			if k.t == t {
				delete(f.rows, k)
			}
		}
		f.commit(&cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{rel}})
		return
	}
	k := tkey{t, r.IntN(keys)}
	v := strconv.Itoa(r.Int())
	old, exists := f.rows[k]
	switch {
	case !exists:
		f.rows[k] = v
		f.commit(&cdc.Change{Op: cdc.OpInsert, Relation: rel, New: f.row(k.k, v)})
	case r.IntN(4) == 0:
		delete(f.rows, k)
		f.commit(&cdc.Change{Op: cdc.OpDelete, Relation: rel, Old: f.row(k.k, old)})
	case r.IntN(4) == 0:
		// A key change, to a key that is free.
		n := tkey{t, r.IntN(keys)}
		if _, taken := f.rows[n]; taken {
			return
		}
		delete(f.rows, k)
		f.rows[n] = v
		f.commit(&cdc.Change{Op: cdc.OpUpdate, Relation: rel, Old: f.row(k.k, old), New: f.row(n.k, v)})
	default:
		f.rows[k] = v
		f.commit(&cdc.Change{Op: cdc.OpUpdate, Relation: rel, New: f.row(k.k, v)})
	}
}

// session is one copy worker's session on the source.
type session struct{ f *fakeSource }

func (s session) Watermark(_ context.Context, mark string) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.commit(&cdc.Change{Op: cdc.OpInsert, Relation: s.f.wm, New: []cdc.Value{text("1"), text(mark)}})
	return nil
}

func (s session) Read(_ context.Context, rel *cdc.Relation, cursor []string, limit int) ([][]cdc.Value, []string, error) {
	// Give the writers time to change the chunk between the watermarks and the read.
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	defer time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.table(rel)
	from := -1 << 62
	if cursor != nil {
		from, _ = strconv.Atoi(cursor[0])
	}
	var keys []int
	for k := range f.rows {
		if k.t == t && k.k > from {
			keys = append(keys, k.k)
		}
	}
	slices.Sort(keys)
	var out [][]cdc.Value
	last := cursor
	for _, k := range keys[:min(limit, len(keys))] {
		out = append(out, f.row(k, f.rows[tkey{t, k}]))
		last = []string{strconv.Itoa(k)}
	}
	return out, last, nil
}

func (session) Close() {}

// tail sends the log from index from until ctx ends; it returns the next index.
func (f *fakeSource) tail(ctx context.Context, from int, out chan<- cdc.Event) int {
	i := from
	for {
		f.mu.Lock()
		evs := f.log[i:]
		more := f.more
		f.mu.Unlock()
		for _, ev := range evs {
			select {
			case out <- ev:
				i++
			case <-ctx.Done():
				return i
			}
		}
		select {
		case <-more:
		case <-ctx.Done():
			return i
		}
	}
}

// fakeTarget applies events like apply does: a transaction buffers, Commit applies it and
// records the position. A failed commit loses the buffer. Chunks come through Begin, on other
// sessions, and commit at a random later moment, so the stream runs ahead of them.
type fakeTarget struct {
	src     *fakeSource
	mu      sync.Mutex
	rows    map[tkey]string
	checkpt int // index into the source log where a resumed stream starts
	marks   map[cdc.TableID]cdc.SnapshotMark
	// failLeft stream commits fail, each with probability 1 in 8, to force replays;
	// chunkFailLeft chunk commits fail, half of them after the chunk landed.
	failLeft, chunkFailLeft int
	rnd                     *rand.Rand
	// locked holds the rows the stream's open transaction wrote: a chunk that writes one of
	// them would wait on its lock, and the stream may be waiting on the chunk.
	locked map[tkey]bool
	// fresh and held count the chunks committed as fresh rows, and those refused because the
	// target held one of their rows.
	fresh, held int
}

var errLost = errors.New("target connection lost")

// key returns the table and key of a row.
func (t *fakeTarget) key(rel *cdc.Relation, row []cdc.Value) tkey {
	n, _ := strconv.Atoi(string(row[0].Data))
	return tkey{t.src.table(rel), n}
}

// apply writes changes in order; the caller holds mu.
func (t *fakeTarget) apply(buf []*cdc.Change) {
	k := t.key
	for _, c := range buf {
		switch c.Op {
		case cdc.OpInsert, cdc.OpUpdate:
			if c.Old != nil {
				delete(t.rows, k(c.Relation, c.Old))
			}
			t.rows[k(c.Relation, c.New)] = string(c.New[1].Data)
		case cdc.OpDelete:
			delete(t.rows, k(c.Relation, c.Old))
		case cdc.OpTruncate:
			for key := range t.rows {
				if key.t == t.src.table(c.Truncated[0]) {
					delete(t.rows, key)
				}
			}
		case cdc.OpMark:
			t.marks[c.Relation.Table] = *c.Mark
		}
	}
}

func (t *fakeTarget) run(ctx context.Context, in <-chan cdc.Event, r *Reconciler, logIndex func(cdc.Position) int) error {
	var buf []*cdc.Change
	var last cdc.Position // the last source commit in buf, nil when none
	commit := func() error {
		t.mu.Lock()
		defer t.mu.Unlock()
		clear(t.locked)
		if t.failLeft > 0 && t.rnd.IntN(8) == 0 {
			t.failLeft--
			return errLost
		}
		t.apply(buf)
		t.checkpt = logIndex(last)
		buf, last = nil, nil
		return nil
	}
	for {
		var ev cdc.Event
		var idle <-chan time.Time
		if last != nil {
			// Like apply's MaxDelay: an open group commits when nothing comes for a while.
			idle = time.After(2 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle:
			pos := last
			if err := commit(); err != nil {
				return err
			}
			r.Durable(pos)
			continue
		case ev = <-in:
		}
		switch ev.Kind {
		case cdc.EventChange:
			if ev.Change.Op == cdc.OpMark {
				return errors.New("a snapshot mark in the stream")
			}
			buf = append(buf, ev.Change)
			if c := ev.Change; c.Relation != nil {
				t.mu.Lock()
				for _, row := range [][]cdc.Value{c.Old, c.New} {
					if row != nil {
						t.locked[t.key(c.Relation, row)] = true
					}
				}
				t.mu.Unlock()
			}
		case cdc.EventCommit:
			last = ev.Position
			// Group source transactions like apply does: commit only every few.
			t.mu.Lock()
			group := t.rnd.IntN(4) != 0
			t.mu.Unlock()
			if group {
				continue
			}
			pos := last
			if err := commit(); err != nil {
				return err
			}
			r.Durable(pos)
		}
	}
}

// Begin opens a chunk's transaction on a session of its own.
func (t *fakeTarget) Begin(context.Context) (apply.Txn, error) { return &chunkTxn{t: t}, nil }

// BeginFresh opens a chunk's transaction of plain inserts, which fails whole if the target
// holds one of its rows.
func (t *fakeTarget) BeginFresh(context.Context) (apply.Txn, error) {
	return &chunkTxn{t: t, fresh: true}, nil
}

type chunkTxn struct {
	t     *fakeTarget
	buf   []*cdc.Change
	fresh bool
}

func (x *chunkTxn) Add(_ context.Context, c *cdc.Change) error {
	x.buf = append(x.buf, c)
	return x.t.wouldWait(c)
}

// wouldWait fails a chunk's row that a real target would make wait on a row lock of the
// stream's open transaction.
func (t *fakeTarget) wouldWait(c *cdc.Change) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.Op == cdc.OpInsert && t.locked[t.key(c.Relation, c.New)] {
		return fmt.Errorf("the chunk writes %s key %s, locked by the stream's open transaction", c.Relation.Table, c.New[0].Data)
	}
	return nil
}

func (x *chunkTxn) Commit(_ context.Context, p cdc.Position, _ time.Time) error {
	if p != nil {
		return errors.New("a chunk committed with a stream position")
	}
	t := x.t
	t.mu.Lock()
	delay := time.Duration(t.rnd.IntN(2000)) * time.Microsecond
	t.mu.Unlock()
	time.Sleep(delay) // the stream goes on meanwhile
	for _, c := range x.buf {
		if err := t.wouldWait(c); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if x.fresh {
		for _, c := range x.buf {
			if c.Op != cdc.OpInsert {
				continue
			}
			if _, ok := t.rows[t.key(c.Relation, c.New)]; ok {
				t.held++
				return fmt.Errorf("insert %s key %s: %w", c.Relation.Table, c.New[0].Data, apply.ErrHeld)
			}
		}
		t.fresh++
	}
	if t.chunkFailLeft > 0 && t.rnd.IntN(6) == 0 {
		t.chunkFailLeft--
		if t.rnd.IntN(2) == 0 {
			t.apply(x.buf) // the commit landed, but its answer was lost
		}
		return errLost
	}
	t.apply(x.buf)
	return nil
}

func (x *chunkTxn) Rollback(context.Context) {}

// TestReconcilerConverges runs the watermark algorithm against three tables under random
// inserts, updates, deletes, key changes and truncates, copied by three workers whose chunks
// commit on their own sessions at random moments while the stream runs ahead, with the stream
// and the chunk writes failing and resuming along the way. The target must end equal to the
// source, row by row.
func TestReconcilerConverges(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { reconcileOnce(t, seed) })
	}
}

func reconcileOnce(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	src := newFakeSource(3)
	const keys = 120
	for range 900 {
		src.write(r, keys)
	}
	startLog := len(src.log)
	dst := &fakeTarget{src: src, rows: map[tkey]string{}, marks: map[cdc.TableID]cdc.SnapshotMark{}, checkpt: startLog, locked: map[tkey]bool{},
		failLeft: 10, chunkFailLeft: 4, rnd: rand.New(rand.NewPCG(seed, 7))}
	rec := &Reconciler{Migration: "m", WatermarkTable: src.wm.Table}
	// Commit positions are the log index just after the commit event.
	logIndex := func(p cdc.Position) int {
		n, _ := strconv.Atoi(Unwrap(p).String())
		src.mu.Lock()
		defer src.mu.Unlock()
		seen := 0
		for i, ev := range src.log {
			if ev.Kind == cdc.EventCommit {
				seen++
				if seen == n {
					return i + 1
				}
			}
		}
		return len(src.log)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	writers, wctx := errgroup.WithContext(ctx)
	stopWrites := make(chan struct{})
	writers.Go(func() error {
		wr := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-stopWrites:
				return nil
			case <-wctx.Done():
				return nil
			default:
			}
			src.write(wr, keys)
			time.Sleep(time.Duration(wr.IntN(20)) * time.Microsecond)
		}
	})

	// The copy resumes from the marks on the target after a failed chunk, like the daemon's
	// retry; the stream starts after Track, like the daemon's.
	rec.Track()
	copyDone := make(chan error, 1)
	go func() {
		for {
			var tables []Table
			dst.mu.Lock()
			for _, rel := range src.rels {
				tables = append(tables, Table{Relation: rel, From: dst.marks[rel.Table]})
			}
			dst.mu.Unlock()
			err := rec.CopyTables(ctx, tables, len(src.rels), 7,
				func(context.Context) (Source, error) { return session{src}, nil },
				func(context.Context) (apply.Writer, func(), error) { return dst, func() {}, nil }, nil)
			if !errors.Is(err, errLost) {
				copyDone <- err
				return
			}
		}
	}()
	// The stream: tail from the checkpoint through the filter into the target; a failure
	// restarts both from the target's checkpoint, like the daemon's reconnect loop.
	streamDone := make(chan struct{})
	var streamErr error
	go func() {
		defer close(streamDone)
		for ctx.Err() == nil {
			sctx, scancel := context.WithCancel(ctx)
			raw, filtered := make(chan cdc.Event, 16), make(chan cdc.Event, 16)
			dst.mu.Lock()
			from := dst.checkpt
			dst.mu.Unlock()
			g, gctx := errgroup.WithContext(sctx)
			g.Go(func() error { src.tail(gctx, from, raw); return gctx.Err() })
			g.Go(func() error { return rec.Filter(gctx, raw, filtered) })
			g.Go(func() error { return dst.run(gctx, filtered, rec, logIndex) })
			err := g.Wait()
			scancel()
			if errors.Is(err, errLost) {
				continue
			}
			if ctx.Err() == nil {
				streamErr = err
			}
			return
		}
	}()
	if err := <-copyDone; err != nil {
		t.Fatalf("copy: %v", err)
	}
	close(stopWrites)
	_ = writers.Wait()
	// Wait for the target to reach the end of the log.
	deadline := time.Now().Add(30 * time.Second)
	for {
		src.mu.Lock()
		end := len(src.log)
		src.mu.Unlock()
		dst.mu.Lock()
		at := dst.checkpt
		dst.mu.Unlock()
		if at >= end {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("target stuck at log %d of %d", at, end)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-streamDone
	if streamErr != nil {
		t.Fatalf("stream: %v", streamErr)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	dst.mu.Lock()
	defer dst.mu.Unlock()
	for _, rel := range src.rels {
		if !dst.marks[rel.Table].Done {
			t.Fatalf("last mark of %s not done: %+v", rel.Table, dst.marks[rel.Table])
		}
	}
	if dst.fresh == 0 || dst.held == 0 {
		t.Errorf("%d chunks committed as fresh rows, %d found a row held: the run does not try both", dst.fresh, dst.held)
	}
	for k, v := range src.rows {
		if got, ok := dst.rows[k]; !ok || got != v {
			t.Errorf("table %d key %d: source %q, target %q (present %v)", k.t, k.k, v, got, ok)
		}
	}
	for k := range dst.rows {
		if _, ok := src.rows[k]; !ok {
			t.Errorf("table %d key %d on the target only", k.t, k.k)
		}
	}
}

// TestCopyTablesNeedsTrack refuses a copy whose stream started without Track: the chunks
// could not leave out the rows the stream has not made durable yet.
func TestCopyTablesNeedsTrack(t *testing.T) {
	rec := &Reconciler{Migration: "m"}
	err := rec.CopyTables(context.Background(), nil, 1, 10, nil, nil, nil)
	if !errors.Is(err, ErrNotTracking) {
		t.Fatalf("got %v, want ErrNotTracking", err)
	}
}
