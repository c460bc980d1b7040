package verify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is loaded into both databases: keys of several types, NULLs, jsonb, arrays, a column
// named t, a partitioned table, quoted names, an enum key outside the search path.
const fixture = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SCHEMA sales;
CREATE TYPE sales.tier AS ENUM ('gold', 'silver', 'bronze');
CREATE TABLE ints (id int PRIMARY KEY, v text, j jsonb, a int[], t text, m mood);
INSERT INTO ints SELECT g, CASE WHEN g % 7 <> 0 THEN 'v' || g END,
       CASE WHEN g % 5 <> 0 THEN jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)) END,
       CASE WHEN g % 3 <> 0 THEN ARRAY[g, NULL, g + 1] END, 'a column named t', (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood
  FROM generate_series(1, 450) g;
CREATE TABLE pairs (a int, b text, n numeric(20,4), ts timestamptz, iv interval, by bytea, f float8, PRIMARY KEY (a, b));
INSERT INTO pairs SELECT g / 3, 'k' || (g % 3), g * 1.5, timestamptz '2024-01-01 00:00+00' + g * interval '1 hour 7 minutes',
       g * interval '1 day 3 hours', decode(md5(g::text), 'hex'), g / 7.0::float8
  FROM generate_series(0, 149) g;
CREATE TABLE words (w text PRIMARY KEY, d date);
INSERT INTO words SELECT md5(g::text) || ' ' || g, date '2020-01-01' + g FROM generate_series(1, 120) g;
CREATE TABLE events (id bigint, day date, payload text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events SELECT g, date '2024-06-01' + g * 2, 'p' || g FROM generate_series(1, 250) g;
CREATE TABLE "Mixed Case" ("Id" int PRIMARY KEY, "Value" float8);
INSERT INTO "Mixed Case" SELECT g, g * 0.1 FROM generate_series(1, 100) g;
CREATE TABLE sales.prices (p numeric(20,4) PRIMARY KEY, label text);
INSERT INTO sales.prices SELECT g * 1.25, 'l' || g FROM generate_series(1, 130) g;
CREATE TABLE sales.levels (tier sales.tier, n int, PRIMARY KEY (tier, n));
INSERT INTO sales.levels SELECT (ARRAY['gold', 'silver', 'bronze'])[g % 3 + 1]::sales.tier, g FROM generate_series(1, 150) g;
CREATE TABLE empty (id int PRIMARY KEY);`

// pair is a source and a target database loaded with the same data.
type pair struct {
	src, dst       *pgxpool.Pool
	srcDSN, dstDSN string
	tables         []*schema.Table
}

func newPair(t *testing.T, ddl string) *pair {
	t.Helper()
	pg := testenv.RequirePostgres(t)
	ctx := t.Context()
	name := strings.ToLower(regexp.MustCompile(`\W+`).ReplaceAllString(t.Name(), "_"))
	name = name[:min(len(name), 40)]
	p := &pair{}
	for _, side := range []struct {
		pool **pgxpool.Pool
		dsn  *string
		db   string
	}{{&p.src, &p.srcDSN, name + "_src"}, {&p.dst, &p.dstDSN, name + "_dst"}} {
		dsn, err := pg.CreateDB(ctx, side.db)
		if err != nil {
			t.Fatal(err)
		}
		*side.dsn = dsn
		*side.pool = connect(t, dsn, nil)
		exec(t, *side.pool, ddl)
	}
	tables, err := postgres.Tables(ctx, p.src, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.tables = postgres.Roots(tables)
	if err := Open(ctx, p.dst); err != nil {
		t.Fatal(err)
	}
	return p
}

// options compares every table in chunks of 100, with the target counted as caught up with
// whatever the source has committed: for data that only the test changes.
func (p *pair) options() Options {
	return Options{Migration: "m", Source: p.src, Target: p.dst, Tables: p.tables, ChunkRows: 100, Applied: p.sourceNow}
}

func (p *pair) sourceNow(ctx context.Context) (postgres.LSN, error) {
	return postgres.CurrentLSN(ctx, p.src)
}

// chunks is how many chunks of 100 the tables make: n/100 full ones, then the rest (maybe empty).
func (p *pair) chunks(t *testing.T) int64 {
	t.Helper()
	var total int64
	for _, tb := range p.tables {
		var n int64
		if err := p.src.QueryRow(t.Context(), "SELECT count(*) FROM "+quote(tb.ID)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n/100 + 1
	}
	return total
}

// connect opens a pool whose sessions have the given settings.
func connect(t *testing.T, dsn string, settings map[string]string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(cfg.ConnConfig.RuntimeParams, settings)
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func quote(id cdc.TableID) string { return fmt.Sprintf("%q.%q", id.Schema, id.Name) }

func exec(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), sql); err != nil {
		t.Fatal(err)
	}
}

func TestEqual(t *testing.T) {
	p := newPair(t, fixture)
	if got, want := len(p.tables), 8; got != want {
		t.Fatalf("tables = %d, want %d", got, want)
	}
	// Sessions that print values differently on each side must not matter.
	p.src = connect(t, p.srcDSN, map[string]string{"TimeZone": "Asia/Kolkata", "DateStyle": "German, DMY",
		"IntervalStyle": "iso_8601", "extra_float_digits": "-2", "bytea_output": "escape"})
	p.dst = connect(t, p.dstDSN, map[string]string{"TimeZone": "America/New_York", "DateStyle": "SQL, MDY",
		"IntervalStyle": "sql_standard", "extra_float_digits": "0"})
	var progress []Result
	o := p.options()
	o.Progress = func(r Result) { progress = append(progress, r) }
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	want := p.chunks(t)
	if got := res.Chunks; got != want {
		t.Errorf("Chunks = %d, want %d", got, want)
	}
	if !res.Clean || res.Mismatched != 0 || len(res.Samples) != 0 || res.Error != "" {
		t.Errorf("result = %+v, want clean", res)
	}
	if res.Tables != 8 || res.TablesDone != 8 || res.FinishedAt.IsZero() {
		t.Errorf("result = %+v, want 8 tables done and a finish time", res)
	}
	if got := int64(len(progress)); got != want {
		t.Errorf("Progress called %d times, want %d", got, want)
	}
	last, ok, err := Last(t.Context(), p.dst, "m")
	if err != nil || !ok {
		t.Fatalf("Last = %v, %v", ok, err)
	}
	if last.Run != res.Run || !last.Clean || last.Chunks != want || last.TablesDone != 8 || !last.FinishedAt.Equal(res.FinishedAt) {
		t.Errorf("Last = %+v, want %+v", last, res)
	}
}

func TestMismatches(t *testing.T) {
	p := newPair(t, fixture)
	exec(t, p.dst, `
UPDATE ints SET v = '' WHERE id = 7;                     -- NULL on the source; chunk 1
UPDATE ints SET v = 'changed' WHERE id = 150;            -- chunk 2
DELETE FROM ints WHERE id = 160;                         -- chunk 2 again
UPDATE ints SET j = j || '{"x": 1}' WHERE id = 301;      -- chunk 4
DELETE FROM ints WHERE id = 420;                         -- chunk 5
INSERT INTO pairs (a, b) VALUES (999, 'zz');             -- the last chunk
UPDATE events SET payload = 'x' WHERE id = 10;           -- a partition
UPDATE "Mixed Case" SET "Value" = -1 WHERE "Id" <= 8;    -- more rows than samples`)
	res, err := Run(t.Context(), p.options())
	if err != nil {
		t.Fatal(err)
	}
	if res.Clean {
		t.Error("Clean = true, want false")
	}
	if got, want := res.Mismatched, int64(4+1+1+1); got != want {
		t.Errorf("Mismatched = %d, want %d", got, want)
	}
	if got, want := res.Chunks, p.chunks(t); got != want {
		t.Errorf("Chunks = %d, want %d", got, want)
	}
	want := []Mismatch{
		{"public.Mixed Case", "(1)", KindDifferent}, {"public.Mixed Case", "(2)", KindDifferent},
		{"public.Mixed Case", "(3)", KindDifferent}, {"public.Mixed Case", "(4)", KindDifferent},
		{"public.Mixed Case", "(5)", KindDifferent},
		{"public.events", "(10,2024-06-21)", KindDifferent},
		{"public.ints", "(150)", KindDifferent}, {"public.ints", "(160)", KindMissing},
		{"public.ints", "(301)", KindDifferent}, {"public.ints", "(420)", KindMissing},
		{"public.ints", "(7)", KindDifferent},
		{"public.pairs", "(999,zz)", KindExtra},
	}
	if got := sorted(res.Samples); !slices.Equal(got, want) {
		t.Errorf("Samples =\n%v\nwant\n%v", got, want)
	}
	last, ok, err := Last(t.Context(), p.dst, "m")
	if err != nil || !ok {
		t.Fatalf("Last = %v, %v", ok, err)
	}
	if last.Clean || last.Mismatched != res.Mismatched || !slices.Equal(sorted(last.Samples), want) {
		t.Errorf("Last = %+v, want %+v", last, res)
	}
}

func sorted(ms []Mismatch) []Mismatch {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b Mismatch) int { return strings.Compare(a.Table+" "+a.Key, b.Table+" "+b.Key) })
	return ms
}

func TestResume(t *testing.T) {
	p := newPair(t, fixture)
	total := p.chunks(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	o := p.options()
	calls := 0
	o.Progress = func(Result) {
		if calls++; calls == 2 {
			cancel()
		}
	}
	first, err := Run(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run stopped with %v, want context.Canceled", err)
	}
	stopped, ok, err := Last(t.Context(), p.dst, "m")
	if err != nil || !ok {
		t.Fatalf("Last = %v, %v", ok, err)
	}
	if stopped.Run != first.Run || !stopped.FinishedAt.IsZero() || stopped.Chunks < 2 || stopped.Chunks >= total {
		t.Fatalf("after the stop, Last = %+v; want run %d unfinished with 2 to %d chunks", stopped, first.Run, total-1)
	}

	calls = 0
	o.Progress = func(r Result) {
		if calls++; r.Chunks != stopped.Chunks+int64(calls) {
			t.Errorf("resumed run at %d chunks after %d more, want %d", r.Chunks, calls, stopped.Chunks+int64(calls))
		}
	}
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Run != first.Run {
		t.Errorf("resumed run %d, want %d", res.Run, first.Run)
	}
	if res.Chunks != total || int64(calls) != total-stopped.Chunks || !res.Clean {
		t.Errorf("resumed run: %+v after %d chunks; want clean with %d chunks, %d of them now", res, calls, total, total-stopped.Chunks)
	}
}

// TestTransient plants a difference that the stream "repairs" only after verify has asked for
// the applied position: only the re-check after catching up makes the chunk clean.
func TestTransient(t *testing.T) {
	p := newPair(t, fixture)
	exec(t, p.dst, `UPDATE ints SET v = 'not yet' WHERE id = 5`)
	var asked sync.Once
	var fixed atomic.Bool
	o := p.options()
	o.Applied = func(ctx context.Context) (postgres.LSN, error) {
		asked.Do(func() {
			go func() {
				time.Sleep(100 * time.Millisecond)
				if _, err := p.dst.Exec(t.Context(), `UPDATE ints SET v = 'v5' WHERE id = 5`); err != nil {
					t.Error(err)
				}
				fixed.Store(true)
			}()
		})
		if !fixed.Load() {
			return 0, nil
		}
		return p.sourceNow(ctx)
	}
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !fixed.Load() {
		t.Fatal("verify never waited for the stream")
	}
	if !res.Clean || res.Mismatched != 0 {
		t.Errorf("result = %+v, want clean", res)
	}
}

// TestStreamBehind: a chunk that differs while the stream does not move fails the run; once the
// stream catches up, the run resumes and finishes.
func TestStreamBehind(t *testing.T) {
	p := newPair(t, fixture)
	exec(t, p.dst, `DELETE FROM pairs WHERE a = 20`)
	o := p.options()
	o.Applied = func(context.Context) (postgres.LSN, error) { return 0, nil }
	o.CatchUpTimeout = 200 * time.Millisecond
	first, err := Run(t.Context(), o)
	if !errors.Is(err, ErrStreamBehind) {
		t.Fatalf("Run = %v, want ErrStreamBehind", err)
	}
	if !strings.Contains(err.Error(), "public.pairs chunk 1") || first.Error == "" {
		t.Errorf("error %q (result %q) does not name the table and chunk", err, first.Error)
	}
	last, ok, err := Last(t.Context(), p.dst, "m")
	if err != nil || !ok || !strings.Contains(last.Error, "not catching up") || !last.FinishedAt.IsZero() {
		t.Fatalf("Last = %+v, %v, %v; want the unfinished run with the error", last, ok, err)
	}

	exec(t, p.dst, `INSERT INTO pairs SELECT 20, 'k' || (g % 3), g * 1.5, timestamptz '2024-01-01 00:00+00' + g * interval '1 hour 7 minutes',
	       g * interval '1 day 3 hours', decode(md5(g::text), 'hex'), g / 7.0::float8
	  FROM generate_series(60, 62) g`)
	res, err := Run(t.Context(), p.options())
	if err != nil {
		t.Fatal(err)
	}
	if res.Run != first.Run || !res.Clean || res.Error != "" {
		t.Errorf("after catching up: %+v, want run %d clean", res, first.Run)
	}
}

// TestLiveWrites verifies while a writer changes the source and a lagging "stream" replays each
// batch on the target: verify must wait for it and find no difference.
func TestLiveWrites(t *testing.T) {
	p := newPair(t, `CREATE TABLE hot (id int PRIMARY KEY, v int, pad text);
	  INSERT INTO hot SELECT g, 0, repeat('x', g % 50) FROM generate_series(1, 300) g;`)
	start, err := p.sourceNow(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var applied atomic.Uint64
	applied.Store(uint64(start))
	ctx, stop := context.WithCancel(t.Context())
	var ops atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		type op struct {
			sql string
			id  int
		}
		stmts := []string{
			`UPDATE hot SET v = v + 1 WHERE id = $1`,
			`DELETE FROM hot WHERE id = $1`,
			`INSERT INTO hot VALUES ($1, 0, 'new') ON CONFLICT (id) DO UPDATE SET v = hot.v + 100`,
		}
		for ctx.Err() == nil {
			batch := make([]op, 10)
			for i := range batch {
				batch[i] = op{stmts[rand.IntN(len(stmts))], 1 + rand.IntN(350)}
				if _, err := p.src.Exec(ctx, batch[i].sql, batch[i].id); err != nil {
					return
				}
				// Counted one by one: a run can be shorter than a batch.
				ops.Add(1)
			}
			lsn, err := p.sourceNow(ctx)
			if err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
			for _, o := range batch {
				if _, err := p.dst.Exec(ctx, o.sql, o.id); err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
				ops.Add(1)
			}
			applied.Store(uint64(lsn))
		}
	}()
	defer func() { stop(); <-done }()

	o := p.options()
	o.ChunkRows = 50
	o.Applied = func(context.Context) (postgres.LSN, error) { return postgres.LSN(applied.Load()), nil }
	for i := range 3 {
		before := ops.Load()
		res, err := Run(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Clean || res.Mismatched != 0 {
			t.Errorf("run %d under writes: %+v, want clean", i, res)
		}
		if ops.Load() == before {
			t.Errorf("run %d: no writes happened while it ran", i)
		}
	}
}

func TestInvalidate(t *testing.T) {
	p := newPair(t, fixture)
	ctx := t.Context()
	if _, ok, err := Last(ctx, p.dst, "m"); ok || err != nil {
		t.Fatalf("Last before any run = %v, %v; want none", ok, err)
	}
	first, err := Run(ctx, p.options())
	if err != nil || !first.Clean {
		t.Fatalf("Run = %+v, %v", first, err)
	}
	if err := Invalidate(ctx, p.dst, "m", "rolled back"); err != nil {
		t.Fatal(err)
	}
	last, ok, err := Last(ctx, p.dst, "m")
	if err != nil || !ok {
		t.Fatalf("Last = %v, %v", ok, err)
	}
	if last.Run != first.Run || last.Clean || last.Error != "invalidated: rolled back" {
		t.Errorf("Last after Invalidate = %+v", last)
	}
	if err := Invalidate(ctx, p.dst, "other", "x"); err != nil {
		t.Fatal(err)
	}

	// An unfinished run is invalidated too: the next Run starts afresh.
	rctx, cancel := context.WithCancel(ctx)
	o := p.options()
	o.Progress = func(Result) { cancel() }
	stopped, err := Run(rctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if err := Invalidate(ctx, p.dst, "m", "rolled back again"); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, p.options())
	if err != nil {
		t.Fatal(err)
	}
	if res.Run == stopped.Run || res.Run == first.Run || !res.Clean || res.Chunks != p.chunks(t) {
		t.Errorf("Run after invalidating run %d = %+v, want a new full run", stopped.Run, res)
	}
}

func TestLastWithoutTables(t *testing.T) {
	pg := testenv.RequirePostgres(t)
	dsn, err := pg.CreateDB(t.Context(), "verify_bare")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, ok, err := Last(t.Context(), pool, "m"); ok || err != nil {
		t.Errorf("Last = %v, %v; want none", ok, err)
	}
	if err := Invalidate(t.Context(), pool, "m", "x"); err != nil {
		t.Errorf("Invalidate = %v", err)
	}
}

func TestWhere(t *testing.T) {
	table := &schema.Table{ID: cdc.TableID{Schema: "s", Name: "T"}, Key: []string{"a", "B"},
		Columns: []schema.Column{{Name: "a", Type: "integer"}, {Name: "x", Type: "text"}, {Name: "B", Type: "numeric(20,4)"}}}
	q, err := newQueries(table, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		lo, hi []string
		want   string
		args   int
	}{
		{"all", nil, nil, `true`, 0},
		{"first", nil, []string{"1", "2"}, `(t."a", t."B") <= ($1::text::integer, $2::text::numeric(20,4))`, 2},
		{"last", []string{"1", "2"}, nil, `(t."a", t."B") > ($1::text::integer, $2::text::numeric(20,4))`, 2},
		{"middle", []string{"1", "2"}, []string{"3", "4"},
			`(t."a", t."B") > ($1::text::integer, $2::text::numeric(20,4)) AND (t."a", t."B") <= ($3::text::integer, $4::text::numeric(20,4))`, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, args := q.where(tt.lo, tt.hi)
			if got != tt.want || len(args) != tt.args {
				t.Errorf("where = %s with %d args, want %s with %d", got, len(args), tt.want, tt.args)
			}
		})
	}
	if got, want := q.from, `"s"."T" t`; got != want {
		t.Errorf("from = %s, want %s", got, want)
	}
	if _, err := newQueries(&schema.Table{ID: cdc.TableID{Schema: "s", Name: "nokey"}}, 10); err == nil {
		t.Error("newQueries accepted a table without a key")
	}
}

func TestFormatKey(t *testing.T) {
	for _, tt := range []struct {
		key  []string
		want string
	}{
		{[]string{"42"}, "(42)"},
		{[]string{"1", "abc"}, "(1,abc)"},
	} {
		if got := formatKey(tt.key); got != tt.want {
			t.Errorf("formatKey(%q) = %s, want %s", tt.key, got, tt.want)
		}
	}
}
