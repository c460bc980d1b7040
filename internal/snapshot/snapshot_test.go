package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// fakeSession is a Session built from function fields.
type fakeSession struct {
	copy  func(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error)
	close func(ctx context.Context)
}

func (s fakeSession) Copy(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error) {
	return s.copy(ctx, c, rows)
}
func (s fakeSession) Close(ctx context.Context) { s.close(ctx) }

// pool records the sessions it opened and the chunks each copied, in order.
type pool struct {
	mu     sync.Mutex
	opened int
	closed int
	copied [][]string // per session
	// copy, when set, runs inside Copy; the default adds EstimatedRows to rows.
	copy func(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error)
}

func (p *pool) open(ctx context.Context) (Session, error) {
	p.mu.Lock()
	id := p.opened
	p.opened++
	p.copied = append(p.copied, nil)
	p.mu.Unlock()
	return fakeSession{
		copy: func(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error) {
			p.mu.Lock()
			p.copied[id] = append(p.copied[id], key(c))
			p.mu.Unlock()
			if p.copy != nil {
				return p.copy(ctx, c, rows)
			}
			rows.Add(c.EstimatedRows)
			return c.EstimatedRows, nil
		},
		close: func(ctx context.Context) {
			if ctx.Err() != nil {
				panic("session closed with a cancelled context")
			}
			p.mu.Lock()
			p.closed++
			p.mu.Unlock()
		},
	}, nil
}

func key(c Chunk) string { return fmt.Sprintf("%s#%d", c.Table, c.Index) }

// chunks makes n chunks of each table, chunk i estimated at (i+1)*per rows.
func chunks(per int64, n int, tables ...string) []Chunk {
	var out []Chunk
	for _, t := range tables {
		for i := 0; i < n; i++ {
			out = append(out, Chunk{Table: t, Index: i, Count: n, EstimatedRows: int64(i+1) * per})
		}
	}
	return out
}

func TestCopyAllOnce(t *testing.T) {
	for _, workers := range []int{0, 1, 3, 8, 100} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) {
			p := &pool{}
			var mu sync.Mutex
			done := map[string]int64{}
			c := &Copier{Workers: workers, Open: p.open, Log: zap.NewNop(), Done: func(c Chunk, rows int64) {
				mu.Lock()
				defer mu.Unlock()
				if _, dup := done[key(c)]; dup {
					t.Errorf("Done twice for %s", key(c))
				}
				done[key(c)] = rows
			}}
			in := chunks(10, 5, "public.a", "public.b", "public.c")
			if err := c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, s := range p.copied {
				for _, k := range s {
					seen[k]++
				}
			}
			for _, ch := range in {
				if got, want := seen[key(ch)], 1; got != want {
					t.Errorf("%s copied %d times, want %d", key(ch), got, want)
				}
				if got, want := done[key(ch)], ch.EstimatedRows; got != want {
					t.Errorf("Done(%s) rows = %d, want %d", key(ch), got, want)
				}
			}
			if got, want := len(seen), len(in); got != want {
				t.Errorf("copied %d distinct chunks, want %d", got, want)
			}
			wantSessions := min(max(workers, 1), len(in))
			if got, want := p.opened, wantSessions; got != want {
				t.Errorf("sessions opened = %d, want %d", got, want)
			}
			if got, want := p.closed, p.opened; got != want {
				t.Errorf("sessions closed = %d, want %d", got, want)
			}
		})
	}
}

func TestCopyBiggestFirst(t *testing.T) {
	in := []Chunk{
		{Table: "s", Index: 0, EstimatedRows: 10},
		{Table: "l", Index: 0, EstimatedRows: 1000},
		{Table: "m", Index: 0, EstimatedRows: 100},
		{Table: "m", Index: 1, EstimatedRows: 100},
		{Table: "xl", Index: 0, EstimatedRows: 5000},
		{Table: "m", Index: 2, EstimatedRows: 100},
	}
	t.Run("one worker", func(t *testing.T) {
		p := &pool{}
		if err := (&Copier{Workers: 1, Open: p.open}).Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		// Equal estimates keep their given order.
		if got, want := fmt.Sprint(p.copied[0]), "[xl#0 l#0 m#0 m#1 m#2 s#0]"; got != want {
			t.Errorf("order = %s, want %s", got, want)
		}
	})
	t.Run("each worker in turn", func(t *testing.T) {
		est := map[string]int64{}
		for _, c := range in {
			est[key(c)] = c.EstimatedRows
		}
		for range 20 {
			p := &pool{}
			if err := (&Copier{Workers: 3, Open: p.open}).Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			for w, keys := range p.copied {
				if !sort.SliceIsSorted(keys, func(i, j int) bool { return est[keys[i]] > est[keys[j]] }) {
					t.Errorf("worker %d copied %v, not biggest first", w, keys)
				}
			}
		}
	})
	t.Run("caller's slice untouched", func(t *testing.T) {
		before := fmt.Sprint(in)
		if err := (&Copier{Workers: 2, Open: (&pool{}).open}).Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(in); got != before {
			t.Errorf("Run reordered its argument: %s", got)
		}
	})
}

