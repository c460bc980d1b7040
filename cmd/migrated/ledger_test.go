package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

const ledgerSQL = `CREATE TABLE public.ledger (
    id     bigserial PRIMARY KEY,
    worker int NOT NULL,
    n      int NOT NULL,
    side   text NOT NULL,
    bumped int NOT NULL DEFAULT 0
)`

// ledger is an application that writes through a cutover: it inserts rows whose ids come from
// the database's own sequence, and bumps earlier rows, recording every write the database
// acknowledged. It writes wherever the routing hook last pointed (a file the hook writes), and
// treats a refused write (read-only, terminated session) as not done, retrying on the new side.
type ledger struct {
	src, dst  *pgxpool.Pool
	routeFile string

	mu     sync.Mutex
	rows   map[int64]ledgerRow // acknowledged state of every row written
	byID   []int64
	errors []error
	stop   chan struct{}
	wg     sync.WaitGroup
	writes atomic.Int64
	// refused counts writes the fence refused, which were retried.
	refused atomic.Int64
}

type ledgerRow struct {
	side   string
	bumped int
}

func startLedger(t *testing.T, e *env, workers int) *ledger {
	t.Helper()
	ctx := context.Background()
	l := &ledger{routeFile: e.dir + "/route", rows: map[int64]ledgerRow{}, stop: make(chan struct{})}
	var err error
	if l.src, err = pgxpool.New(ctx, e.src); err != nil {
		t.Fatal(err)
	}
	if l.dst, err = pgxpool.New(ctx, e.dst); err != nil {
		t.Fatal(err)
	}
	for i := range workers {
		l.wg.Add(1)
		go l.loop(i)
	}
	t.Cleanup(func() { l.finish(t) })
	return l
}

// route returns the pool the hook routed the application to, and its name.
func (l *ledger) route() (*pgxpool.Pool, string) {
	b, _ := os.ReadFile(l.routeFile)
	if strings.TrimSpace(string(b)) == "target" {
		return l.dst, "target"
	}
	return l.src, "source"
}

func (l *ledger) loop(worker int) {
	defer l.wg.Done()
	ctx := context.Background()
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		pool, side := l.route()
		var err error
		if n%3 == 2 {
			err = l.bump(ctx, pool, side)
		} else {
			var id int64
			err = pool.QueryRow(ctx, `INSERT INTO public.ledger (worker, n, side) VALUES ($1, $2, $3) RETURNING id`, worker, n, side).Scan(&id)
			if err == nil {
				l.mu.Lock()
				if _, dup := l.rows[id]; dup {
					l.errors = append(l.errors, errors.New("the database handed out id "+side+" twice"))
				}
				l.rows[id] = ledgerRow{side: side}
				l.byID = append(l.byID, id)
				l.mu.Unlock()
			}
		}
		if err != nil {
			if refusedByFence(err) {
				l.refused.Add(1)
				time.Sleep(5 * time.Millisecond)
				continue
			}
			l.mu.Lock()
			l.errors = append(l.errors, err)
			l.mu.Unlock()
			return
		}
		l.writes.Add(1)
		time.Sleep(2 * time.Millisecond)
	}
}

// bump updates a random earlier row and records the acknowledged count.
func (l *ledger) bump(ctx context.Context, pool *pgxpool.Pool, side string) error {
	l.mu.Lock()
	if len(l.byID) == 0 {
		l.mu.Unlock()
		return nil
	}
	id := l.byID[int(l.writes.Load())%len(l.byID)]
	l.mu.Unlock()
	var bumped int
	err := pool.QueryRow(ctx, `UPDATE public.ledger SET bumped = bumped + 1 WHERE id = $1 RETURNING bumped`, id).Scan(&bumped)
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.New("an acknowledged row is missing on the " + side)
	}
	if err == nil {
		l.mu.Lock()
		if r := l.rows[id]; bumped > r.bumped {
			r.bumped = bumped
			l.rows[id] = r
		}
		l.mu.Unlock()
	}
	return err
}

// refusedByFence reports the errors a fence causes: a read-only transaction, a terminated session.
func refusedByFence(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "25006" || strings.HasPrefix(pgErr.Code, "57P") || strings.HasPrefix(pgErr.Code, "08")
	}
	return pgconn.SafeToRetry(err) || strings.Contains(err.Error(), "unexpected EOF") || strings.Contains(err.Error(), "conn closed") ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

// pause stops the writers; resume is startLedger's loop again on the same ledger.
func (l *ledger) finish(t *testing.T) {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	l.wg.Wait()
	l.src.Close()
	l.dst.Close()
	t.Logf("ledger: %d acknowledged writes, %d refused by a fence and retried", l.writes.Load(), l.refused.Load())
}

// snapshot returns the writes acknowledged so far. Take it before waiting for a stream to catch
// up, then check against it: writes acknowledged later may not have arrived yet.
func (l *ledger) snapshot() map[int64]ledgerRow {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int64]ledgerRow, len(l.rows))
	for id, r := range l.rows {
		out[id] = r
	}
	return out
}

// check asserts that every write acknowledged in acked (nil: all so far) is on the side dsn, as
// acknowledged, and that the writers hit no unexpected error.
func (l *ledger) check(t *testing.T, e *env, dsn, what string, acked map[int64]ledgerRow) {
	t.Helper()
	if acked == nil {
		acked = l.snapshot()
	}
	l.mu.Lock()
	for _, err := range l.errors {
		t.Errorf("ledger writer: %v", err)
	}
	l.mu.Unlock()
	conn := e.connect(dsn)
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT id, side, bumped FROM public.ledger`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]ledgerRow{}
	var id int64
	var r ledgerRow
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.side, &r.bumped}, func() error { got[id] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for id, want := range acked {
		g, ok := got[id]
		if !ok || g.side != want.side || g.bumped < want.bumped {
			if lost < 5 {
				t.Errorf("%s: acknowledged write lost: id %d want %+v, have %+v (present %v)", what, id, want, g, ok)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%s: %d of %d acknowledged rows lost or stale", what, lost, len(acked))
	}
	t.Logf("%s: all %d acknowledged rows present", what, len(acked))
}

func (l *ledger) sides() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := map[string]int{}
	for _, r := range l.rows {
		n[r.side]++
	}
	return n
}
