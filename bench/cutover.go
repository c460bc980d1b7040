package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/cutover"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/server"
)

// Goals of the cutover part; reported, never enforced.
const (
	cutoverGoal    = time.Second // p99 of the write pause of a cutover
	cutoverRate    = 500         // transactions per second the writers aim at, in total
	cutoverWriters = 4           // goroutines sharing the rate, each with its own connection
	// cutoverDwell is how long each cycle writes on the target before it rolls back.
	cutoverDwell = 2 * time.Second
	// cutoverWarmup is how long the load runs again after a paused verify before the cutover.
	cutoverWarmup = 2 * time.Second
)

// ledgerTable records, for every transaction of the load, the id the database handed out and
// the delta it added to an account: each acknowledged id must be on both sides at the end.
const ledgerTable = `CREATE TABLE ledger (
    id    bigserial PRIMARY KEY,
    side  text NOT NULL,
    delta int NOT NULL
)`

// cutoverResults are the figures of the cutover part: the write pause of each cutover and
// rollback, under a steady TPC-B load that follows the routing hook, and whether any write the
// database acknowledged is missing from either side at the end.
type cutoverResults struct {
	scale     int
	cycles    int // cycles asked for
	cutovers  []switchRun
	rollbacks []switchRun
	err       error  // the part stopped before it finished its cycles or its checks
	loadEnd   string // 1, 5 and 15-minute load averages when the part ended

	verifiedUnderLoad int    // cycles whose verify came out clean under the load
	verifyMsg         string // why the first verify under load did not

	// The load.
	elapsed   time.Duration // the writers' time from start to stop, less their pauses
	acked     int           // transactions the database acknowledged
	refused   int64         // attempts refused by a fence (or its terminated session), retried
	unknown   int           // commits whose answer was lost: not acknowledged, maybe done
	unknownIn int           // of those, the ones whose ledger row exists: they were committed
	other     int64         // attempts that failed for another reason, retried
	otherMsg  string        // the first of those

	// The checks, once the stream has caught up after the last cycle.
	checked              bool
	lostSource, lostDest int   // acknowledged ledger rows missing (or altered) on each side
	sumSource, sumDest   int64 // sum(pgbench_accounts.abalance)
	sumWant              int64 // the sum of the deltas of the committed transactions
}

// switchRun is one cutover or rollback.
type switchRun struct {
	start, end time.Time     // the command's run
	migrated   time.Duration // migrated's write_unavailable_seconds: fence to new side writable
	client     time.Duration // the longest gap between acknowledged writes around the switch
	steps      map[string]float64
	err        error // refused, aborted or failed
}

// cutover runs cutover-and-rollback cycles on a pgbench database under a steady load and checks
// that no acknowledged write was lost. Failures are recorded in the results; only an interrupt
// is returned.
func (b *bench) cutover(ctx context.Context) (*cutoverResults, error) {
	// The apply part's scale (10, 1 with -quick). The pause grows with it: the cutover's final
	// check counts every row while writes are fenced.
	r := &cutoverResults{scale: b.applyScale, cycles: b.cutovers, loadEnd: "?"}
	if err := b.runCutover(ctx, r); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.err = err
		b.logf("cutover: FAILED: %v", err)
	}
	// The pauses are a sum of short steps, each slowed by other work on the machine.
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.loadEnd = strings.Join(strings.Fields(string(l))[:3], " ")
	}
	return r, nil
}

