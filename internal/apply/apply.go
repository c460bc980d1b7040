// Package apply writes a decoded change stream into the target. Source transactions stay atomic;
// small ones are grouped into one target transaction, and every target transaction carries the
// stream position it reaches, so a restart resumes exactly after the last durable commit.
package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/migrated/migrated/internal/cdc"
	"go.uber.org/zap"
)

// Writer opens target transactions. Engines implement it.
type Writer interface {
	Begin(ctx context.Context) (Txn, error)
}

// FreshWriter is a Writer that can also open a transaction for rows the target should not hold
// yet, a snapshot chunk's: it may write them as plain inserts, which cost the target less than
// upserts. If the target holds one of them after all, the transaction fails with an error
// wrapping ErrHeld, before anything of it commits, and the rows are to be written again in an
// ordinary transaction.
type FreshWriter interface {
	Writer
	BeginFresh(ctx context.Context) (Txn, error)
}

// ErrHeld means a transaction of fresh rows met a row that the target already holds.
var ErrHeld = errors.New("the target already holds a row of this chunk")

// Txn is one target transaction. Add may send work to the target before Commit; a Txn must
// apply changes idempotently (insert as upsert, update and delete by key).
type Txn interface {
	Add(ctx context.Context, c *cdc.Change) error
	// Commit writes the checkpoint (pos, commitTime) and commits, all in the same transaction.
	// commitTime is the last source commit's time, or a lone heartbeat's time. A nil pos
	// commits without touching the checkpoint: a snapshot chunk written beside the stream.
	Commit(ctx context.Context, pos cdc.Position, commitTime time.Time) error
	Rollback(ctx context.Context)
}

// Durable is called after each target commit with the position it made durable, the source
// commit time of the last transaction in it (a lone heartbeat's time), and what it applied.
type Durable func(pos cdc.Position, commitTime time.Time, stats BatchStats)

// BatchStats counts what one target transaction applied.
type BatchStats struct {
	Txns     int
	Changes  map[cdc.Op]int
	Duration time.Duration
}

// Options tunes grouping.
type Options struct {
	// MaxChanges closes a grouped target transaction at the next source commit once it holds this
	// many changes. A single larger source transaction is still applied whole. Default 5000.
	MaxChanges int
	// MaxDelay closes a grouped target transaction at the next source commit once it has been
	// open this long. Default 200ms.
	MaxDelay time.Duration
	// HeartbeatEvery limits how often a heartbeat alone is checkpointed. Default 1s.
	HeartbeatEvery time.Duration
}

// Applier consumes events and applies them.
type Applier struct {
	w       Writer
	opts    Options
	durable Durable
	log     *zap.Logger
}

// New returns an Applier with defaults filled in.
func New(w Writer, opts Options, durable Durable, log *zap.Logger) *Applier {
	if opts.MaxChanges <= 0 {
		opts.MaxChanges = 5000
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 200 * time.Millisecond
	}
	if opts.HeartbeatEvery <= 0 {
		opts.HeartbeatEvery = time.Second
	}
	if durable == nil {
		durable = func(cdc.Position, time.Time, BatchStats) {}
	}
	return &Applier{w: w, opts: opts, durable: durable, log: log.Named("apply")}
}

// Run applies events until the channel closes or ctx ends. It returns the first error; an open
// target transaction is rolled back. The target is then at its last checkpoint, or past it by
// rows a writer committed on sessions of its own (a MySQL target's lanes), which the replay from
// the checkpoint writes again, idempotently.
func (a *Applier) Run(ctx context.Context, events <-chan cdc.Event) (err error) {
	var (
		txn        Txn
		opened     time.Time
		stats      BatchStats
		inSource   bool // inside a source transaction
		lastPos    cdc.Position
		lastCommit time.Time
		lastBeat   time.Time
	)
	defer func() {
		if txn != nil {
			txn.Rollback(context.WithoutCancel(ctx))
		}
	}()
	open := func() error {
		if txn != nil {
			return nil
		}
		t, err := a.w.Begin(ctx)
		if err != nil {
			return err
		}
		txn, opened, stats = t, time.Now(), BatchStats{Changes: map[cdc.Op]int{}}
		lastCommit = time.Time{}
		return nil
	}
	commit := func() error {
		if err := txn.Commit(ctx, lastPos, lastCommit); err != nil {
			return err
		}
		txn = nil
		stats.Duration = time.Since(opened)
		a.durable(lastPos, lastCommit, stats)
		return nil
	}
	changes := func() int {
		n := 0
		for _, c := range stats.Changes {
			n += c
		}
		return n
	}

	for {
		var ev cdc.Event
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok = <-events:
		}
		if !ok {
			return nil
		}
		switch ev.Kind {
		case cdc.EventBegin:
			if inSource {
				return errors.New("apply: begin inside an open source transaction")
			}
			if err := open(); err != nil {
				return err
			}
			inSource = true
		case cdc.EventChange:
			if !inSource {
				return errors.New("apply: change outside a source transaction")
			}
			if err := txn.Add(ctx, ev.Change); err != nil {
				return err
			}
			stats.Changes[ev.Change.Op]++
		case cdc.EventCommit:
			if !inSource {
				return errors.New("apply: commit outside a source transaction")
			}
			inSource = false
			stats.Txns++
			lastPos, lastCommit = ev.Position, ev.CommitTime
			// Group while more is already waiting, up to the size and delay budgets.
			if len(events) == 0 || changes() >= a.opts.MaxChanges || time.Since(opened) >= a.opts.MaxDelay {
				if err := commit(); err != nil {
					return err
				}
			}
		case cdc.EventHeartbeat:
			if inSource {
				return errors.New("apply: heartbeat inside a source transaction")
			}
			lastPos = ev.Position
			if txn != nil {
				// Rides on the open group; it commits with the next source transaction or now.
				if len(events) == 0 {
					if err := commit(); err != nil {
						return err
					}
				}
				continue
			}
			if time.Since(lastBeat) < a.opts.HeartbeatEvery && len(events) > 0 {
				continue
			}
			lastBeat = time.Now()
			if err := open(); err != nil {
				return err
			}
			// Alone, a heartbeat's time is the source time the target has caught up to.
			lastCommit = ev.CommitTime
			if err := commit(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("apply: unknown event kind %d", ev.Kind)
		}
	}
}
