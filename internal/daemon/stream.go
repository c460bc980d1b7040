package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/state"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// leg is one direction of replication: forward (source to target) until the cutover, reverse
// (target back to the old source) in the dual-write phase. Each has its own slot and publication
// on the side it reads, and its checkpoint on the side it writes.
type leg struct {
	direction      string
	fromDSN, toDSN string
	slot, pub      string
	// store holds the checkpoint, on the side the leg writes to.
	store *state.Store
	// status is the leg's part of the status document; guarded by Daemon.mu.
	status *server.StreamState
	// applied is the durably applied position, for the drain and for verify.
	applied atomic.Uint64
}

// Applied returns the position the leg has durably applied up to.
func (l *leg) Applied() postgres.LSN { return postgres.LSN(l.applied.Load()) }

// caughtUpBytes is how far behind the source's WAL end the applied position may be while lag is
// reported as zero: the distance covers WAL that carries nothing for this migration (other
// databases, checkpoints) between heartbeats.
const caughtUpBytes = 1 << 20

// stream applies the change stream from the checkpoint until ctx ends or a permanent error. It
// reconnects with backoff after transient failures of either side, each time from the last
// durable checkpoint on the target.
func (d *Daemon) stream(ctx context.Context, l *leg) error {
	return d.reconnect(ctx, l.direction, l.status, func(ctx context.Context) error { return d.streamOnce(ctx, l) })
}

// reconnect runs once until ctx ends or a permanent error, again with backoff after each
// transient failure. Each run resumes from the checkpoint on the side the stream writes to.
func (d *Daemon) reconnect(ctx context.Context, direction string, status *server.StreamState, once func(context.Context) error) error {
	backoff := time.Second
	for {
		started := time.Now()
		err := once(ctx)
		d.m.StreamConnected.WithLabelValues(direction).Set(0)
		d.mu.Lock()
		status.Connected = false
		d.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		if !transientStream(err) {
			return err
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		d.m.StreamReconnects.WithLabelValues(direction).Inc()
		d.m.Errors.WithLabelValues("stream").Inc()
		d.log.Warn("stream interrupted; reconnecting from the last checkpoint", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, d.cfg.Stream.ReconnectMaxBackoff.Duration())
	}
}

// transientStream tells which failures are worth a reconnect from the checkpoint: the network, a
// server restarting, a deadlock, a slot still held by a previous connection. A change the target
// rejects, a missing slot or publication, a privilege, anything unknown: stop and say so.
func transientStream(err error) bool {
	if err == nil {
		return false
	}
	var ce *apply.ChangeError
	if errors.As(err, &ce) {
		return apply.IsTransient(ce.Err)
	}
	var de *cdc.DecodeError
	var fe fatalError
	if errors.As(err, &de) || errors.As(err, &fe) {
		return false
	}
	var myErr *gomysql.MyError
	if errors.As(err, &myErr) {
		switch myErr.Code {
		case 1040, 1053, 1205, 1213, 1317, 2006, 2013: // too many connections, shutdown, lock wait, deadlock, interrupted, gone away, lost
			return true
		}
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		c := pgErr.Code
		return strings.HasPrefix(c, "08") || strings.HasPrefix(c, "53") || strings.HasPrefix(c, "57P") ||
			c == "40001" || c == "40P01" || c == "55006" || c == "55P03" || c == "57014"
	}
	// Apply classified it (the network, below SQL), or it is the network here: retry. Anything
	// else is unknown, and unknown stops with the error rather than retrying forever.
	return apply.IsTransient(err) || isConnectionError(err)
}

func (d *Daemon) streamOnce(ctx context.Context, l *leg) error {
	direction := l.direction
	posText, commitTime, err := l.store.Position(ctx, direction)
	if err != nil {
		return err
	}
	resume, err := postgres.ParseLSN(posText)
	if err != nil {
		return err
	}
	l.applied.Store(uint64(max(resume, l.Applied())))
	var skip map[cdc.TableID]postgres.LSN
	if direction == forward {
		if skip, err = d.skipBefore(ctx, resume); err != nil {
			return err
		}
	}
	if err := d.checkSlotBehind(ctx, l, resume); err != nil {
		return err
	}
	stream := postgres.NewStream(postgres.StreamOptions{
		DSN: l.fromDSN, Slot: l.slot, Publication: l.pub, Keys: postgres.KeyMap(d.tables),
		Resume: resume, SkipBefore: skip, StatusInterval: d.cfg.Stream.StatusInterval.Duration(),
		OnChange: d.m.ChangesReceived.WithLabelValues(direction).Inc,
	})
	target, err := postgres.NewTarget(ctx, l.toDSN, d.cfg.Name, direction)
	if err != nil {
		return err
	}
	defer target.Close(context.WithoutCancel(ctx))
	src, err := pgx.Connect(ctx, l.fromDSN)
	if err != nil {
		return fmt.Errorf("connect to the %s stream's origin: %w", direction, redactErr(redactErr(err, d.srcDSN), d.dstDSN))
	}
	defer src.Close(context.WithoutCancel(ctx))

	events := make(chan cdc.Event, 8192)
	lag := &lagTracker{leg: l, applied: resume, lastCommit: commitTime}
	durable := func(pos cdc.Position, commitTime time.Time, b apply.BatchStats) {
		lsn := pos.(postgres.LSN)
		stream.Flushed(lsn)
		if uint64(lsn) > l.applied.Load() {
			l.applied.Store(uint64(lsn))
		}
		d.countApplied(direction, l.status, b)
		d.refreshLag(lag, stream.WALEnd(), len(events), lsn, commitTime)
	}
	applier := apply.New(target, apply.Options{
		MaxChanges: d.cfg.Apply.BatchChanges, MaxDelay: d.cfg.Apply.BatchDelay.Duration(),
		HeartbeatEvery: d.cfg.Stream.HeartbeatInterval.Duration(),
	}, durable, d.log)

	d.log.Info("streaming", zap.String("direction", direction), zap.Stringer("from", resume), zap.Int("tables_skipping_before_snapshot", len(skip)))
	d.m.StreamConnected.WithLabelValues(direction).Set(1)
	d.mu.Lock()
	l.status.Connected = true
	d.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return stream.Run(gctx, events) })
	g.Go(func() error { return applier.Run(gctx, events) })
	g.Go(func() error {
		return d.everyBeat(gctx, func() error {
			st, err := postgres.Heartbeat(gctx, src, l.slot)
			if err != nil {
				return err
			}
			if direction == forward {
				d.m.SourceSlotRetainedBytes.Set(float64(st.RetainedBytes))
			}
			d.refreshLag(lag, max(st.CurrentLSN, stream.WALEnd()), len(events), 0, time.Time{})
			return nil
		})
	})
	return g.Wait()
}

