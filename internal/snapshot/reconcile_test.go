package snapshot

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/cdc"
	"golang.org/x/sync/errgroup"
)

// fakeSource is a source table plus its change log. Every write and every watermark appends to
// the log under the same lock as the table, so the log order is the commit order.
type fakeSource struct {
	mu   sync.Mutex
	rows map[int]string // key → value
	log  []cdc.Event
	more chan struct{}
	rel  *cdc.Relation
	wm   *cdc.Relation
	seq  int
}

type pos int

func (p pos) String() string { return strconv.Itoa(int(p)) }

func newFakeSource() *fakeSource {
	return &fakeSource{
		rows: map[int]string{},
		more: make(chan struct{}),
		rel:  &cdc.Relation{Table: cdc.TableID{Schema: "app", Name: "t"}, Columns: []cdc.Column{{Name: "id", Key: true}, {Name: "v"}}},
		wm:   &cdc.Relation{Table: cdc.TableID{Schema: "_migrated", Name: "watermark"}, Columns: []cdc.Column{{Name: "id", Key: true}, {Name: "mark"}}},
	}
}

func text(s string) cdc.Value { return cdc.Value{Kind: cdc.ValueText, Data: []byte(s)} }

func (f *fakeSource) row(k int, v string) []cdc.Value {
	return []cdc.Value{text(strconv.Itoa(k)), text(v)}
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

// write makes one random change to the table.
func (f *fakeSource) write(r *rand.Rand, keys int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := r.IntN(keys)
	v := strconv.Itoa(r.Int())
	old, exists := f.rows[k]
	switch {
	case !exists:
		f.rows[k] = v
		f.commit(&cdc.Change{Op: cdc.OpInsert, Relation: f.rel, New: f.row(k, v)})
	case r.IntN(4) == 0:
		delete(f.rows, k)
		f.commit(&cdc.Change{Op: cdc.OpDelete, Relation: f.rel, Old: f.row(k, old)})
	case r.IntN(4) == 0:
		// A key change, to a key that is free.
		n := r.IntN(keys)
		if _, taken := f.rows[n]; taken {
			return
		}
		delete(f.rows, k)
		f.rows[n] = v
		f.commit(&cdc.Change{Op: cdc.OpUpdate, Relation: f.rel, Old: f.row(k, old), New: f.row(n, v)})
	default:
		f.rows[k] = v
		f.commit(&cdc.Change{Op: cdc.OpUpdate, Relation: f.rel, New: f.row(k, v)})
	}
}

func (f *fakeSource) Watermark(_ context.Context, mark string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commit(&cdc.Change{Op: cdc.OpInsert, Relation: f.wm, New: []cdc.Value{text("1"), text(mark)}})
	return nil
}

func (f *fakeSource) Read(_ context.Context, _ *cdc.Relation, cursor []string, limit int) ([][]cdc.Value, []string, error) {
	// Give the writers time to change the chunk between the watermarks and the read.
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	defer time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	from := -1 << 62
	if cursor != nil {
		from, _ = strconv.Atoi(cursor[0])
	}
	var keys []int
	for k := range f.rows {
		if k > from {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out [][]cdc.Value
	last := cursor
	for _, k := range keys[:min(limit, len(keys))] {
		out = append(out, f.row(k, f.rows[k]))
		last = []string{strconv.Itoa(k)}
	}
	return out, last, nil
}

func (f *fakeSource) Close() {}

// tail sends the log from index from until ctx ends; it returns the next index.
func (f *fakeSource) tail(ctx context.Context, from int, out chan<- cdc.Event, stopAfter int) int {
	i := from
	for {
		f.mu.Lock()
		evs := f.log[i:]
		more := f.more
		f.mu.Unlock()
		for _, ev := range evs {
			if stopAfter >= 0 && i >= stopAfter {
				return i
			}
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
// records the position. A failed commit loses the buffer.
type fakeTarget struct {
	mu      sync.Mutex
	rows    map[int]string
	checkpt int // index into the source log where a resumed stream starts
	marks   cdc.SnapshotMark
	// failLeft commits fail, each with probability 1 in 8, to force replays.
	failLeft int
	rnd      *rand.Rand
}

func (t *fakeTarget) run(ctx context.Context, in <-chan cdc.Event, r *Reconciler, logIndex func(cdc.Position) int) error {
	var buf []*cdc.Change
	var last cdc.Position // the last source commit in buf, nil when none
	commit := func() error {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.failLeft > 0 && t.rnd.IntN(8) == 0 {
			t.failLeft--
			return fmt.Errorf("target connection lost")
		}
		for _, c := range buf {
			k := func(row []cdc.Value) int { n, _ := strconv.Atoi(string(row[0].Data)); return n }
			switch c.Op {
			case cdc.OpInsert, cdc.OpUpdate:
				if c.Old != nil {
					delete(t.rows, k(c.Old))
				}
				t.rows[k(c.New)] = string(c.New[1].Data)
			case cdc.OpDelete:
				delete(t.rows, k(c.Old))
			case cdc.OpMark:
				t.marks = *c.Mark
			}
		}
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
			buf = append(buf, ev.Change)
		case cdc.EventCommit:
			last = ev.Position
			// Group source transactions like apply does: commit only every few.
			if t.rnd.IntN(4) != 0 {
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

// TestReconcilerConverges runs the watermark algorithm against a table under random inserts,
// updates, deletes and key changes, with the stream failing and resuming from the target's
// checkpoint along the way. The target must end equal to the source.
func TestReconcilerConverges(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { reconcileOnce(t, seed) })
	}
}

func reconcileOnce(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	src := newFakeSource()
	const keys = 120
	for range 300 {
		src.write(r, keys)
	}
	startLog := len(src.log)
	dst := &fakeTarget{rows: map[int]string{}, checkpt: startLog, failLeft: 10, rnd: rand.New(rand.NewPCG(seed, 7))}
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

	// The stream: tail from the checkpoint through the filter into the target; a failure
	// restarts both from the target's checkpoint, like the daemon's reconnect loop.
	copyDone := make(chan error, 1)
	go func() {
		copyDone <- rec.CopyTables(ctx, []Table{{Relation: src.rel}}, 1, 7, func(context.Context) (Source, error) { return src, nil }, nil)
	}()
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
			g.Go(func() error { src.tail(gctx, from, raw, -1); return gctx.Err() })
			g.Go(func() error { return rec.Filter(gctx, raw, filtered) })
			g.Go(func() error { return dst.run(gctx, filtered, rec, logIndex) })
			err := g.Wait()
			scancel()
			if err != nil && err.Error() == "target connection lost" {
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
	if !dst.marks.Done {
		t.Fatalf("last mark not done: %+v", dst.marks)
	}
	for k, v := range src.rows {
		if got, ok := dst.rows[k]; !ok || got != v {
			t.Errorf("key %d: source %q, target %q (present %v)", k, v, got, ok)
		}
	}
	for k := range dst.rows {
		if _, ok := src.rows[k]; !ok {
			t.Errorf("key %d on the target only", k)
		}
	}
}