func TestCopyFirstErrorStops(t *testing.T) {
	boom := errors.New("target rejected row")
	t.Run("one worker", func(t *testing.T) {
		p := &pool{copy: func(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error) {
			if c.Index == 1 {
				return 0, boom
			}
			return 1, nil
		}}
		var done atomic.Int32
		c := &Copier{Workers: 1, Open: p.open, Done: func(Chunk, int64) { done.Add(1) }}
		err := c.Run(context.Background(), []Chunk{
			{Table: "t", Index: 0, EstimatedRows: 30}, {Table: "t", Index: 1, EstimatedRows: 20}, {Table: "t", Index: 2, EstimatedRows: 10},
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want %v", err, boom)
		}
		if got, want := fmt.Sprint(p.copied[0]), "[t#0 t#1]"; got != want {
			t.Errorf("copied %s, want %s: nothing after the failure", got, want)
		}
		if got, want := done.Load(), int32(1); got != want {
			t.Errorf("Done calls = %d, want %d", got, want)
		}
		if got, want := p.closed, 1; got != want {
			t.Errorf("sessions closed = %d, want %d", got, want)
		}
	})
	t.Run("other workers are cancelled", func(t *testing.T) {
		var started atomic.Int32
		p := &pool{copy: func(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error) {
			if c.Table == "bad" {
				// Fail once the others are busy, so they must be stopped, not drained.
				for started.Load() < 2 {
					time.Sleep(time.Millisecond)
				}
				return 0, boom
			}
			started.Add(1)
			<-ctx.Done()
			return 0, ctx.Err()
		}}
		in := append(chunks(100, 10, "slow"), Chunk{Table: "bad", EstimatedRows: 1 << 40})
		err := (&Copier{Workers: 3, Open: p.open}).Run(context.Background(), in)
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want %v", err, boom)
		}
		n := 0
		for _, s := range p.copied {
			n += len(s)
		}
		// Each worker ends at its first failed copy: nothing starts after the failure.
		if got, want := n, 3; got != want {
			t.Errorf("chunks started = %d, want %d (one per worker)", got, want)
		}
		if got, want := p.closed, p.opened; got != want {
			t.Errorf("sessions closed = %d, want %d", got, want)
		}
	})
	t.Run("open fails", func(t *testing.T) {
		refused := errors.New("too many connections")
		c := &Copier{Workers: 2, Open: func(ctx context.Context) (Session, error) { return nil, refused }}
		if err := c.Run(context.Background(), chunks(1, 4, "t")); !errors.Is(err, refused) {
			t.Errorf("Run = %v, want %v", err, refused)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		p := &pool{copy: func(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error) {
			cancel()
			<-ctx.Done()
			return 0, ctx.Err()
		}}
		if err := (&Copier{Workers: 2, Open: p.open}).Run(ctx, chunks(1, 4, "t")); !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want %v", err, context.Canceled)
		}
	})
}

func TestCopyNothing(t *testing.T) {
	c := &Copier{Workers: 4, Open: func(ctx context.Context) (Session, error) {
		t.Error("opened a session for no chunks")
		return nil, errors.New("unexpected")
	}}
	if err := c.Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestLive(t *testing.T) {
	release := make(chan struct{})
	inFlight := make(chan struct{}, 10)
	p := &pool{copy: func(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error) {
		if c.Table == "a" && c.Index == 2 {
			rows.Add(7)
			inFlight <- struct{}{}
			<-release
			rows.Add(3)
			return 10, nil
		}
		rows.Add(c.EstimatedRows)
		return c.EstimatedRows, nil
	}}
	c := &Copier{Workers: 3, Open: p.open}
	in := []Chunk{
		{Table: "a", Index: 0, EstimatedRows: 100},
		{Table: "a", Index: 1, EstimatedRows: 50},
		{Table: "a", Index: 2, EstimatedRows: 1},
		{Table: "b", Index: 0, EstimatedRows: 5},
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background(), in) }()

	<-inFlight
	// Rows of a chunk still copying count, read safely while the copy runs.
	deadline := time.Now().Add(5 * time.Second)
	for c.Live("a") != 157 || c.Live("b") != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("Live(a) = %d, Live(b) = %d, want 157 and 5 while a#2 is in flight", c.Live("a"), c.Live("b"))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		table string
		want  int64
	}{{"a", 160}, {"b", 5}, {"unknown", 0}} {
		if got := c.Live(tt.table); got != tt.want {
			t.Errorf("Live(%s) = %d, want %d", tt.table, got, tt.want)
		}
	}
}

func TestLiveBeforeRun(t *testing.T) {
	if got := (&Copier{}).Live("a"); got != 0 {
		t.Errorf("Live = %d, want 0", got)
	}
}