// everyBeat runs beat at the heartbeat interval until ctx ends or beat fails.
func (d *Daemon) everyBeat(ctx context.Context, beat func() error) error {
	tick := time.NewTicker(d.cfg.Stream.HeartbeatInterval.Duration())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := beat(); err != nil {
			return err
		}
	}
}

// countApplied adds a durable batch to the metrics and to the stream's status, and returns
// how many row changes it applied (snapshot marks are not row changes).
func (d *Daemon) countApplied(direction string, status *server.StreamState, b apply.BatchStats) int {
	n := 0
	for op, c := range b.Changes {
		if op == cdc.OpMark {
			continue
		}
		d.m.ChangesApplied.WithLabelValues(direction, op.String()).Add(float64(c))
		n += c
	}
	d.m.TransactionsApplied.WithLabelValues(direction).Add(float64(b.Txns))
	if n > 0 || b.Txns > 0 {
		d.m.ApplyBatchDuration.Observe(b.Duration.Seconds())
		d.m.ApplyBatchChanges.Observe(float64(n))
	}
	d.mu.Lock()
	status.ChangesApplied += int64(n)
	status.TxnsApplied += int64(b.Txns)
	d.mu.Unlock()
	return n
}

// fatalError is a stream failure that a reconnect cannot mend.
type fatalError struct{ error }

func (e fatalError) Unwrap() error { return e.error }

