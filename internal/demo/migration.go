package demo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/config"
	"github.com/migrated/migrated/internal/daemon"
	"github.com/migrated/migrated/internal/metrics"
	"github.com/migrated/migrated/internal/server"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"
)

// Timing of the demo's view and of the wait for the stream to catch up.
const (
	redrawEvery  = 500 * time.Millisecond
	lineEvery    = 2 * time.Second
	catchUpLimit = 3 * time.Minute
	// splitRows is lower than the default so that the demo's bigger tables are copied in
	// several chunks by several workers, as a production table would be.
	splitRows = 200_000
)

// migration is the part of the demo that runs the daemon: from the writer's start to the report.
type migration struct {
	opts     Options
	con      *console
	ds       Dataset
	src, dst string
	logPath  string
	rep      *Report
	start    time.Time
}

// config builds the daemon's configuration the way a config file would, so it gets the same
// defaults and validation. Port 0 lets the control API pick a free port.
func (m *migration) config() (*config.Config, error) {
	y := fmt.Sprintf(`name: demo
source: {engine: postgres, dsn: %q}
target: {engine: postgres, dsn: %q}
snapshot: {split-rows: %d}
stream: {heartbeat-interval: 500ms, status-interval: 500ms, reconnect-max-backoff: 5s}
api: {listen: "127.0.0.1:0"}
log: {level: %q, format: json}
`, m.src, m.dst, splitRows, m.opts.LogLevel)
	return config.Parse([]byte(y), os.TempDir())
}

// run wires the daemon as `migrated run` does, with the writer beside it, then watches it until
// the stream has caught up, verifies and prints the report. With Keep it then waits for ctx.
func (m *migration) run(ctx context.Context) error {
	logFile, err := os.Create(m.logPath)
	if err != nil {
		return fmt.Errorf("create the daemon log: %w", err)
	}
	defer logFile.Close()
	cfg, err := m.config()
	if err != nil {
		return err
	}
	level, err := zapcore.ParseLevel(cfg.Log.Level)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logFile), level))
	defer log.Sync() //nolint:errcheck
	reg := prometheus.NewRegistry()
	met := metrics.New(reg)
	met.BuildInfo.WithLabelValues(m.opts.Version, runtime.Version()).Set(1)
	d, err := daemon.New(cfg, log.With(zap.String("migration", cfg.Name)), met)
	if err != nil {
		return err
	}
	pool, err := newWriterPool(ctx, m.src)
	if err != nil {
		return fmt.Errorf("connect the writer to the source: %w", err)
	}
	defer pool.Close()
	ledger := NewLedger()
	w := NewWriter(pool, m.ds, ledger, m.opts.WriterPause)
	// The server binds its socket here; from now on only Run releases it.
	srv, err := server.New(server.Options{Listen: cfg.API.Listen, Gatherer: reg, Status: d.Status, Ready: d.Ready, Logger: log})
	if err != nil {
		return err
	}
	m.con.printf("daemon log  %s\ncontrol API http://%s/v1/status\n", m.logPath, srv.Addr())

	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopRun := context.WithCancel(gctx)
	defer stopRun()
	writerCtx, stopWriter := context.WithCancel(runCtx)
	defer stopWriter()
	writerDone := make(chan struct{})
	g.Go(func() error {
		defer close(writerDone)
		return w.Run(writerCtx)
	})
	g.Go(func() error { return srv.Run(runCtx) })
	g.Go(func() error {
		if err := d.Run(runCtx); err != nil {
			return fmt.Errorf("migration: %w", err)
		}
		return nil
	})

	err = m.watch(gctx, d, ledger, srv.Addr(), stopWriter, writerDone)
	if err == nil {
		err = m.verify(gctx, ledger)
	}
	if err == nil {
		m.rep.TotalTime = time.Since(m.start)
		m.rep.Print(m.opts.Out)
		if m.opts.Keep {
			m.con.printf("\n--keep: the clusters and the daemon stay up until Ctrl-C (they cannot outlive this process)\n"+
				"  source       psql '%s'\n  target       psql '%s'\n  status       bin/migrated status --listen %s --watch 1s\n  daemon log   %s\n",
				m.src, m.dst, srv.Addr(), m.logPath)
			<-gctx.Done()
			m.con.printf("stopping the daemon and removing the clusters …\n")
		}
	}
	stopRun()
	if gerr := g.Wait(); gerr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = gerr
	}
	return err
}

