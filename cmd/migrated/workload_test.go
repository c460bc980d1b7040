package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaSQL covers the types and table shapes a migration must carry exactly.
const schemaSQL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ecstatic ☀');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE SCHEMA app;

CREATE TABLE app.everything (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    i2          int2,
    i4          int4,
    i8          int8,
    num         numeric,
    num_hp      numeric(40,20),
    f4          float4,
    f8          float8,
    txt         text,
    vc          varchar(50),
    bin         bytea,
    flag        bool,
    d           date,
    t           time,
    ts          timestamp,
    tstz        timestamptz,
    iv          interval,
    u           uuid,
    js          json,
    jsb         jsonb,
    arr_int     int[],
    arr_txt     text[],
    m           mood,
    m_arr       mood[],
    dom         posint,
    addr        inet,
    big_txt     text,
    big_jsb     jsonb,
    total       numeric GENERATED ALWAYS AS (coalesce(num_hp, 0) * 2) STORED,
    counter     int NOT NULL DEFAULT 0
);
CREATE INDEX everything_u_idx ON app.everything (u);

CREATE TABLE public.events (
    tenant   int NOT NULL,
    happened date NOT NULL,
    seq      serial,
    payload  text,
    PRIMARY KEY (tenant, happened, seq)
) PARTITION BY RANGE (happened);
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');

CREATE TABLE public.pairs (
    a   int NOT NULL,
    b   text NOT NULL,
    val numeric,
    PRIMARY KEY (a, b)
);

CREATE TABLE public.bulk (
    id   bigint PRIMARY KEY,
    note text
);

CREATE TABLE public.parent (id int PRIMARY KEY, name text);
CREATE TABLE public.child (id int PRIMARY KEY, parent_id int REFERENCES public.parent(id) ON DELETE CASCADE, note text);
`

// everythingRow inserts one row of app.everything with edge-case values chosen by n.
const everythingInsert = `
INSERT INTO app.everything (i2, i4, i8, num, num_hp, f4, f8, txt, vc, bin, flag, d, t, ts, tstz, iv, u, js, jsb,
    arr_int, arr_txt, m, m_arr, dom, addr, big_txt, big_jsb)