func (b *bench) runCutover(ctx context.Context, r *cutoverResults) error {
	defer b.dropDB(b.srcPG, "cut_src")
	defer b.dropDB(b.dstPG, "cut_dst")
	b.logf("cutover: pgbench -i -s %d", r.scale)
	src, dst, err := b.freshPair(ctx, "cut", r.scale)
	if err != nil {
		return err
	}
	if err := execSQL(ctx, src, ledgerTable); err != nil {
		return err
	}
	m, err := newMigration(b.tmp, b.logDir, "cutover", src, dst, b.jobs)
	if err != nil {
		return err
	}
	route := filepath.Join(b.tmp, "route")
	if err := appendCutoverConfig(m.config, route); err != nil {
		return err
	}
	defer b.cleanupSource(m)
	d, err := startDaemon(b.bin, m)
	if err != nil {
		return err
	}
	defer d.kill()
	if _, err := d.waitStreaming(ctx, time.Hour); err != nil {
		return err
	}

	w, err := newWriter(ctx, src, dst, route, r.scale)
	if err != nil {
		return err
	}
	defer w.close()
	w.start(ctx, cutoverWriters, cutoverRate)
	defer w.stop()
	b.logf("cutover: %d writers at %d txn/s in total; %d cycles", cutoverWriters, cutoverRate, r.cycles)
	cyclesErr := b.cycles(ctx, d, m, w, r)
	w.stop()
	r.elapsed = w.elapsed()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	w.tally(r)
	for i := range r.cutovers {
		r.cutovers[i].client = w.pause(r.cutovers[i].start, r.cutovers[i].end)
	}
	for i := range r.rollbacks {
		r.rollbacks[i].client = w.pause(r.rollbacks[i].start, r.rollbacks[i].end)
	}
	// Check what was acknowledged even when a cycle failed: that is when a loss would show.
	if err := b.checkLedger(ctx, d, m, w, r); err != nil {
		return errors.Join(cyclesErr, fmt.Errorf("check: %w", err))
	}
	return cyclesErr
}

// appendCutoverConfig adds the cutover settings to a migration's config: a routing hook that
// writes the writable side to route (renamed into place, so a reader never sees it empty).
func appendCutoverConfig(config, route string) error {
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, `cutover:
  max-lag: 5s
  timeout: 30s
  verify-max-age: 1h
  hooks:
    exec: ["/bin/sh", "-c", "echo $MIGRATED_WRITABLE > %[1]s.tmp && mv %[1]s.tmp %[1]s"]
`, route)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// cycles runs r.cycles rounds of verify, cutover, writing on the target, rollback. A cutover
// that aborts is recorded and the next round begins; a rollback that fails ends the rounds,
// since the migration is still switched.
func (b *bench) cycles(ctx context.Context, d *daemon, m *migration, w *writer, r *cutoverResults) error {
	for i := 1; i <= r.cycles; i++ {
		if err := b.verifyForCutover(ctx, m, w, r); err != nil {
			return fmt.Errorf("cycle %d: %w", i, err)
		}
		c := b.switchOnce(ctx, m, "cutover")
		r.cutovers = append(r.cutovers, c)
		if c.err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.logf("cutover: cycle %d: %v", i, c.err)
			err := waitUntil(ctx, "phase streaming after the aborted cutover", time.Minute, d.exited, func() bool {
				phase, _, ok := d.status()
				return ok && phase == "streaming"
			})
			if err != nil {
				return fmt.Errorf("cycle %d: %w", i, err)
			}
			continue
		}
		if err := sleep(ctx, cutoverDwell); err != nil {
			return err
		}
		rb := b.switchOnce(ctx, m, "rollback")
		r.rollbacks = append(r.rollbacks, rb)
		if rb.err != nil {
			return fmt.Errorf("cycle %d: %w", i, rb.err)
		}
		b.logf("cutover: cycle %d/%d: write-unavailable cutover %.3f s, rollback %.3f s",
			i, r.cycles, c.migrated.Seconds(), rb.migrated.Seconds())
	}
	return nil
}

