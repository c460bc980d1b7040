package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// ConnectReplication opens a logical replication connection (replication=database).
func ConnectReplication(ctx context.Context, dsn string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open replication connection: %w", err)
	}
	return conn, nil
}

// EnsurePublication creates the migration's publication for the root tables if it does not
// exist. Partitions are published through their root, so the target sees one table.
func EnsurePublication(ctx context.Context, conn *pgx.Conn, name string, tables []*schema.Table) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up publication %s: %w", name, err)
	}
	if exists {
		return nil
	}
	var names []string
	for _, t := range Roots(tables) {
		names = append(names, ident(t.ID))
	}
	sql := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish_via_partition_root = true)", quote(name), strings.Join(names, ", "))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create publication %s: %w", name, err)
	}
	return nil
}

// DropPublication drops the publication if it exists.
func DropPublication(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quote(name)); err != nil {
		return fmt.Errorf("drop publication %s: %w", name, err)
	}
	return nil
}

// SlotExists reports whether the named replication slot exists.
func SlotExists(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	var exists bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slot).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("look up slot %s: %w", slot, err)
	}
	return exists, nil
}

// DropSlot drops the slot if it exists, waiting for a previous daemon's connection to let go.
func DropSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
	if err != nil {
		return fmt.Errorf("stop the user of slot %s: %w", slot, err)
	}
	for i := 0; ; i++ {
		_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || i > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond) // object in use: the terminated walsender is exiting
	}
	if err != nil {
		return fmt.Errorf("drop slot %s: %w", slot, err)
	}
	return nil
}

// ExportedSlot is a slot created with an exported snapshot. The snapshot stays importable until
// Close, which must wait until every copy worker has imported it.
type ExportedSlot struct {
	Conn            *pgconn.PgConn
	Snapshot        string
	ConsistentPoint LSN
}

// CreateSlot creates a logical slot for pgoutput on conn (a replication connection) and exports
// its snapshot: the copy made under that snapshot and the stream from ConsistentPoint meet
// exactly. A temporary slot disappears with the connection; it serves a re-copy.
func CreateSlot(ctx context.Context, conn *pgconn.PgConn, slot string, temporary bool) (*ExportedSlot, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: temporary, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication,
	})
	if err != nil {
		return nil, fmt.Errorf("create replication slot %s on the source: %w", slot, err)
	}
	lsn, err := ParseLSN(res.ConsistentPoint)
	if err != nil {
		return nil, err
	}
	return &ExportedSlot{Conn: conn, Snapshot: res.SnapshotName, ConsistentPoint: lsn}, nil
}

// CreateStreamSlot creates a logical slot for pgoutput without exporting a snapshot, over a
// replication connection of its own, and returns the position its stream starts from. It serves
// a stream that needs no copy: the reverse stream at a cutover, the new forward stream at a
// rollback, both made while the writing side is fenced and drained.
func CreateStreamSlot(ctx context.Context, dsn, slot string) (LSN, error) {
	conn, err := ConnectReplication(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		SnapshotAction: "NOEXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication,
	})
	if err != nil {
		return 0, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	return ParseLSN(res.ConsistentPoint)
}

// StreamOptions configures a Stream.
type StreamOptions struct {
	DSN         string
	Slot        string
	Publication string
	// Keys are the key columns per streamed table.
	Keys map[cdc.TableID][]string
	// Resume is the checkpointed position: transactions ending at or before it are not emitted.
	Resume LSN
	// SkipBefore holds tables re-copied from a later snapshot (see decoder).
	SkipBefore map[cdc.TableID]LSN
	// StatusInterval is how often the durable position is confirmed to the source.
	StatusInterval time.Duration
	// OnChange, when set, is called for each row change received, before apply sees it.
	OnChange func()
}

// Stream reads the pgoutput stream of a slot and emits cdc events.
type Stream struct {
	opts StreamOptions
	// flushed is the newest position durable on the target; only it is confirmed to the source.
	flushed atomic.Uint64
	// walEnd is the newest server WAL end seen.
	walEnd atomic.Uint64
}

// NewStream returns a stream that resumes at opts.Resume.
func NewStream(opts StreamOptions) *Stream {
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = time.Second
	}
	s := &Stream{opts: opts}
	s.flushed.Store(uint64(opts.Resume))
	return s
}

// Flushed records that the target durably holds everything up to pos. It never moves back.
func (s *Stream) Flushed(pos LSN) {
	for {
		cur := s.flushed.Load()
		if uint64(pos) <= cur || s.flushed.CompareAndSwap(cur, uint64(pos)) {
			return
		}
	}
}

