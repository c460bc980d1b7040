// Package demo runs a complete, self-checking migration on one machine: it starts two throwaway
// PostgreSQL clusters or MariaDB servers, generates a shop database in the source and keeps a
// writer busy on it. With the daemon in-process it copies and streams, verifies, cuts over with
// the writer following the routing hook to the target, writes there for a while with the reverse
// stream running, and rolls back. Then it checks both sides independently of the daemon's code:
// every table row for row, and every write the writer saw acknowledged, on the target and on the
// source. It is what `migrated demo` and `make demo` run.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/migrated/migrated/internal/server"
)

// Options configures Run. The zero value runs the default demo quietly.
type Options struct {
	// Engine is the engine of both sides: EnginePostgres (two PostgreSQL clusters) or
	// EngineMySQL (two MariaDB servers). Default EnginePostgres.
	Engine string
	// SizeMB is the approximate size of the generated dataset on disk. Default 300.
	SizeMB int
	// Stream is how long the writer keeps writing once the daemon is streaming, with lag shown
	// live, before the verify starts. Default 10s; negative means not at all.
	Stream time.Duration
	// DualWrite is how long the writer writes to the target after the cutover, with the reverse
	// stream carrying its writes back to the source, before the rollback. Default 5s; negative
	// means the rollback follows at once.
	DualWrite time.Duration
	// Keep leaves the servers and the daemon running after the report, with how to connect to
	// them printed, until ctx ends. The servers cannot outlive the process: they die with it.
	Keep bool
	// Out receives the progress display and the report. Default io.Discard.
	Out io.Writer
	// TTY redraws the status in place every 500ms, with colours; otherwise a one-line summary is
	// printed every 2s.
	TTY bool
	// Width is the terminal width for the status view. Default 100.
	Width int
	// WriterPause is the pause between two transactions on each writer connection. Default 2ms.
	WriterPause time.Duration
	// LogLevel is the daemon log's level: debug, info, warn or error. Default info.
	LogLevel string
	// Version is reported in the daemon's build info metric.
	Version string
}