// verifyForCutover gets the fresh clean verify each cutover needs (a rollback invalidates the
// last one). It verifies under the load first. Verify reports a row that changes on every
// re-read as different, and TPC-B updates each branch row many times a second, so that verify
// may not come out clean: then the writers are paused for a second verify, and resumed for
// cutoverWarmup, so that the cutover still meets a steady load.
func (b *bench) verifyForCutover(ctx context.Context, m *migration, w *writer, r *cutoverResults) error {
	_, _, err := b.migratedCLI(ctx, m, "verify", "--wait")
	if err == nil {
		r.verifiedUnderLoad++
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if r.verifyMsg == "" {
		r.verifyMsg = verifySample(err)
	}
	b.logf("cutover: verify under load not clean (%s); verifying again with the writers paused", verifySample(err))
	w.hold(true)
	_, _, err = b.migratedCLI(ctx, m, "verify", "--wait")
	w.hold(false)
	if err != nil {
		return fmt.Errorf("verify with the writers paused: %w", err)
	}
	return sleep(ctx, cutoverWarmup)
}

// verifySample picks the first differing row out of a failed `migrated verify --wait`.
func verifySample(err error) string {
	for _, line := range strings.Split(err.Error(), "\n") {
		if f := strings.Fields(line); len(f) == 3 && (f[0] == "different" || f[0] == "missing" || f[0] == "extra") {
			return f[0] + " " + f[1] + " " + f[2]
		}
	}
	return firstLineOf(err.Error())
}

// switchOnce runs `migrated cutover` or `migrated rollback` with -o json and reads migrated's
// write pause from the result.
func (b *bench) switchOnce(ctx context.Context, m *migration, op string) switchRun {
	args := []string{op, "--confirm", m.name, "-o", "json"}
	if op == "cutover" {
		args = append(args, "--force") // whatever cutover.window says: the bench sets none
	}
	s := switchRun{start: time.Now()}
	stdout, _, err := b.migratedCLI(ctx, m, args...)
	s.end = time.Now()
	var plan server.CutoverPlan
	if jerr := json.Unmarshal(stdout, &plan); jerr == nil && plan.Result != nil {
		res := plan.Result
		s.migrated = time.Duration(res.WriteUnavailableSeconds * float64(time.Second))
		s.steps = res.StepSeconds
		switch {
		case err == nil && res.Outcome != "done":
			err = fmt.Errorf("%s %s: %s", op, res.Outcome, res.Error)
		case err == nil && res.HookError != "":
			err = fmt.Errorf("%s: routing hook failed: %s", op, res.HookError)
		}
	} else if err == nil {
		err = fmt.Errorf("%s: no result in the output: %.300s", op, stdout)
	}
	s.err = err
	return s
}

// migratedCLI runs one migrated subcommand against m's daemon and returns its output. A
// non-zero exit is an error carrying the end of both outputs.
func (b *bench) migratedCLI(ctx context.Context, m *migration, args ...string) (stdout, stderr []byte, err error) {
	cmd := command(ctx, b.bin, append(args, "--config", m.config)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return out.Bytes(), errOut.Bytes(), fmt.Errorf("migrated %s: %w\n%s", args[0], err,
			tail(strings.TrimSpace(errOut.String()+"\n"+out.String()), 10))
	}
	return out.Bytes(), errOut.Bytes(), nil
}

// checkLedger waits until the side that does not take writes has caught up, then looks for
// every acknowledged ledger row on both sides and compares the account balances with the
// deltas of the committed transactions.
func (b *bench) checkLedger(ctx context.Context, d *daemon, m *migration, w *writer, r *cutoverResults) error {
	phase, _, _ := d.status()
	from, to, stream := m.src, m.dst, "forward"
	if phase == "switched" { // a rollback failed: the target takes writes, the reverse stream follows
		from, to, stream = m.dst, m.src, "reverse"
	}
	var end string
	if err := queryRow(ctx, from, "SELECT pg_current_wal_insert_lsn()::text", nil, &end); err != nil {
		return err
	}
	b.logf("cutover: writers stopped; waiting for the %s stream to reach %s", stream, end)
	dest := &poller{dsn: to}
	defer dest.close()
	err := waitUntil(ctx, "the "+stream+" stream to catch up", 5*time.Minute, d.exited, func() bool {
		return dest.check(ctx, `SELECT position::pg_lsn >= $1::pg_lsn FROM _migrated.progress
			WHERE migration = $2 AND stream = $3`, end, m.name, stream)
	})
	if err != nil {
		return err
	}
	srcRows, err := ledgerRows(ctx, m.src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	dstRows, err := ledgerRows(ctx, m.dst)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	r.lostSource, r.lostDest = w.lost(srcRows), w.lost(dstRows)
	r.unknownIn = w.committedUnknown(srcRows)
	r.sumWant = w.committedSum(srcRows)
	q := "SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts"
	if err := queryRow(ctx, m.src, q, nil, &r.sumSource); err != nil {
		return err
	}
	if err := queryRow(ctx, m.dst, q, nil, &r.sumDest); err != nil {
		return err
	}
	r.checked = true
	b.logf("cutover: %d acknowledged writes; lost on the source %d, on the target %d", r.acked, r.lostSource, r.lostDest)
	return nil
}

// ledgerRows reads the side column of every ledger row, by id.
func ledgerRows(ctx context.Context, dsn string) (map[int64]string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT id, side FROM ledger")
	if err != nil {
		return nil, err
	}
	out := map[int64]string{}
	var id int64
	var side string
	_, err = pgx.ForEachRow(rows, []any{&id, &side}, func() error { out[id] = side; return nil })
	return out, err
}

// writer is the application under test: TPC-B-like transactions, each also inserting a ledger
// row whose id the database hands out, at a steady rate, on the side the routing hook last
// named. An attempt the fence refuses is not acknowledged and is retried on whatever side the
// hook names by then.
type writer struct {
	src, dst  *pgxpool.Pool
	routeFile string
	branches  int // pgbench scale: branches, 10 tellers and 100000 accounts each

	mu      sync.Mutex
	acks    []time.Time // when each acknowledgement arrived, in order
	txns    []ledgerTxn // every transaction that got a ledger id back
	began   time.Time
	ended   time.Time
	wg      sync.WaitGroup
	stopped atomic.Bool // no new attempt starts; one in flight finishes
	held    atomic.Bool // the writers wait (a verify runs)
	heldAt  time.Time   // when hold began; touched only by the caller of hold
	heldFor time.Duration
	refused atomic.Int64
	other   atomic.Int64
	errMsg  atomic.Value // string: the first unexpected error
}

// ledgerTxn is a transaction that inserted a ledger row. acked is false when the commit's
// answer was lost: then the row's presence says whether it committed.
type ledgerTxn struct {
	id    int64
	side  string
	delta int
	acked bool
}

func newWriter(ctx context.Context, src, dst, routeFile string, scale int) (*writer, error) {
	w := &writer{routeFile: routeFile, branches: scale}
	var err error
	if w.src, err = pgxpool.New(ctx, src); err != nil {
		return nil, err
	}
	if w.dst, err = pgxpool.New(ctx, dst); err != nil {
		w.src.Close()
		return nil, err
	}
	return w, nil
}

func (w *writer) close() {
	w.src.Close()
	w.dst.Close()
}

// start runs n writers that together aim at rate transactions per second until stop, or until
// ctx ends.
func (w *writer) start(ctx context.Context, n, rate int) {
	w.began = time.Now()
	interval := time.Duration(n) * time.Second / time.Duration(rate)
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			// Stagger the writers so that their transactions interleave evenly.
			w.loop(ctx, interval, time.Now().Add(interval*time.Duration(i)/time.Duration(n)))
		}()
	}
}