// watch shows the daemon's status until it streams, lets the writer run for opts.Stream more,
// stops it and waits until the target's checkpoint passes the source's WAL position taken then.
func (m *migration) watch(ctx context.Context, d *daemon.Daemon, ledger *Ledger, api string, stopWriter func(), writerDone <-chan struct{}) error {
	src, err := pgx.Connect(ctx, m.src)
	if err != nil {
		return fmt.Errorf("connect to the source: %w", err)
	}
	defer src.Close(context.WithoutCancel(ctx))
	dst, err := pgx.Connect(ctx, m.dst)
	if err != nil {
		return fmt.Errorf("connect to the target: %w", err)
	}
	defer dst.Close(context.WithoutCancel(ctx))

	dash := dashboard{start: m.start, logPath: m.logPath, api: api, ledger: ledger}
	daemonStart := time.Now()
	var streamingAt, stoppedAt, lastLine time.Time
	var lastPhase, stopLSN string
	tick := time.NewTicker(redrawEvery)
	defer tick.Stop()
watch:
	for {
		st := d.Status()
		now := time.Now()
		if st.Phase == "failed" {
			return fmt.Errorf("the migration failed: %s", st.Error)
		}
		if streamingAt.IsZero() && st.Phase == "streaming" {
			streamingAt = now
			m.rep.SnapshotTime = st.Since.Sub(daemonStart)
		}
		switch {
		case streamingAt.IsZero():
			dash.step = "the daemon copies the source while the writer keeps writing to it (snapshot, then indexes and keys)"
		case stopLSN == "" && now.Sub(streamingAt) < m.opts.Stream:
			dash.step = fmt.Sprintf("streaming: the writer keeps writing for %s more; the lag below is live",
				(m.opts.Stream - now.Sub(streamingAt)).Round(time.Second))
		case stopLSN == "":
			stopWriter()
			select {
			case <-writerDone:
			case <-ctx.Done():
				return ctx.Err()
			}
			m.rep.StreamTime = time.Since(streamingAt)
			if err := src.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&stopLSN); err != nil {
				return fmt.Errorf("read the source's WAL position: %w", err)
			}
			stoppedAt = time.Now()
			dash.step = "writer stopped at source WAL " + stopLSN + "; waiting for the target's checkpoint to pass it"
		}
		if stopLSN != "" {
			var reached bool
			err := dst.QueryRow(ctx, `SELECT position::pg_lsn >= $1::pg_lsn FROM _migrated.progress
				WHERE migration = 'demo' AND stream = 'forward'`, stopLSN).Scan(&reached)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("read the target's checkpoint: %w", err)
			}
			if reached {
				m.rep.CatchUpTime = time.Since(stoppedAt)
				break watch
			}
			if time.Since(stoppedAt) > catchUpLimit {
				return fmt.Errorf("the target did not reach the source's position %s within %s after the writer stopped", stopLSN, catchUpLimit)
			}
		}
		dash.status = st
		if m.opts.TTY {
			m.con.draw(dash)
		} else if now.Sub(lastLine) >= lineEvery || st.Phase != lastPhase {
			m.con.line(dash)
			lastLine, lastPhase = now, st.Phase
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	// One more heartbeat, so the lag shown is measured after the catch-up.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
	}
	st := d.Status()
	dash.status, dash.step = st, "caught up; verifying"
	if m.opts.TTY {
		m.con.draw(dash)
	} else {
		m.con.line(dash)
	}
	m.rep.ChangesStreamed, m.rep.TxnsStreamed = st.Stream.ChangesApplied, st.Stream.TxnsApplied
	m.rep.FinalLagSeconds, m.rep.FinalLagBytes = st.Stream.LagSeconds, st.Stream.LagBytes
	copied := map[string]int64{}
	for _, t := range st.Snapshot.Tables {
		copied[t.Table] = t.RowsCopied
	}
	per, err := snapshotRows(ctx, m.src, copied)
	if err != nil {
		return err
	}
	m.rep.Tables = nil
	for _, t := range slices.Sorted(maps.Keys(per)) {
		m.rep.Tables = append(m.rep.Tables, TableResult{Table: t, SnapshotRows: per[t]})
	}
	return nil
}

// verify compares every table on both sides and looks up every acknowledged write on the target.
func (m *migration) verify(ctx context.Context, ledger *Ledger) error {
	t0 := time.Now()
	var mu sync.Mutex
	current, n := "", 0
	stop := m.con.spinner(func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("verifying every table on both sides: %s (%d done)", current, n)
	})
	results, err := compareTables(ctx, m.src, m.dst, func(table string) {
		mu.Lock()
		defer mu.Unlock()
		if current != "" {
			n++
		}
		current = table
	})
	stop()
	if err != nil {
		return err
	}
	snap := map[string]int64{}
	for _, t := range m.rep.Tables {
		snap[t.Table] = t.SnapshotRows
	}
	m.rep.Tables = results
	for i := range m.rep.Tables {
		t := &m.rep.Tables[i]
		t.SnapshotRows = snap[t.Table]
		if !t.Equal {
			m.rep.Mismatched = append(m.rep.Mismatched, t.Table)
		}
	}
	m.rep.WritesAcked, m.rep.TxnsAcked = ledger.Stats()
	live, excluded := ledger.Live()
	m.rep.KeysExcluded = excluded
	for _, keys := range live {
		m.rep.KeysChecked += len(keys)
	}
	if m.rep.Missing, err = missingKeys(ctx, m.dst, live); err != nil {
		return err
	}
	for _, keys := range m.rep.Missing {
		m.rep.WritesLost += len(keys)
	}
	m.rep.VerifyTime = time.Since(t0)
	return nil
}
