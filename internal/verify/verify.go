// Package verify compares source and target tables online: chunk by chunk in key order, while
// writes continue on the source and the change stream applies them to the target.
//
// Each chunk is compared by row count and a sum of row hashes. A chunk that differs is read
// again with the source's WAL position, after the stream has applied up to it, because lag alone
// makes transient differences. A chunk that still differs is diffed row by row, and a key is
// reported only when the difference holds across reads: live writes must not produce false
// mismatches, and nothing is reported clean that is not. A row that changes faster than the
// stream settles is never seen equal that way; it is compared once more with the source row
// locked FOR SHARE for as long as the stream takes to catch up, which makes the comparison exact.
//
// A run and a cursor per table are kept on the target in _migrated.verify_runs and
// _migrated.verify_tables, so that a run stopped by a restart resumes at the chunk it was on.
package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Mismatch kinds.
const (
	KindMissing   = "missing"   // the row is on the source, not on the target
	KindExtra     = "extra"     // the row is on the target, not on the source
	KindDifferent = "different" // the row differs, or changed too often to compare and could not be locked
)

// ErrStreamBehind means the target's applied position did not reach the source position a chunk
// was read at, within Options.CatchUpTimeout.
var ErrStreamBehind = errors.New("the change stream is not catching up")

const (
	defaultChunkRows      = 10000
	defaultCatchUpTimeout = 30 * time.Second
	// pollInterval is how often Applied is read while waiting for the stream.
	pollInterval = 50 * time.Millisecond
	// resums is how often a differing chunk's count and sum are read again, once the stream
	// has caught up, before it is compared row by row.
	resums = 1
	// attempts bounds the row-level diffs of a chunk.
	attempts = 5
	// maxSamples is how many mismatched keys are kept per table.
	maxSamples = 5
	// workers is how many tables are compared at once.
	workers = 2
)

// Options configures Run.
type Options struct {
	// Migration names the migration the run belongs to.
	Migration string
	// Source and Target are the two databases.
	Source, Target *pgxpool.Pool
	// Tables to compare: partition roots and plain tables (IsRoot()); a root's queries cover its
	// partitions. Each needs a Key.
	Tables []*schema.Table
	// ChunkRows is the number of rows per chunk, by key order. Default 10000.
	ChunkRows int
	// Applied returns the target's durably applied source position now (the forward stream
	// checkpoint).
	Applied func(ctx context.Context) (postgres.LSN, error)
	// CatchUpTimeout is how long a chunk waits for Applied to reach the source position it was
	// read at before the run fails with ErrStreamBehind. Default 30s.
	CatchUpTimeout time.Duration
	// Progress, if set, is called after each chunk with the run's state so far, from one
	// goroutine at a time.
	Progress func(Result)
	// Log may be nil.
	Log *zap.Logger
}

// Result is the state of a verify run.
type Result struct {
	Run        int64     `json:"run"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"` // zero while running
	Tables     int       `json:"tables"`
	TablesDone int       `json:"tables_done"`
	Chunks     int64     `json:"chunks"`
	Mismatched int64     `json:"mismatched"` // chunks with at least one mismatched row
	// Clean is true when the run finished and every chunk matched.
	Clean bool `json:"clean"`
	// Samples holds mismatched keys, at most 5 per table.
	Samples []Mismatch `json:"samples"`
	// Error says why the run stopped, or that it was invalidated.
	Error string `json:"error,omitempty"`
}

// Mismatch is one row that differs.
type Mismatch struct {
	Table string `json:"table"`
	Key   string `json:"key"`  // the key values, e.g. "(42)" or "(1,abc)"
	Kind  string `json:"kind"` // KindMissing, KindExtra or KindDifferent
}

const ddl = `
CREATE SCHEMA IF NOT EXISTS _migrated;
CREATE TABLE IF NOT EXISTS _migrated.verify_runs (
    id          bigserial PRIMARY KEY,
    migration   text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    chunks      bigint NOT NULL DEFAULT 0,
    mismatched  bigint NOT NULL DEFAULT 0,
    clean       boolean NOT NULL DEFAULT false,
    samples     jsonb NOT NULL DEFAULT '[]',
    error       text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS verify_runs_migration ON _migrated.verify_runs (migration, id);
CREATE TABLE IF NOT EXISTS _migrated.verify_tables (
    run          bigint NOT NULL REFERENCES _migrated.verify_runs ON DELETE CASCADE,
    table_schema text NOT NULL,
    table_name   text NOT NULL,
    cursor       text[],
    chunks       bigint NOT NULL DEFAULT 0,
    mismatched   bigint NOT NULL DEFAULT 0,
    samples      jsonb NOT NULL DEFAULT '[]',
    done         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (run, table_schema, table_name)
);`

