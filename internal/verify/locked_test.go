package verify

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/postgres"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// hotTable fills three chunks of 100; the hot rows are among the first.
const hotTable = `CREATE TABLE hot (id int PRIMARY KEY, v bigint NOT NULL, pad text);
INSERT INTO hot SELECT g, 0, repeat('x', g % 40) FROM generate_series(1, 250) g;`

// hotLag is how far the fake stream of hotLoad runs behind the source.
const hotLag = 30 * time.Millisecond

// hotLoad is a load of hot rows: writers update them on the source as fast as they can, and a
// fake stream replays them on the target, hotLag late.
type hotLoad struct {
	applied  atomic.Uint64 // the fake stream's applied position
	updates  atomic.Int64  // source updates so far
	replayed atomic.Int64  // samples written to the target so far
}

// startHot starts one writer per id, and the fake stream. The stream reads the source's WAL
// insert position, then, a little later, the rows' values; it writes those to the target hotLag
// later and only then counts the position as applied. Values read after the position hold every
// change before it, and a hot row has moved since: the target is never behind an applied
// position, and never equal to a source read made at it. skip, if set, says which rows a sample
// (counted from 1) leaves out. startHot returns once the load is under way, and the load stops
// when the test ends.
func startHot(t *testing.T, p *pair, ids []int, skip func(id int, sample int64) bool) *hotLoad {
	t.Helper()
	start, err := p.sourceNow(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	h := &hotLoad{}
	h.applied.Store(uint64(start))
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	fail := func(err error) {
		if ctx.Err() == nil {
			t.Error(err)
		}
	}
	for _, id := range ids {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := p.src.Exec(ctx, `UPDATE hot SET v = v + 1 WHERE id = $1`, id); err != nil {
					fail(err)
					return
				}
				h.updates.Add(1)
			}
		})
	}
	wg.Go(func() {
		type sample struct {
			at  time.Time
			pos postgres.LSN
			v   map[int]int64
		}
		var queue []sample
		for n := int64(1); ctx.Err() == nil; n++ {
			s := sample{at: time.Now(), v: map[int]int64{}}
			var err error
			if s.pos, err = p.sourceNow(ctx); err != nil {
				fail(err)
				return
			}
			time.Sleep(2 * time.Millisecond)
			rows, _ := p.src.Query(ctx, `SELECT id, v FROM hot WHERE id = ANY($1)`, ids)
			var id int
			var v int64
			if _, err := pgx.ForEachRow(rows, []any{&id, &v}, func() error {
				if skip == nil || !skip(id, n) {
					s.v[id] = v
				}
				return nil
			}); err != nil {
				fail(err)
				return
			}
			queue = append(queue, s)
			for len(queue) > 0 && time.Since(queue[0].at) >= hotLag {
				for id, v := range queue[0].v {
					if _, err := p.dst.Exec(ctx, `UPDATE hot SET v = $2 WHERE id = $1`, id, v); err != nil {
						fail(err)
						return
					}
				}
				h.applied.Store(uint64(queue[0].pos))
				h.replayed.Add(1)
				queue = queue[1:]
			}
			time.Sleep(3 * time.Millisecond)
		}
	})
	// A verify run that starts before the first connections are up compares rows at rest.
	for h.updates.Load() < int64(100*len(ids)) || h.replayed.Load() < 10 {
		if ctx.Err() != nil {
			t.Fatal("the hot load stopped before it was under way")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return h
}

// hotOptions compares p under h, logging to an observer.
func hotOptions(p *pair, h *hotLoad) (Options, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	o := p.options()
	o.Applied = func(context.Context) (postgres.LSN, error) { return postgres.LSN(h.applied.Load()), nil }
	o.Log = zap.New(core)
	return o, logs
}

// lockedMatches counts the keys that matched under a lock.
func lockedMatches(logs *observer.ObservedLogs, key string) int {
	return logs.FilterMessage("row matched with the source row locked").FilterField(zap.String("key", key)).Len()
}

// TestHotRow: a row updated as fast as the source allows is never seen equal on both sides by
// the unlocked reads, yet verify is clean, run after run.
func TestHotRow(t *testing.T) {
	p := newPair(t, hotTable)
	h := startHot(t, p, []int{1}, nil)
	o, logs := hotOptions(p, h)
	for i := range 2 {
		// Start each run with the writer going: on a loaded machine a run may end before many
		// more updates, which is not a failure of verify.
		warm := h.updates.Load() + 100
		for deadline := time.Now().Add(30 * time.Second); h.updates.Load() < warm && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		before := h.updates.Load()
		res, err := Run(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Clean || res.Mismatched != 0 || len(res.Samples) != 0 {
			t.Errorf("run %d with a hot row: %+v, want clean", i, res)
		}
		t.Logf("run %d: %d updates of the hot row while it ran", i, h.updates.Load()-before)
	}
	if lockedMatches(logs, "(1)") == 0 {
		// On a slow machine the writer may not outrun the stream this time; the result above
		// is still checked, but say that the lock was not exercised.
		t.Log("the hot row never needed the locked re-check in this run")
	}
}

// TestHotRowDiffers: when the stream stops replaying one of two hot rows, that row is reported,
// and only that row.
func TestHotRowDiffers(t *testing.T) {
	p := newPair(t, hotTable)
	h := startHot(t, p, []int{1, 2}, func(id int, sample int64) bool { return id == 2 && sample > 5 })
	o, logs := hotOptions(p, h)
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Clean || res.Mismatched != 1 {
		t.Errorf("result = %+v, want 1 mismatched chunk", res)
	}
	if got, want := res.Samples, []Mismatch{{"public.hot", "(2)", KindDifferent}}; !slices.Equal(got, want) {
		t.Errorf("Samples = %v, want %v", got, want)
	}
	if lockedMatches(logs, "(1)") == 0 {
		t.Log("row 1 never needed the locked re-check in this run")
	}
}

// TestSettle settles made-up verdicts against real rows: a stable difference is kept as found;
// other keys are compared under a lock, up to maxLocked; a row that cannot be locked is reported.
func TestSettle(t *testing.T) {
	p := newPair(t, hotTable)
	ctx := t.Context()
	exec(t, p.dst, `UPDATE hot SET v = -1 WHERE id = 30; DELETE FROM hot WHERE id = 31; INSERT INTO hot VALUES (400, 0, 'extra')`)
	q, err := newQueries(p.tables[0], 100)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := func() ([]string, map[string]verdict) {
		var order []string
		cur := map[string]verdict{}
		add := func(id int, kind string, stable bool) {
			v := verdict{Mismatch{"public.hot", fmt.Sprintf("(%d)", id), kind}, []string{strconv.Itoa(id)}, stable}
			order = append(order, joinKey(v.key))
			cur[joinKey(v.key)] = v
		}
		add(40, KindMissing, true) // wrong, but found twice: not locked
		add(3, KindDifferent, false)
		add(30, KindDifferent, false)
		add(31, KindDifferent, false)
		add(400, KindDifferent, false)
		for id := 1; id <= 25; id++ {
			if id != 3 {
				add(id, KindDifferent, false)
			}
		}
		return order, cur
	}
	newRunner := func(o Options) (*runner, *observer.ObservedLogs) {
		core, logs := observer.New(zap.DebugLevel)
		o.Target, o.Applied, o.CatchUpTimeout = p.dst, p.sourceNow, 10*time.Second
		return &runner{o: o, log: zap.New(core)}, logs
	}

	t.Run("locked", func(t *testing.T) {
		busy, err := p.src.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Rollback(ctx)
		if _, err := busy.Exec(ctx, `SELECT FROM hot WHERE id = 3 FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		r, logs := newRunner(Options{Source: p.src})
		order, cur := verdicts()
		got, err := r.settle(ctx, q, order, cur, cur, r.log)
		if err != nil {
			t.Fatal(err)
		}
		want := []Mismatch{{"public.hot", "(40)", KindMissing}, {"public.hot", "(3)", KindDifferent},
			{"public.hot", "(30)", KindDifferent}, {"public.hot", "(31)", KindMissing}, {"public.hot", "(400)", KindExtra}}
		for id := 18; id <= 25; id++ { // beyond maxLocked
			want = append(want, Mismatch{"public.hot", fmt.Sprintf("(%d)", id), KindDifferent})
		}
		if !slices.Equal(got, want) {
			t.Errorf("settle =\n%v\nwant\n%v", got, want)
		}
		if n := logs.FilterMessage("row too hot to lock; reporting it as different").FilterField(zap.String("key", "(3)")).Len(); n != 1 {
			t.Errorf("%d logs that row 3 was too hot to lock, want 1", n)
		}
		if n := logs.FilterMessageSnippet("more than 20 rows kept changing").Len(); n != 1 {
			t.Errorf("%d logs of the keys beyond maxLocked, want 1", n)
		}
		if n := logs.FilterMessage("row matched with the source row locked").Len(); n != maxLocked-4 {
			t.Errorf("%d keys matched under a lock, want %d", n, maxLocked-4)
		}
	})

	t.Run("denied", func(t *testing.T) {
		const role = "verify_select_only"
		exec(t, p.src, `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '`+role+`') THEN CREATE ROLE `+role+`; END IF; END $$;
		  GRANT SELECT ON hot TO `+role)
		t.Cleanup(func() {
			if _, err := p.src.Exec(context.WithoutCancel(ctx), `DROP OWNED BY `+role+`; DROP ROLE `+role); err != nil {
				t.Error(err)
			}
		})
		reader := connect(t, p.srcDSN, map[string]string{"role": role})
		r, logs := newRunner(Options{Source: reader})
		order, cur := verdicts()
		got, err := r.settle(ctx, q, order, cur, cur, r.log)
		if err != nil {
			t.Fatal(err)
		}
		var want []Mismatch
		for _, k := range order {
			want = append(want, cur[k].Mismatch)
		}
		if !slices.Equal(got, want) {
			t.Errorf("settle =\n%v\nwant every key as found\n%v", got, want)
		}
		if n := logs.FilterMessageSnippet("grant it UPDATE").Len(); n != 1 {
			t.Errorf("%d logs that the source user may not lock rows, want 1", n)
		}
	})
}