// stop lets each writer finish the attempt it is in and waits for them. Stopping by cancelling
// ctx instead would cut commits off and leave their outcome unknown. It is idempotent.
func (w *writer) stop() {
	if w.stopped.Swap(true) {
		return
	}
	w.wg.Wait()
	w.ended = time.Now()
}

// hold pauses the writers between transactions (on) or resumes them (off).
func (w *writer) hold(on bool) {
	if w.held.Swap(on) == on {
		return
	}
	if on {
		w.heldAt = time.Now()
	} else {
		w.heldFor += time.Since(w.heldAt)
	}
}

// elapsed is the time the writers were writing: from start to stop, less the holds.
func (w *writer) elapsed() time.Duration { return w.ended.Sub(w.began) - w.heldFor }

// loop runs one transaction per interval. A writer that fell behind, after a pause, does not
// burst to make up: the load stays near the rate, as a pgbench -R run with a latency limit.
func (w *writer) loop(ctx context.Context, interval time.Duration, next time.Time) {
	for !w.stopped.Load() {
		if err := sleep(ctx, time.Until(next)); err != nil {
			return
		}
		next = next.Add(interval)
		if time.Since(next) > 10*interval {
			next = time.Now()
		}
		if w.held.Load() {
			continue
		}
		if !w.transact(ctx) {
			return
		}
	}
}

