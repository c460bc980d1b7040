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

	"github.com/migrated/migrated/internal/config"
	"github.com/migrated/migrated/internal/daemon"
	"github.com/migrated/migrated/internal/metrics"
	"github.com/migrated/migrated/internal/server"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"
)

// Timing of the demo's view and of its waits.
const (
	redrawEvery  = 500 * time.Millisecond
	lineEvery    = 2 * time.Second
	catchUpLimit = 3 * time.Minute
	// routeLimit bounds the wait for the writer's first write on the new side after a switch.
	routeLimit = 30 * time.Second
	// cutoverLag is the lag the demo waits for before it cuts over, as an operator would: well
	// under cutover.max-lag, so that the cutover is not refused and its drain is short.
	cutoverLag = time.Second
	// splitRows is lower than the default so that the demo's bigger tables are copied in
	// several chunks by several workers, as a production table would be.
	splitRows = 200_000
)

// migration is the part of the demo that runs the daemon: from the writer's start to the report.
type migration struct {
	opts    Options
	con     *console
	eng     engine
	ds      Dataset
	logPath string
	rep     *Report
	start   time.Time

	// Set up by run.
	d *daemon.Daemon
	// actions are the daemon's operator actions, as the control API serves them: each engine
	// has its own verify.
	actions map[string]server.ActionFunc
	w       *Writer
	ledger  *Ledger
	router  *router
	dash    dashboard
	// The line mode's last line: when, and for which stage and phase.
	lastLine           time.Time
	lastStage, lastKey string
}

// config builds the daemon's configuration the way a config file would, so it gets the same
// defaults and validation. Port 0 lets the control API pick a free port. The routing hook is the
// demo's own router, which moves the writer.
func (m *migration) config(hook string) (*config.Config, error) {
	src, dst := m.eng.dsns()
	y := fmt.Sprintf(`name: demo
source: {engine: %[1]s, dsn: %[2]q}
target: {engine: %[1]s, dsn: %[3]q}
snapshot: {split-rows: %d}
stream: {heartbeat-interval: 500ms, status-interval: 500ms, reconnect-max-backoff: 5s}
cutover: {hooks: {webhook: %q, timeout: 10s}}
api: {listen: "127.0.0.1:0"}
log: {level: %q, format: json}
`, m.opts.Engine, src, dst, splitRows, hook, m.opts.LogLevel)
	return config.Parse([]byte(y), os.TempDir())
}

// run wires the daemon as `migrated run` does, with the writer and its router beside it, takes
// the migration through its stages, verifies and prints the report. With Keep it then waits for
// ctx.
func (m *migration) run(ctx context.Context) error {
	logFile, err := os.Create(m.logPath)
	if err != nil {
		return fmt.Errorf("create the daemon log: %w", err)
	}
	defer logFile.Close()
	// The writer can write to each side and writes to the one the routing hook names.
	shop, conns, closeShop, err := m.eng.shop(ctx, newStock(m.ds))
	if err != nil {
		return err
	}
	defer closeShop()
	m.ledger = NewLedger()
	m.w = NewWriter(shop, conns, m.ledger, m.opts.WriterPause)
	if m.router, err = newRouter(m.w); err != nil {
		return err
	}
	defer m.router.ln.Close() // in case Run never starts; a second Close is harmless
	cfg, err := m.config(m.router.URL())
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
	if m.d, err = daemon.New(cfg, log.With(zap.String("migration", cfg.Name)), met); err != nil {
		return err
	}
	m.actions = m.d.Actions()
	// The server binds its socket here; from now on only Run releases it.
	srv, err := server.New(server.Options{Listen: cfg.API.Listen, Gatherer: reg, Status: m.d.Status, Ready: m.d.Ready,
		Actions: m.actions, Logger: log})
	if err != nil {
		return err
	}
	m.con.printf("daemon log   %s\ncontrol API  http://%s/v1/status\nrouting hook %s\n", m.logPath, srv.Addr(), m.router.URL())
	m.dash = dashboard{start: m.start, logPath: m.logPath, api: srv.Addr(), ledger: m.ledger, writer: m.w}

	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopRun := context.WithCancel(gctx)
	defer stopRun()
	writerCtx, stopWriter := context.WithCancel(runCtx)
	defer stopWriter()
	writerDone := make(chan struct{})
	g.Go(func() error {
		defer close(writerDone)
		return m.w.Run(writerCtx)
	})
	g.Go(func() error { return srv.Run(runCtx) })
	g.Go(func() error { return m.router.Run(runCtx) })
	g.Go(func() error {
		if err := m.d.Run(runCtx); err != nil {
			return fmt.Errorf("migration: %w", err)
		}
		return nil
	})

	err = m.stages(gctx, stopWriter, writerDone)
	if err == nil {
		err = m.verify(gctx)
	}
	if err == nil {
		m.rep.TotalTime = time.Since(m.start)
		m.rep.Print(m.opts.Out)
		if m.opts.Keep {
			m.con.printf("\n--keep: the %[1]s and the daemon stay up until Ctrl-C (they cannot outlive this process)\n"+
				"  source       %[2]s\n  target       %[3]s\n  status       bin/migrated status --listen %[4]s --watch 1s\n  daemon log   %[5]s\n",
				m.con.words.servers, m.eng.shell(SideSource), m.eng.shell(SideTarget), srv.Addr(), m.logPath)
			<-gctx.Done()
			m.con.printf("stopping the daemon and removing the %s …\n", m.con.words.servers)
		}
	}
	stopRun()
	if gerr := g.Wait(); gerr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = gerr
	}
	return err
}