// Open creates the state tables on the target if they are missing.
func Open(ctx context.Context, target *pgxpool.Pool) error {
	if _, err := target.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("create the verify tables in _migrated on the target: %w", err)
	}
	return nil
}

const lastSQL = `
SELECT r.id, r.started_at, r.finished_at, r.chunks, r.mismatched, r.clean, r.samples::text, r.error,
       count(t.run), count(t.run) FILTER (WHERE t.done)
  FROM _migrated.verify_runs r LEFT JOIN _migrated.verify_tables t ON t.run = r.id
 WHERE r.migration = $1
 GROUP BY r.id ORDER BY r.id DESC LIMIT 1`

// Last returns the newest run of the migration, finished or not, or ok=false if there is none.
func Last(ctx context.Context, target *pgxpool.Pool, migration string) (Result, bool, error) {
	var res Result
	var finished *time.Time
	var samples string
	err := target.QueryRow(ctx, lastSQL, migration).Scan(&res.Run, &res.StartedAt, &finished, &res.Chunks,
		&res.Mismatched, &res.Clean, &samples, &res.Error, &res.Tables, &res.TablesDone)
	if errors.Is(err, pgx.ErrNoRows) || isUndefinedTable(err) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("read the last verify run: %w", err)
	}
	if finished != nil {
		res.FinishedAt = *finished
	}
	if err := json.Unmarshal([]byte(samples), &res.Samples); err != nil {
		return Result{}, false, fmt.Errorf("read the samples of verify run %d: %w", res.Run, err)
	}
	return res, true, nil
}