// WALEnd is the newest source WAL end position the stream has seen.
func (s *Stream) WALEnd() LSN { return LSN(s.walEnd.Load()) }

// Run connects, starts replication at the resume position and emits events to out until ctx
// ends or the connection fails. The caller restarts it (with a new resume position) on error.
func (s *Stream) Run(ctx context.Context, out chan<- cdc.Event) error {
	conn, err := ConnectReplication(ctx, s.opts.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	args := []string{"proto_version '1'", "publication_names '" + strings.ReplaceAll(s.opts.Publication, "'", "''") + "'", "messages 'true'"}
	if err := pglogrepl.StartReplication(ctx, conn, s.opts.Slot, pglogrepl.LSN(s.opts.Resume), pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return fmt.Errorf("start replication on slot %s: %w", s.opts.Slot, err)
	}
	dec := newDecoder(s.opts.Keys, s.opts.Resume, s.opts.SkipBefore)
	nextStatus := time.Now().Add(s.opts.StatusInterval)

	send := func(ev *cdc.Event) error {
		for {
			select {
			case out <- *ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(nextStatus)):
				// Apply is behind: keep confirming what is durable so the source does not time us out.
				if err := s.sendStatus(ctx, conn, false); err != nil {
					return err
				}
				nextStatus = time.Now().Add(s.opts.StatusInterval)
			}
		}
	}

	// One deadline context per status interval, not one per message: at tens of thousands of
	// messages a second the per-call context was a visible share of the daemon's CPU.
	var recv deadline
	defer recv.stop()
	for {
		if time.Now().After(nextStatus) {
			if err := s.sendStatus(ctx, conn, true); err != nil {
				return err
			}
			nextStatus = time.Now().Add(s.opts.StatusInterval)
		}
		raw, err := conn.ReceiveMessage(recv.until(ctx, nextStatus))
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("receive from source stream: %w", err)
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("source stream: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				s.seeWALEnd(LSN(ka.ServerWALEnd))
				if ka.ReplyRequested {
					nextStatus = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse xlogdata: %w", err)
				}
				s.seeWALEnd(LSN(xld.ServerWALEnd))
				ev, err := dec.decode(xld.WALData, LSN(xld.WALStart))
				if err != nil {
					return err
				}
				if ev != nil {
					if ev.Kind == cdc.EventChange && s.opts.OnChange != nil {
						s.opts.OnChange()
					}
					if err := send(ev); err != nil {
						return err
					}
				}
			}
		}
	}
}

// deadline reuses one context with a deadline until the deadline moves or passes.
type deadline struct {
	ctx    context.Context
	cancel context.CancelFunc
	at     time.Time
}

func (d *deadline) until(parent context.Context, at time.Time) context.Context {
	if d.ctx == nil || !d.at.Equal(at) || d.ctx.Err() != nil {
		d.stop()
		d.ctx, d.cancel = context.WithDeadline(parent, at)
		d.at = at
	}
	return d.ctx
}

func (d *deadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}

func (s *Stream) seeWALEnd(l LSN) {
	for {
		cur := s.walEnd.Load()
		if uint64(l) <= cur || s.walEnd.CompareAndSwap(cur, uint64(l)) {
			return
		}
	}
}

// sendStatus confirms the durable position. The source may then recycle WAL before it.
func (s *Stream) sendStatus(ctx context.Context, conn *pgconn.PgConn, reply bool) error {
	pos := pglogrepl.LSN(s.flushed.Load())
	err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos, ReplyRequested: reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

// SourceStats is what the source reports about the migration's slot.
type SourceStats struct {
	CurrentLSN    LSN
	RetainedBytes int64
}

// Heartbeat emits a heartbeat message into the source WAL, so that the stream moves and lag
// stays true on an idle source, and reads the source position and the slot's retained WAL.
func Heartbeat(ctx context.Context, conn *pgx.Conn, slot string) (SourceStats, error) {
	var st SourceStats
	var cur string
	err := conn.QueryRow(ctx, `SELECT pg_logical_emit_message(false, $1, $2)::text,
	   coalesce((SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $3), 0)`,
		heartbeatPrefix, time.Now().UTC().Format(time.RFC3339Nano), slot).Scan(&cur, &st.RetainedBytes)
	if err != nil {
		return st, fmt.Errorf("emit heartbeat on the source: %w", err)
	}
	st.CurrentLSN, err = ParseLSN(cur)
	return st, err
}