func (o Options) withDefaults() Options {
	if o.Engine == "" {
		o.Engine = EnginePostgres
	}
	if o.SizeMB == 0 {
		o.SizeMB = 300
	}
	if o.Stream == 0 {
		o.Stream = 10 * time.Second
	}
	o.Stream = max(o.Stream, 0)
	if o.DualWrite == 0 {
		o.DualWrite = 5 * time.Second
	}
	o.DualWrite = max(o.DualWrite, 0)
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Width <= 0 {
		o.Width = 100
	}
	if o.WriterPause == 0 {
		o.WriterPause = 2 * time.Millisecond
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return o
}

// Report is the outcome of a demo run.
type Report struct {
	// Engine is the engine of both sides, as in Options.
	Engine string
	// Tables has one entry per table, a partitioned table with its partitions summed.
	Tables []TableResult
	// GeneratedBytes is the size of the generated dataset on the source before the migration.
	GeneratedBytes int64
	// SetupTime covers starting the servers and generating the data; LoadTime is the latter.
	SetupTime, LoadTime time.Duration
	// SnapshotTime runs from the daemon's start to the streaming phase: preflight, schema, the
	// copy, and the indexes and keys built after it.
	SnapshotTime time.Duration
	// StreamTime is how long the writer ran once the daemon streamed, through the verify, the
	// cutover, the dual-write phase and the rollback; CatchUpTime is how long the target then
	// took to pass the source's last position.
	StreamTime, CatchUpTime time.Duration
	// Verify is migrated's own online verify, run while the writer wrote.
	Verify VerifyResult
	// Cutover moved the writes to the target, Rollback back to the source. Both are zero when
	// an earlier stage failed.
	Cutover, Rollback SwitchResult
	// DualWriteTime is how long the writer wrote to the target between the two.
	DualWriteTime time.Duration
	// ReverseChanges is what the reverse stream applied to the source in that time, and
	// ReverseMaxLagSeconds its highest lag.
	ReverseChanges       int64
	ReverseMaxLagSeconds float64
	// Routes lists the sides the routing hook sent the writer to, in order.
	Routes []string
	// VerifyTime is the independent comparison; TotalTime is the whole run.
	VerifyTime, TotalTime time.Duration
	// ChangesStreamed and TxnsStreamed are what the daemon applied from the forward stream
	// (the snapshot's rows are written beside it, by the copy workers).
	ChangesStreamed, TxnsStreamed int64
	// FinalLagSeconds and FinalLagBytes are the daemon's lag once caught up.
	FinalLagSeconds float64
	FinalLagBytes   int64
	// WritesAcked and TxnsAcked count the rows written by the writer's committed transactions;
	// WritesOnSource and WritesOnTarget split WritesAcked by the side that acknowledged them.
	WritesAcked, TxnsAcked         int64
	WritesOnSource, WritesOnTarget int64
	// KeysChecked is how many distinct acknowledged keys were looked up on each side;
	// KeysExcluded were left out because the writer deleted them later.
	KeysChecked, KeysExcluded int
	// WritesLost is how many acknowledged keys either side lacks, listed by table in
	// MissingOnTarget and MissingOnSource.
	WritesLost                       int
	MissingOnTarget, MissingOnSource map[string][]string
	// Mismatched lists the tables whose contents differ between the two sides.
	Mismatched []string
}

// VerifyResult is the outcome of migrated's online verify.
type VerifyResult struct {
	// Ran is false when the demo stopped before the verify.
	Ran bool
	// Clean is true when every chunk of every table matched.
	Clean bool
	// Tables and Chunks are what was compared; Mismatched counts the chunks that differ.
	Tables             int
	Chunks, Mismatched int64
	// Samples are some of the rows that differ.
	Samples []server.Mismatch
	// Error is why the verify stopped, if it did.
	Error string
	// Time is how long it took.
	Time time.Duration
}

// SwitchResult is the outcome of a cutover or a rollback under the writer's load.
type SwitchResult struct {
	// Outcome is the daemon's: "done", "aborted" or "failed", or "refused" when the
	// preconditions did not hold. Empty when the switch was not attempted.
	Outcome string
	// Error says why it did not complete.
	Error string
	// Took is the whole action, preconditions included.
	Took time.Duration
	// WriteUnavailable is migrated's figure: from the fence on the old side to the new side
	// writable.
	WriteUnavailable time.Duration
	// LongestGap is the writer's figure: the longest time between two of its acknowledged
	// writes around the switch, which adds the routing hook and the reconnect to the new side.
	LongestGap time.Duration
	// Refused counts the writer's transactions the fence turned away; each was retried.
	Refused int64
	// FencePosition is the old side's position (WAL or GTID) at the fence.
	FencePosition string
}

// Done reports whether the switch completed.
func (s SwitchResult) Done() bool { return s.Outcome == "done" }

func (s SwitchResult) problem(name string) string {
	if s.Outcome == "" {
		return "the " + name + " did not run"
	}
	return fmt.Sprintf("the %s was %s: %s", name, s.Outcome, s.Error)
}

// OK reports whether the online verify was clean, the cutover and the rollback completed, no
// acknowledged write was lost on either side and every table verified equal.
func (r *Report) OK() bool { return r.Err() == nil }

// Err describes what went wrong, or returns nil when OK.
func (r *Report) Err() error {
	var problems []string
	switch v := r.Verify; {
	case !v.Ran:
		problems = append(problems, "the online verify did not run")
	case v.Error != "":
		problems = append(problems, "the online verify failed: "+v.Error)
	case !v.Clean:
		problems = append(problems, fmt.Sprintf("the online verify found %d mismatched chunks (%s)", v.Mismatched, mismatches(v.Samples)))
	}
	if r.Verify.Clean {
		// A switch that did not complete stops the demo's switches there: report the first.
		switch {
		case !r.Cutover.Done():
			problems = append(problems, r.Cutover.problem("cutover"))
		case !r.Rollback.Done():
			problems = append(problems, r.Rollback.problem("rollback"))
		}
	}
	if r.WritesLost > 0 {
		problems = append(problems, fmt.Sprintf("%d acknowledged writes are missing (on the target: %s; on the source: %s)",
			r.WritesLost, sample(r.MissingOnTarget), sample(r.MissingOnSource)))
	}
	if len(r.Mismatched) > 0 {
		problems = append(problems, fmt.Sprintf("%d tables differ between source and target (%s)", len(r.Mismatched), strings.Join(r.Mismatched, ", ")))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("demo failed: %s", strings.Join(problems, "; "))
}

// Run runs the demo and returns its report, which the caller should check with OK; the report
// has already been written to Out. An error means the demo could not run to the end. Everything
// it started is stopped and its temp files removed before it returns, also when ctx is cancelled,
// except the daemon log after a failure, whose path it prints.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	start := time.Now()
	con := &console{w: opts.Out, tty: opts.TTY, width: opts.Width, color: opts.TTY && os.Getenv("NO_COLOR") == "",
		words: wordingFor(opts.Engine)}
	eng, err := newEngine(opts)
	if err != nil {
		return nil, err
	}
	if err := eng.check(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "migrated-demo-")
	if err != nil {
		return nil, fmt.Errorf("create a temp dir: %w", err)
	}
	keepLog := false
	defer func() {
		if !keepLog {
			os.RemoveAll(dir)
		}
	}()

	con.printf("starting two throwaway %s %s …\n", con.words.product, con.words.servers)
	defer eng.stop()
	if err := eng.start(ctx); err != nil {
		return nil, err
	}
	src, dst := eng.dsns()
	con.printf("source  %s\ntarget  %s\n", src, dst)

	ds := eng.dataset(opts.SizeMB)
	rep := &Report{Engine: opts.Engine}
	loadStart := time.Now()
	if rep.GeneratedBytes, err = load(ctx, con, eng, ds, opts.SizeMB); err != nil {
		return nil, err
	}
	rep.LoadTime, rep.SetupTime = time.Since(loadStart), time.Since(start)

	m := &migration{opts: opts, con: con, eng: eng, ds: ds, logPath: filepath.Join(dir, "daemon.log"), rep: rep, start: start}
	if err := m.run(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		keepLog = true
		return nil, fmt.Errorf("%w\nthe daemon log is kept at %s", err, m.logPath)
	}
	if !rep.OK() {
		keepLog = true
		con.printf("\nthe daemon log is kept at %s\n", m.logPath)
	}
	return rep, nil
}

// load generates the dataset with a spinner and returns its size.
func load(ctx context.Context, con *console, eng engine, ds Dataset, sizeMB int) (int64, error) {
	con.printf("generating a ~%d MB shop database: %s …\n", sizeMB, con.words.tables(ds))
	var mu sync.Mutex
	state := map[string]string{}
	var order []string
	progress := func(table string, done bool) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := state[table]; !ok {
			order = append(order, table)
		}
		state[table] = "…"
		if done {
			state[table] = "✓"
		}
	}
	label := func() string {
		mu.Lock()
		defer mu.Unlock()
		parts := make([]string, len(order))
		for i, t := range order {
			parts[i] = t + " " + state[t]
		}
		return "loading " + strings.Join(parts, "  ")
	}
	t0 := time.Now()
	stop := con.spinner(label)
	size, err := eng.load(ctx, ds, progress)
	stop()
	if err != nil {
		return 0, err
	}
	con.printf("generated %s in %s: %s customers, %s products, %s orders, ~%s order items, %s events, %s documents\n",
		iec(size), dur(time.Since(t0)), count(ds.Customers), count(ds.Products), count(ds.Orders), count(ds.Orders*5/2),
		count(ds.Events), count(ds.Documents))
	return size, nil
}