// Invalidate marks every run of the migration as no longer valid: not clean, with the error
// "invalidated: <reason>". It is for a rollback, when data moved in both directions. An
// unfinished run is closed too, since its finished chunks are as stale as a finished run's; the
// next Run starts afresh.
func Invalidate(ctx context.Context, target *pgxpool.Pool, migration, reason string) error {
	_, err := target.Exec(ctx, `UPDATE _migrated.verify_runs
	   SET finished_at = coalesce(finished_at, now()), clean = false, error = 'invalidated: ' || $2
	 WHERE migration = $1`, migration, reason)
	if err != nil && !isUndefinedTable(err) {
		return fmt.Errorf("invalidate the verify runs of %s: %w", migration, err)
	}
	return nil
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

// Run starts a new verify run, or resumes the newest unfinished run of the migration, and
// compares the tables chunk by chunk. It returns the final result, which is also stored. Stopped
// by ctx, it returns the state so far and the run can be resumed. One Run per migration at a time.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Source == nil || o.Target == nil || o.Applied == nil {
		return Result{}, errors.New("verify: Options.Source, Target and Applied are required")
	}
	if o.ChunkRows <= 0 {
		o.ChunkRows = defaultChunkRows
	}
	if o.CatchUpTimeout <= 0 {
		o.CatchUpTimeout = defaultCatchUpTimeout
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	r := &runner{o: o, log: o.Log.Named("verify").With(zap.String("migration", o.Migration))}
	for _, t := range o.Tables {
		q, err := newQueries(t, o.ChunkRows)
		if err != nil {
			return Result{}, err
		}
		r.tables = append(r.tables, &tableRun{t: t, q: q, name: t.ID.String()})
	}
	if err := r.begin(ctx); err != nil {
		return Result{}, err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, tr := range r.tables {
		if tr.done || gctx.Err() != nil {
			continue
		}
		g.Go(func() error { return r.verifyTable(gctx, tr) })
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return r.result(), fmt.Errorf("verify run %d stopped; run verify again to resume it: %w", r.res.Run, ctx.Err())
	}
	if err != nil {
		return r.fail(ctx, err)
	}
	return r.finish(ctx)
}

// runner is one Run.
type runner struct {
	o      Options
	log    *zap.Logger
	tables []*tableRun

	mu  sync.Mutex
	res Result // Chunks, Mismatched and Samples are kept current under mu
}

// tableRun is a table's part of a run. Its worker alone writes the fields below, under
// runner.mu.
type tableRun struct {
	t    *schema.Table
	q    *queries
	name string

	cursor     []string // the last key of the last finished chunk; nil before the first
	chunks     int64
	mismatched int64
	samples    []Mismatch
	done       bool
}

// begin resumes the newest unfinished run, or starts a new one. A run over another table list is
// abandoned rather than resumed.
func (r *runner) begin(ctx context.Context) error {
	tx, err := r.o.Target.Begin(ctx)
	if err != nil {
		return fmt.Errorf("start verify run: %w", err)
	}
	defer tx.Rollback(ctx)
	var samples string
	err = tx.QueryRow(ctx, `SELECT id, started_at, chunks, mismatched, samples::text FROM _migrated.verify_runs
	 WHERE migration = $1 AND finished_at IS NULL ORDER BY id DESC LIMIT 1 FOR UPDATE`, r.o.Migration).
		Scan(&r.res.Run, &r.res.StartedAt, &r.res.Chunks, &r.res.Mismatched, &samples)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case isUndefinedTable(err):
		return fmt.Errorf("start verify run: the verify tables are missing on the target; call verify.Open first: %w", err)
	case err != nil:
		return fmt.Errorf("read the unfinished verify run: %w", err)
	default:
		resumed, err := r.load(ctx, tx)
		if err != nil {
			return err
		}
		if resumed {
			if err := json.Unmarshal([]byte(samples), &r.res.Samples); err != nil {
				return fmt.Errorf("read the samples of verify run %d: %w", r.res.Run, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE _migrated.verify_runs SET error = '' WHERE id = $1`, r.res.Run); err != nil {
				return fmt.Errorf("resume verify run %d: %w", r.res.Run, err)
			}
			r.log.Info("resuming verify run", zap.Int64("run", r.res.Run), zap.Int64("chunks_done", r.res.Chunks))
			return commit(ctx, tx)
		}
		if _, err := tx.Exec(ctx, `UPDATE _migrated.verify_runs SET finished_at = now(), clean = false,
		   error = 'abandoned: the table list changed, so a new run started' WHERE id = $1`, r.res.Run); err != nil {
			return fmt.Errorf("abandon verify run %d: %w", r.res.Run, err)
		}
	}

	r.res = Result{}
	if err := tx.QueryRow(ctx, `INSERT INTO _migrated.verify_runs (migration) VALUES ($1) RETURNING id, started_at`,
		r.o.Migration).Scan(&r.res.Run, &r.res.StartedAt); err != nil {
		return fmt.Errorf("start verify run: %w", err)
	}
	var schemas, names []string
	for _, tr := range r.tables {
		schemas, names = append(schemas, tr.t.ID.Schema), append(names, tr.t.ID.Name)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO _migrated.verify_tables (run, table_schema, table_name)
	   SELECT $1, s, n FROM unnest($2::text[], $3::text[]) AS u(s, n)`, r.res.Run, schemas, names); err != nil {
		return fmt.Errorf("start verify run: %w", err)
	}
	r.log.Info("starting verify run", zap.Int64("run", r.res.Run), zap.Int("tables", len(r.tables)))
	return commit(ctx, tx)
}

// load reads the tables of run r.res.Run into r.tables, and reports whether they are the same
// tables.
func (r *runner) load(ctx context.Context, tx pgx.Tx) (bool, error) {
	rows, err := tx.Query(ctx, `SELECT table_schema, table_name, cursor, chunks, mismatched, samples::text, done
	  FROM _migrated.verify_tables WHERE run = $1`, r.res.Run)
	if err != nil {
		return false, fmt.Errorf("read verify run %d: %w", r.res.Run, err)
	}
	byID := map[cdc.TableID]*tableRun{}
	for _, tr := range r.tables {
		byID[tr.t.ID] = tr
	}
	n := 0
	same := true
	for rows.Next() {
		var id cdc.TableID
		var s tableRun
		var samples string
		if err := rows.Scan(&id.Schema, &id.Name, &s.cursor, &s.chunks, &s.mismatched, &samples, &s.done); err != nil {
			rows.Close()
			return false, fmt.Errorf("read verify run %d: %w", r.res.Run, err)
		}
		n++
		tr := byID[id]
		if tr == nil {
			same = false
			continue
		}
		if err := json.Unmarshal([]byte(samples), &s.samples); err != nil {
			rows.Close()
			return false, fmt.Errorf("read the samples of %s in verify run %d: %w", id, r.res.Run, err)
		}
		if s.cursor != nil && len(s.cursor) != len(tr.t.Key) {
			same = false // the key changed: the cursor means nothing now
		}
		tr.cursor, tr.chunks, tr.mismatched, tr.samples, tr.done = s.cursor, s.chunks, s.mismatched, s.samples, s.done
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read verify run %d: %w", r.res.Run, err)
	}
	if !same || n != len(r.tables) {
		for _, tr := range r.tables {
			tr.cursor, tr.chunks, tr.mismatched, tr.samples, tr.done = nil, 0, 0, nil, false
		}
		return false, nil
	}
	return true, nil
}

// verifyTable compares a table from its cursor to its end.
func (r *runner) verifyTable(ctx context.Context, tr *tableRun) error {
	log := r.log.With(zap.String("table", tr.name))
	log.Debug("verifying table", zap.Int64("chunks_done", tr.chunks))
	for !tr.done {
		lo := tr.cursor
		hi, err := r.upper(ctx, tr.q, lo)
		if err == nil {
			var bad []Mismatch
			if bad, err = r.chunk(ctx, tr, lo, hi, log); err == nil {
				err = r.chunkDone(ctx, tr, lo, hi, bad, log)
			}
		}
		if err != nil {
			return fmt.Errorf("verify %s chunk %d (keys after %s): %w", tr.name, tr.chunks+1, startKey(lo), err)
		}
	}
	log.Info("verified table", zap.Int64("chunks", tr.chunks), zap.Int64("mismatched", tr.mismatched))
	return nil
}

// chunkDoneSQL records a finished chunk of a table and adds it to the run, in one statement.
const chunkDoneSQL = `
WITH t AS (
    UPDATE _migrated.verify_tables
       SET cursor = $4, chunks = chunks + 1, mismatched = mismatched + $5, samples = samples || $6::jsonb, done = $7
     WHERE run = $1 AND table_schema = $2 AND table_name = $3)
UPDATE _migrated.verify_runs SET chunks = chunks + 1, mismatched = mismatched + $5, samples = samples || $6::jsonb
 WHERE id = $1`

// chunkDone stores the chunk (lo, hi] as finished, then reports progress.
func (r *runner) chunkDone(ctx context.Context, tr *tableRun, lo, hi []string, bad []Mismatch, log *zap.Logger) error {
	cursor, done := hi, hi == nil
	if done {
		cursor = lo
	}
	var mismatched int64
	if len(bad) > 0 {
		mismatched = 1
		log.Warn("chunk differs", zap.Int64("chunk", tr.chunks+1), zap.String("after", startKey(lo)), zap.Any("rows", bad))
	}
	samples := bad[:min(len(bad), max(maxSamples-len(tr.samples), 0))]
	js, err := json.Marshal(append([]Mismatch{}, samples...))
	if err != nil {
		return err
	}
	if _, err := r.o.Target.Exec(ctx, chunkDoneSQL, r.res.Run, tr.t.ID.Schema, tr.t.ID.Name,
		cursor, mismatched, string(js), done); err != nil {
		return fmt.Errorf("record the chunk on the target: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tr.cursor, tr.done = cursor, done
	tr.chunks++
	tr.mismatched += mismatched
	tr.samples = append(tr.samples, samples...)
	r.res.Chunks++
	r.res.Mismatched += mismatched
	r.res.Samples = append(r.res.Samples, samples...)
	if r.o.Progress != nil {
		r.o.Progress(r.resultLocked())
	}
	return nil
}

// fail records err on the unfinished run, which the next Run resumes.
func (r *runner) fail(ctx context.Context, err error) (Result, error) {
	err = fmt.Errorf("%w; run verify again to resume at this chunk", err)
	if _, rerr := r.o.Target.Exec(ctx, `UPDATE _migrated.verify_runs SET error = $2 WHERE id = $1`, r.res.Run, err.Error()); rerr != nil {
		err = fmt.Errorf("%w (recording the error on the target failed too: %v)", err, rerr)
	}
	res := r.result()
	res.Error = err.Error()
	return res, err
}

// finish stores the run as finished.
func (r *runner) finish(ctx context.Context) (Result, error) {
	res := r.result()
	// The totals come back from the row, which is what Last will report.
	if err := r.o.Target.QueryRow(ctx, `UPDATE _migrated.verify_runs SET finished_at = now(), clean = mismatched = 0, error = ''
	 WHERE id = $1 RETURNING finished_at, clean, chunks, mismatched`, res.Run).
		Scan(&res.FinishedAt, &res.Clean, &res.Chunks, &res.Mismatched); err != nil {
		return res, fmt.Errorf("finish verify run %d: %w", res.Run, err)
	}
	r.log.Info("verify run finished", zap.Int64("run", res.Run), zap.Bool("clean", res.Clean),
		zap.Int64("chunks", res.Chunks), zap.Int64("mismatched", res.Mismatched))
	return res, nil
}

func (r *runner) result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resultLocked()
}

func (r *runner) resultLocked() Result {
	res := r.res
	res.Samples = append([]Mismatch(nil), r.res.Samples...)
	res.Tables = len(r.tables)
	for _, tr := range r.tables {
		if tr.done {
			res.TablesDone++
		}
	}
	return res
}

func commit(ctx context.Context, tx pgx.Tx) error {
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit verify run: %w", err)
	}
	return nil
}