// checkSlotBehind refuses to stream when the source slot was confirmed past the target's
// checkpoint: the source would silently start after it, and the changes between are gone. It
// happens when the target lost commits it had acknowledged (restored from a backup, failed over
// to a lagging standby).
func (d *Daemon) checkSlotBehind(ctx context.Context, l *leg, resume postgres.LSN) error {
	src, err := pgx.Connect(ctx, l.fromDSN)
	if err != nil {
		return fmt.Errorf("connect to the %s stream's origin: %w", l.direction, redactErr(redactErr(err, d.srcDSN), d.dstDSN))
	}
	defer src.Close(context.WithoutCancel(ctx))
	var confirmed *string
	err = src.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, l.slot).Scan(&confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		next := "cancel the migration and start again"
		if l.direction == reverse {
			next = "the old source can no longer follow the target: run `migrated complete` to end the migration (the target keeps every write), or copy the target back with a new migration"
		}
		return fatalError{fmt.Errorf("replication slot %s is gone, so the %s changes since the checkpoint are lost to the stream; %s", l.slot, l.direction, next)}
	}
	if err != nil || confirmed == nil {
		return err
	}
	c, err := postgres.ParseLSN(*confirmed)
	if err != nil {
		return err
	}
	if c > resume {
		return fatalError{fmt.Errorf("the %s slot %s was confirmed up to %s but the checkpoint is %s: the receiving side lost commits it had acknowledged (a restore or a failover?), and the changes between are gone from the slot; cancel the migration and start again", l.direction, l.slot, c, resume)}
	}
	return nil
}

// skipBefore maps each streamed table that was re-copied from a later snapshot to that
// snapshot's position, for the positions still ahead of the stream.
func (d *Daemon) skipBefore(ctx context.Context, resume postgres.LSN) (map[cdc.TableID]postgres.LSN, error) {
	progress, err := d.store.Tables(ctx)
	if err != nil {
		return nil, err
	}
	byName := postgres.ByName(d.tables)
	skip := map[cdc.TableID]postgres.LSN{}
	for _, p := range progress {
		if p.SkipBefore == "" {
			continue
		}
		lsn, err := postgres.ParseLSN(p.SkipBefore)
		if err != nil {
			return nil, err
		}
		t, ok := byName[cdc.TableID{Schema: p.Schema, Name: p.Name}]
		if !ok || lsn <= resume {
			continue
		}
		if lsn > skip[t.Root] {
			skip[t.Root] = lsn
		}
	}
	return skip, nil
}

// lagTracker holds what lag is computed from; refreshLag publishes it. Guarded by Daemon.mu.
type lagTracker struct {
	leg        *leg
	applied    postgres.LSN
	lastCommit time.Time
}

func (l *lagTracker) applyDone(lsn postgres.LSN, commitTime time.Time) {
	l.applied = max(l.applied, lsn)
	if !commitTime.IsZero() {
		l.lastCommit = commitTime
	}
}

// refreshLag publishes lag. Bytes: the source's WAL end minus the applied position. Seconds: now
// minus the source commit time of the last applied transaction or heartbeat, or zero when nothing
// is waiting and the applied position is within caughtUpBytes of the source.
// applied and commitTime, when set, record a durable commit first.
func (d *Daemon) refreshLag(l *lagTracker, walEnd postgres.LSN, queued int, applied postgres.LSN, commitTime time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l.applyDone(applied, commitTime)
	var bytes int64
	if walEnd > l.applied {
		bytes = int64(walEnd - l.applied)
	}
	seconds := 0.0
	if queued > 0 || bytes > caughtUpBytes {
		if !l.lastCommit.IsZero() {
			seconds = max(0, time.Since(l.lastCommit).Seconds())
		}
	}
	s := l.leg.status
	direction := l.leg.direction
	s.AppliedPosition = l.applied.String()
	if walEnd > 0 {
		s.SourcePosition = walEnd.String()
	}
	s.LastCommitTime = l.lastCommit
	s.LagBytes, s.LagSeconds = bytes, seconds
	d.m.LagBytes.WithLabelValues(direction).Set(float64(bytes))
	d.m.LagSeconds.WithLabelValues(direction).Set(seconds)
	if !l.lastCommit.IsZero() {
		d.m.LastApplyTimestamp.WithLabelValues(direction).Set(float64(l.lastCommit.Unix()))
	}
}