// transact runs one transaction until the database acknowledges it; false when the writers
// stop (or ctx ends) first.
func (w *writer) transact(ctx context.Context) bool {
	delta := rand.IntN(10001) - 5000
	aid := 1 + rand.IntN(100000*w.branches)
	tid := 1 + rand.IntN(10*w.branches)
	bid := 1 + rand.IntN(w.branches)
	for !w.stopped.Load() && ctx.Err() == nil {
		pool, side := w.route()
		var id int64
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var b pgx.Batch
			oneRow := func(ct pgconn.CommandTag) error {
				if ct.RowsAffected() != 1 {
					return fmt.Errorf("%s changed %d rows, want 1", ct, ct.RowsAffected())
				}
				return nil
			}
			b.Queue("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", delta, aid).Exec(oneRow)
			b.Queue("SELECT abalance FROM pgbench_accounts WHERE aid = $1", aid)
			b.Queue("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2", delta, tid).Exec(oneRow)
			b.Queue("UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2", delta, bid).Exec(oneRow)
			b.Queue("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
				tid, bid, aid, delta)
			b.Queue("INSERT INTO ledger (side, delta) VALUES ($1, $2) RETURNING id", side, delta).
				QueryRow(func(row pgx.Row) error { return row.Scan(&id) })
			return tx.SendBatch(ctx, &b).Close()
		})
		if err == nil {
			w.mu.Lock()
			w.acks = append(w.acks, time.Now())
			w.txns = append(w.txns, ledgerTxn{id: id, side: side, delta: delta, acked: true})
			w.mu.Unlock()
			return true
		}
		if id != 0 {
			// The ledger insert ran, so only the commit's answer is missing: it may have committed.
			w.mu.Lock()
			w.txns = append(w.txns, ledgerTxn{id: id, side: side, delta: delta})
			w.mu.Unlock()
		}
		if ctx.Err() != nil {
			return false
		}
		if postgres.RefusedByFence(err) {
			w.refused.Add(1)
			sleep(ctx, 5*time.Millisecond)
			continue
		}
		w.other.Add(1)
		w.errMsg.CompareAndSwap(nil, firstLineOf(err.Error()))
		sleep(ctx, 50*time.Millisecond)
	}
	return false
}

// route returns the pool of the side the routing hook last named, and the side's name; the
// source until the first cutover.
func (w *writer) route() (*pgxpool.Pool, string) {
	b, _ := os.ReadFile(w.routeFile)
	if strings.TrimSpace(string(b)) == "target" {
		return w.dst, "target"
	}
	return w.src, "source"
}

// tally copies the load's counts into r.
func (w *writer) tally(r *cutoverResults) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r.acked = len(w.acks)
	r.unknown = len(w.txns) - len(w.acks)
	r.refused, r.other = w.refused.Load(), w.other.Load()
	if s, ok := w.errMsg.Load().(string); ok {
		r.otherMsg = s
	}
}