SELECT (n % 32000)::int2, n, n::int8 * 1000000007,
       CASE n % 5 WHEN 0 THEN 'NaN'::numeric ELSE n * 1.000000000000000000001 END,
       n / 7.0::numeric(40,20),
       CASE n % 4 WHEN 0 THEN 'NaN'::float4 WHEN 1 THEN '-0'::float4 ELSE n / 3.0 END,
       CASE n % 6 WHEN 0 THEN '-Infinity'::float8 WHEN 1 THEN '-0'::float8 ELSE n * 1.0e-300 END,
       'héllo wörld ✓ 🎉 ' || n, 'vc' || n, decode(md5(n::text), 'hex'), n % 2 = 0,
       CASE n % 9 WHEN 0 THEN 'infinity'::date WHEN 1 THEN '-infinity'::date ELSE '2000-01-01'::date + n END,
       '12:34:56.789'::time, '2024-02-29 23:59:59.999999'::timestamp,
       CASE n % 8 WHEN 0 THEN 'infinity'::timestamptz ELSE '2024-03-10 02:30:00+00'::timestamptz + n * interval '1 minute' END,
       make_interval(months => n % 13, days => n % 31, secs => n / 1000.0),
       md5(n::text)::uuid, json_build_object('n', n, 'k', 'v "quoted"'), jsonb_build_object('n', n, 'nested', jsonb_build_array(1, null, 'x')),
       ARRAY[n, NULL, -n], ARRAY['a', NULL, 'b,c', '"q"'], (ARRAY['sad','ok','happy','ecstatic ☀'])[1 + n % 4]::mood,
       ARRAY['ok', 'happy']::mood[], 1 + n % 100, ('10.0.' || (n % 255) || '.1/32')::inet,
       CASE WHEN n % 10 = 0 THEN repeat(md5(n::text), 400) END,
       CASE WHEN n % 10 = 0 THEN jsonb_build_object('blob', repeat(md5(n::text), 300)) END
  FROM generate_series($1::int, $2::int) AS n`

func seed(t *testing.T, dsn string, rows int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, schemaSQL); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	stmts := []struct {
		sql  string
		args []any
	}{
		{everythingInsert, []any{1, rows}},
		{`INSERT INTO public.events (tenant, happened, payload) SELECT n % 17, '2025-01-01'::date + (n % 700), 'p' || n FROM generate_series(1, $1::int) n`, []any{rows}},
		{`INSERT INTO public.pairs SELECT n, 'k' || (n % 3), n * 1.5 FROM generate_series(1, $1::int) n`, []any{rows / 2}},
		{`INSERT INTO public.bulk SELECT n, 'seed' FROM generate_series(1, $1::int) n`, []any{rows / 4}},
		{`INSERT INTO public.parent SELECT n, 'p' || n FROM generate_series(1, 200) n`, nil},
		{`INSERT INTO public.child SELECT n, 1 + n % 200, 'c' FROM generate_series(1, 1000) n`, nil},
		{`ANALYZE`, nil},
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s.sql, s.args...); err != nil {
			t.Fatalf("seed %s: %v", firstLine(s.sql), err)
		}
	}
}

// writer runs a mix of changes against the source until stopped.
type writer struct {
	pool    *pgxpool.Pool
	next    atomic.Int64
	ops     atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error
	workers int
}

func startWriter(t *testing.T, dsn string, firstID int64, workers int) *writer {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{pool: pool, stop: make(chan struct{}), workers: workers}
	w.next.Store(firstID)
	for i := 0; i < workers; i++ {
		w.wg.Add(1)
		go w.loop(int64(i))
	}
	return w
}

func (w *writer) loop(seed int64) {
	defer w.wg.Done()
	r := rand.New(rand.NewPCG(uint64(seed), 42))
	ctx := context.Background()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		if err := w.step(ctx, r); err != nil {
			// Deadlocks between writers are the workload's business, not the migration's.
			if strings.Contains(err.Error(), "deadlock") || strings.Contains(err.Error(), "could not serialize") {
				continue
			}
			w.errMu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.errMu.Unlock()
			return
		}
		w.ops.Add(1)
	}
}

func (w *writer) step(ctx context.Context, r *rand.Rand) error {
	id := 1 + r.Int64N(max(w.next.Load()-1, 1))
	var err error
	switch r.IntN(12) {
	case 0, 1:
		n := w.next.Add(1)
		_, err = w.pool.Exec(ctx, everythingInsert, n, n)
	case 2:
		// Only non-TOAST columns change: the big values must survive untouched.
		_, err = w.pool.Exec(ctx, `UPDATE app.everything SET counter = counter + 1, f8 = random() WHERE id = $1`, id)
	case 3:
		_, err = w.pool.Exec(ctx, `UPDATE app.everything SET txt = txt || '!', big_txt = CASE WHEN id % 3 = 0 THEN repeat('z', 5000) ELSE big_txt END, jsb = jsb || '{"u": 1}' WHERE id = $1`, id)
	case 4:
		_, err = w.pool.Exec(ctx, `DELETE FROM app.everything WHERE id = $1`, id)
	case 5:
		// Primary key change.
		_, err = w.pool.Exec(ctx, `UPDATE public.pairs SET a = a + 1000000 WHERE a = $1 AND b = 'k1'`, id)
	case 6:
		_, err = w.pool.Exec(ctx, `INSERT INTO public.pairs VALUES ($1, 'w' || $2::text, 1) ON CONFLICT DO NOTHING`, id, fmt.Sprint(r.IntN(1000)))
	case 7:
		_, err = w.pool.Exec(ctx, `UPDATE public.events SET payload = payload || '+', happened = CASE WHEN seq % 2 = 0 THEN '2026-06-01' ELSE happened END WHERE seq = $1`, id)
	case 8:
		_, err = w.pool.Exec(ctx, `INSERT INTO public.events (tenant, happened, payload) VALUES ($1, '2026-01-01'::date + $2::int, 'live')`, r.IntN(17), r.IntN(300))
	case 9:
		_, err = w.pool.Exec(ctx, `DELETE FROM public.events WHERE seq = $1`, id)
	case 10:
		tx, terr := w.pool.Begin(ctx)
		if terr != nil {
			return terr
		}
		defer tx.Rollback(ctx)
		p := 1 + r.IntN(200)
		if _, err = tx.Exec(ctx, `UPDATE public.parent SET name = name || '.' WHERE id = $1`, p); err == nil {
			_, err = tx.Exec(ctx, `INSERT INTO public.child VALUES ($1, $2, 'live') ON CONFLICT (id) DO UPDATE SET note = 'again'`, 100000+id, p)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
	case 11:
		_, err = w.pool.Exec(ctx, `UPDATE public.bulk SET note = 'upd' WHERE id = $1`, id)
	}
	if err != nil {
		return fmt.Errorf("writer: %w", err)
	}
	return nil
}

// finish stops the writer and fails the test if it hit an unexpected error.
func (w *writer) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.wg.Wait()
	w.pool.Close()
	if w.err != nil {
		t.Fatal(w.err)
	}
	t.Logf("writer committed %d operations", w.ops.Load())
}