// stages takes the migration from the snapshot to a caught-up stream: streaming, the online
// verify, and unless it found differences, the cutover, the dual-write phase and the rollback,
// all with the writer writing; then the writer stops and the target catches up.
func (m *migration) stages(ctx context.Context, stopWriter func(), writerDone <-chan struct{}) error {
	streamingAt, err := m.stream(ctx)
	if err != nil {
		return err
	}
	if err := m.verifyOnline(ctx); err != nil {
		return err
	}
	if m.rep.Verify.Clean {
		if err := m.switches(ctx); err != nil {
			return err
		}
	}
	if err := m.catchUp(ctx, streamingAt, stopWriter, writerDone); err != nil {
		return err
	}
	return m.collect(ctx)
}

// follow redraws the dashboard every redrawEvery until until reports done or an error. until
// gets the daemon's status and returns the dashboard's step line; stage names the stage for the
// line mode, which prints a line when the stage or the phase changes and every lineEvery.
func (m *migration) follow(ctx context.Context, stage string, until func(st server.Status, now time.Time) (step string, done bool, err error)) error {
	tick := time.NewTicker(redrawEvery)
	defer tick.Stop()
	for {
		st := m.d.Status()
		now := time.Now()
		if st.Phase == "failed" {
			return fmt.Errorf("the migration failed: %s", st.Error)
		}
		step, done, err := until(st, now)
		if err != nil || done {
			return err
		}
		m.show(st, stage, step, now)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// show draws the dashboard, or prints its line when one is due.
func (m *migration) show(st server.Status, stage, step string, now time.Time) {
	m.dash.status, m.dash.step = st, step
	if m.opts.TTY {
		m.con.draw(m.dash)
		return
	}
	key := stage + "/" + st.Phase
	if now.Sub(m.lastLine) >= lineEvery || key != m.lastKey {
		m.con.line(m.dash)
		m.lastLine, m.lastKey = now, key
	}
}

// note records a finished stage: the terminal view lists it under the step, the line mode
// prints it.
func (m *migration) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	m.dash.done = append(m.dash.done, msg)
	if !m.opts.TTY {
		m.con.printf("  ✓ %s\n", msg)
	}
}

// collect reads the stream's figures and the rows the snapshot copied, once caught up.
func (m *migration) collect(ctx context.Context) error {
	st := m.d.Status()
	m.dash.status, m.dash.step = st, "caught up; verifying"
	if m.opts.TTY {
		m.con.draw(m.dash)
	} else {
		m.con.line(m.dash)
	}
	m.rep.ChangesStreamed, m.rep.TxnsStreamed = st.Stream.ChangesApplied, st.Stream.TxnsApplied
	m.rep.FinalLagSeconds, m.rep.FinalLagBytes = st.Stream.LagSeconds, st.Stream.LagBytes
	m.rep.Routes = m.router.Routes()
	copied := map[string]int64{}
	for _, t := range st.Snapshot.Tables {
		copied[t.Table] = t.RowsCopied
	}
	per, err := m.eng.tableRows(ctx, copied)
	if err != nil {
		return err
	}
	m.rep.Tables = nil
	for _, t := range slices.Sorted(maps.Keys(per)) {
		m.rep.Tables = append(m.rep.Tables, TableResult{Table: t, SnapshotRows: per[t]})
	}
	return nil
}

// verify compares every table on both sides and looks up every acknowledged write on both: the
// source had the writes of the dual-write phase back from the target, the target has the source's
// through the forward stream.
func (m *migration) verify(ctx context.Context) error {
	t0 := time.Now()
	var mu sync.Mutex
	current, n := "", 0
	stop := m.con.spinner(func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("verifying every table on both sides: %s (%d done)", current, n)
	})
	results, err := m.eng.compareTables(ctx, func(table string) {
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
	m.rep.WritesAcked, m.rep.TxnsAcked = m.ledger.Stats()
	m.rep.WritesOnSource, m.rep.WritesOnTarget = m.ledger.Acked(SideSource), m.ledger.Acked(SideTarget)
	live, excluded := m.ledger.Live()
	m.rep.KeysExcluded = excluded
	for _, keys := range live {
		m.rep.KeysChecked += len(keys)
	}
	if m.rep.MissingOnTarget, err = m.eng.missingKeys(ctx, SideTarget, live); err != nil {
		return err
	}
	if m.rep.MissingOnSource, err = m.eng.missingKeys(ctx, SideSource, live); err != nil {
		return err
	}
	lost := map[Key]struct{}{}
	for _, missing := range []map[string][]string{m.rep.MissingOnTarget, m.rep.MissingOnSource} {
		for table, keys := range missing {
			for _, k := range keys {
				lost[Key{Table: table, ID: k}] = struct{}{}
			}
		}
	}
	m.rep.WritesLost = len(lost)
	m.rep.VerifyTime = time.Since(t0)
	return nil
}