// pause is the client's view of a switch run from start to end: the longest gap between
// consecutive acknowledgements, from the last one before start up to the first one after end.
// It is -1 when no write was acknowledged after end.
func (w *writer) pause(start, end time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := sort.Search(len(w.acks), func(i int) bool { return !w.acks[i].Before(start) })
	prev := start
	if i > 0 {
		prev = w.acks[i-1]
	}
	var longest time.Duration
	for ; i < len(w.acks); i++ {
		longest = max(longest, w.acks[i].Sub(prev))
		if w.acks[i].After(end) {
			return longest
		}
		prev = w.acks[i]
	}
	return -1
}

// lost counts the acknowledged transactions whose ledger row is not in rows as written.
func (w *writer) lost(rows map[int64]string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, t := range w.txns {
		if side, ok := rows[t.id]; t.acked && (!ok || side != t.side) {
			n++
		}
	}
	return n
}

// committedUnknown counts the transactions of unknown outcome whose ledger row is in rows.
func (w *writer) committedUnknown(rows map[int64]string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, t := range w.txns {
		if _, ok := rows[t.id]; !t.acked && ok {
			n++
		}
	}
	return n
}

// committedSum is the sum of the deltas of the transactions whose ledger row is in rows: what
// the accounts' balances must add up to, since they start at 0 and each transaction is atomic.
func (w *writer) committedSum(rows map[int64]string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sum int64
	for _, t := range w.txns {
		if _, ok := rows[t.id]; ok {
			sum += int64(t.delta)
		}
	}
	return sum
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// reportCutover renders the cutover part of the summary; "" when the part did not run.
func reportCutover(c *cutoverResults) string {
	if c == nil {
		return ""
	}
	var w strings.Builder
	tps := 0.0
	if c.elapsed > 0 {
		tps = float64(c.acked) / c.elapsed.Seconds()
	}
	fmt.Fprintf(&w, "cutover   %d cycles of cutover, %.0f s on the target, rollback; TPC-B + ledger load of %d txn/s (%d writers, %.0f acknowledged/s), pgbench scale %d\n",
		c.cycles, cutoverDwell.Seconds(), cutoverRate, cutoverWriters, tps, c.scale)
	if n := len(c.cutovers); n > c.verifiedUnderLoad {
		fmt.Fprintf(&w, "  %-20s clean under the load before %d of %d cutovers; the others verified with the writers paused, then %.0f s of load (first difference under load: %s)\n",
			"verify", c.verifiedUnderLoad, n, cutoverWarmup.Seconds(), c.verifyMsg)
	}
	fmt.Fprintf(&w, "  write-unavailable      %7s %7s %7s   (nearest rank; with %d samples p99 is the max)\n", "p50", "p99", "max", len(c.cutovers))
	pauseRow(&w, "cutover, migrated", c.cutovers, func(s switchRun) time.Duration { return s.migrated }, true)
	pauseRow(&w, "cutover, client", c.cutovers, func(s switchRun) time.Duration { return s.client }, true)
	pauseRow(&w, "rollback, migrated", c.rollbacks, func(s switchRun) time.Duration { return s.migrated }, false)
	pauseRow(&w, "rollback, client", c.rollbacks, func(s switchRun) time.Duration { return s.client }, false)
	fmt.Fprintf(&w, "  %-20s cutover %s; rollback %s   (load average %s at the end)\n", "each, migrated",
		pauseList(c.cutovers), pauseList(c.rollbacks), c.loadEnd)
	if steps := medianSteps(cutover.OpCutover, c.cutovers); steps != "" {
		fmt.Fprintf(&w, "  %-20s %s\n", "cutover steps, p50", steps)
	}
	if steps := medianSteps(cutover.OpRollback, c.rollbacks); steps != "" {
		fmt.Fprintf(&w, "  %-20s %s\n", "rollback steps, p50", steps)
	}
	var aborted []error
	for _, s := range c.cutovers {
		if s.err != nil {
			aborted = append(aborted, s.err)
		}
	}
	if len(aborted) > 0 {
		fmt.Fprintf(&w, "  %d of %d cutovers did not complete; first: %s\n", len(aborted), len(c.cutovers), firstLineOf(aborted[0].Error()))
	}
	if c.checked {
		fmt.Fprintf(&w, "  %-20s %d acknowledged, lost %d (source %d, target %d)   (goal: 0)  %s\n", "writes",
			c.acked, max(c.lostSource, c.lostDest), c.lostSource, c.lostDest, verdict(c.lostSource == 0 && c.lostDest == 0))
		fmt.Fprintf(&w, "  %-20s %d refused by a fence and retried; %d commits of unknown outcome, %d of them committed\n", "",
			c.refused, c.unknown, c.unknownIn)
		same := "equal"
		if c.sumSource != c.sumDest || c.sumSource != c.sumWant {
			same = "DIFFERENT"
		}
		fmt.Fprintf(&w, "  %-20s sum(abalance) source %d, target %d, committed deltas %d  %s\n", "balances",
			c.sumSource, c.sumDest, c.sumWant, same)
	}
	if c.other > 0 {
		fmt.Fprintf(&w, "  %-20s %d attempts failed for another reason and were retried; first: %s\n", "", c.other, c.otherMsg)
	}
	if c.err != nil {
		fmt.Fprintf(&w, "  FAILED: %s\n", firstLineOf(c.err.Error()))
	}
	return w.String()
}

// pauseRow writes p50, p99 and max of the completed switches' pauses, judged against the goal
// when goal is set.
func pauseRow(w *strings.Builder, name string, runs []switchRun, pick func(switchRun) time.Duration, goal bool) {
	var d []time.Duration
	missing := 0
	for _, s := range runs {
		if s.err != nil {
			continue
		}
		if v := pick(s); v >= 0 {
			d = append(d, v)
		} else {
			missing++
		}
	}
	if len(d) == 0 {
		fmt.Fprintf(w, "  %-20s n/a\n", name)
		return
	}
	slices.Sort(d)
	p50, p99 := percentile(d, 0.50), percentile(d, 0.99)
	note := ""
	if goal {
		note = fmt.Sprintf("(goal: p99 < %.0f s)  %s", cutoverGoal.Seconds(), verdict(p99 < cutoverGoal))
	}
	if missing > 0 {
		note += fmt.Sprintf("  [%d without a write after the switch]", missing)
	}
	fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-20s %5.3f s %5.3f s %5.3f s   %s", name,
		p50.Seconds(), p99.Seconds(), d[len(d)-1].Seconds(), note), " "))
}

// pauseList lists migrated's pause of each switch in the order they ran, "-" for one that did
// not complete.
func pauseList(runs []switchRun) string {
	var parts []string
	for _, s := range runs {
		if s.err != nil {
			parts = append(parts, "-")
		} else {
			parts = append(parts, fmt.Sprintf("%.2f", s.migrated.Seconds()))
		}
	}
	return strings.Join(parts, " ")
}

// percentile is the nearest-rank percentile q of sorted d.
func percentile(d []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

// medianSteps lists the median time of each step of op's completed switches, in plan order.
func medianSteps(op cutover.Op, runs []switchRun) string {
	var parts []string
	for _, step := range cutover.Plan[op] {
		var d []time.Duration
		for _, s := range runs {
			if sec, ok := s.steps[string(step)]; ok && s.err == nil {
				d = append(d, time.Duration(sec*float64(time.Second)))
			}
		}
		if len(d) > 0 {
			slices.Sort(d)
			parts = append(parts, fmt.Sprintf("%s %.3f", step, percentile(d, 0.5).Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}
