package snapshot

// A snapshot reconciled with a running change stream, for engines that cannot export a
// consistent snapshot to the copy (MySQL). It follows Netflix's DBLog:
//
//   - For each chunk, a copy worker writes a low watermark into the source, reads the chunk (the
//     next rows in key order) in one short statement, and writes a high watermark.
//   - The stream carries both watermarks in commit order. Between them, the Reconciler notes
//     the keys of every change to the chunk's table.
//   - At the high watermark it drops those keys from the chunk (the stream already applied a
//     state at least as new) and emits the remaining rows as upserts, followed by a progress
//     mark, inside the high watermark's own source transaction.
//
// Every write to the target thus comes from one ordered stream: the chunk lands exactly where
// its rows were read, the target commits it with the stream checkpoint, and a restart resumes
// both from the same transaction. No table is locked and no transaction stays open on the
// source longer than one chunk's SELECT.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/migrated/migrated/internal/cdc"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Source is the engine side of a reconciled snapshot: one worker's session on the source.
type Source interface {
	// Watermark writes mark into the source's watermark table in a transaction of its own, so
	// that the stream carries it as a change to WatermarkTable.
	Watermark(ctx context.Context, mark string) error
	// Read returns up to limit rows of the table that follow cursor in key order (all rows
	// from the start when cursor is nil), one value per Relation column, in one statement,
	// and the cursor of the last row returned (cursor itself when none).
	Read(ctx context.Context, rel *cdc.Relation, cursor []string, limit int) (rows [][]cdc.Value, last []string, err error)
	Close()
}

// Reconciler sits between the stream and apply while a reconciled snapshot runs.
type Reconciler struct {
	// Migration tells this migration's watermarks from others' on a shared source.
	Migration string
	// WatermarkTable is the source table the watermarks are written to. Its rows carry the
	// mark text in the column named "mark".
	WatermarkTable cdc.TableID
	Log            *zap.Logger

	mu     sync.Mutex
	chunks map[string]*chunk
	seq    atomic.Uint64
	// emitted counts positions passed downstream; durable is the highest one applied.
	emitted, durable uint64
	wake             chan struct{}
}

// chunk is one chunk between its low watermark and the moment the target made it durable.
type chunk struct {
	id      string
	rel     *cdc.Relation
	rows    [][]cdc.Value
	mark    cdc.SnapshotMark
	read    bool // rows and mark are set
	open    bool // the low watermark has passed in the stream
	touched map[string]bool
	// emittedAt is the sequence of the position that commits the chunk; 0 until emitted.
	emittedAt uint64
	// retry is set when the stream passed the high watermark without the low one: the worker
	// reads the chunk again between new watermarks.
	retry bool
}

// Position wraps a stream position with the sequence the Reconciler gave it, so Durable can
// tell which chunks a target commit made durable. Its text form is the wrapped position's.
type Position struct {
	cdc.Position
	Seq uint64
}

// Unwrap returns the engine's position under p, or p itself when it is not wrapped.
func Unwrap(p cdc.Position) cdc.Position {
	if w, ok := p.(Position); ok {
		return w.Position
	}
	return p
}

func (r *Reconciler) init() {
	if r.chunks == nil {
		r.chunks = map[string]*chunk{}
		r.wake = make(chan struct{})
	}
}

// broadcast wakes every waiter; the caller holds mu.
func (r *Reconciler) broadcast() {
	close(r.wake)
	r.wake = make(chan struct{})
}

// Filter passes events from in to out, turning this migration's watermarks into chunk rows.
// It may be run again on a new stream after the old one failed: chunks not yet durable are
// emitted again when their watermarks come round again in the replay.
func (r *Reconciler) Filter(ctx context.Context, in <-chan cdc.Event, out chan<- cdc.Event) error {
	r.mu.Lock()
	r.init()
	// A new run replays from the target's checkpoint: what was emitted but not made durable
	// was rolled back, and is emitted again when its high watermark comes round.
	for _, ch := range r.chunks {
		if ch.emittedAt > r.durable {
			ch.emittedAt = 0
		}
	}
	r.mu.Unlock()
	send := func(ev cdc.Event) error {
		select {
		case out <- ev:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		var ev cdc.Event
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok = <-in:
		}
		if !ok {
			return nil
		}
		switch ev.Kind {
		case cdc.EventChange:
			c := ev.Change
			if c.Relation != nil && c.Relation.Table == r.WatermarkTable {
				emit, err := r.watermark(c)
				if err != nil {
					return err
				}
				for _, e := range emit {
					if err := send(e); err != nil {
						return err
					}
				}
				continue
			}
			r.touch(c)
		case cdc.EventCommit, cdc.EventHeartbeat:
			ev.Position = Position{Position: ev.Position, Seq: r.nextSeq()}
		}
		if err := send(ev); err != nil {
			return err
		}
	}
}

func (r *Reconciler) nextSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emitted++
	return r.emitted
}

// touch notes the keys a change writes in every table with an open chunk window.
func (r *Reconciler) touch(c *cdc.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.chunks {
		if !ch.open || ch.emittedAt != 0 {
			continue
		}
		if c.Op == cdc.OpTruncate {
			for _, rel := range c.Truncated {
				if rel.Table == ch.rel.Table {
					// Every row left in the table now came from a change after the low mark.
					ch.touched[truncatedAll] = true
				}
			}
			continue
		}
		if c.Relation == nil || c.Relation.Table != ch.rel.Table {
			continue
		}
		key := c.Relation.KeyColumns()
		if c.New != nil {
			ch.touched[rowKey(c.New, key)] = true
		}
		if c.Old != nil {
			ch.touched[rowKey(c.Old, key)] = true
		}
	}
}

// truncatedAll in a touched set drops every row of the chunk.
const truncatedAll = "\x00truncated"

// watermark handles one watermark row and returns what to emit in its place.
func (r *Reconciler) watermark(c *cdc.Change) ([]cdc.Event, error) {
	if c.New == nil {
		return nil, nil // a cleanup delete
	}
	col := -1
	for i, rc := range c.Relation.Columns {
		if rc.Name == "mark" {
			col = i
		}
	}
	if col < 0 || c.New[col].Kind != cdc.ValueText {
		return nil, fmt.Errorf("snapshot: watermark row without a mark column in %s", r.WatermarkTable)
	}
	migration, id, kind, ok := parseMark(string(c.New[col].Data))
	if !ok || migration != r.Migration {
		return nil, nil // another migration's, or a heartbeat
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := r.chunks[id]
	if ch == nil || (ch.emittedAt != 0 && ch.emittedAt <= r.durable) {
		return nil, nil // from before a restart, or already durable
	}
	switch kind {
	case "low":
		// A replay after a reconnect may see it again: keep the keys noted already.
		ch.open = true
		return nil, nil
	case "high":
		if !ch.open || !ch.read {
			// The low mark was before the stream's resume point and never seen: the keys
			// changed between the marks are unknown, so the worker reads the chunk again.
			ch.retry = true
			r.broadcast()
			return nil, nil
		}
	default:
		return nil, nil
	}
	var out []cdc.Event
	if !ch.touched[truncatedAll] {
		key := ch.rel.KeyColumns()
		for _, row := range ch.rows {
			if ch.touched[rowKey(row, key)] {
				continue
			}
			out = append(out, cdc.Event{Kind: cdc.EventChange, Change: &cdc.Change{Op: cdc.OpInsert, Relation: ch.rel, New: row}})
		}
	}
	mark := ch.mark
	out = append(out, cdc.Event{Kind: cdc.EventChange, Change: &cdc.Change{Op: cdc.OpMark, Relation: ch.rel, Mark: &mark}})
	// The chunk commits with the next position emitted: the high mark's own commit.
	ch.emittedAt = r.emitted + 1
	r.broadcast()
	return out, nil
}

// Durable tells the Reconciler that the target committed up to pos. Call it from apply's
// Durable callback.
func (r *Reconciler) Durable(pos cdc.Position) {
	w, ok := pos.(Position)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	if w.Seq <= r.durable {
		return
	}
	r.durable = w.Seq
	for id, ch := range r.chunks {
		if ch.emittedAt != 0 && ch.emittedAt <= r.durable {
			delete(r.chunks, id)
		}
	}
	r.broadcast()
}

// Copy reads one chunk between two watermarks and waits until the stream has carried it into a
// durable target commit. It returns the chunk's mark.
func (r *Reconciler) Copy(ctx context.Context, src Source, rel *cdc.Relation, prev cdc.SnapshotMark, limit int) (cdc.SnapshotMark, error) {
	id := strconv.FormatUint(r.seq.Add(1), 36) + "." + strconv.FormatUint(uint64(chunkNonce()), 36)
	ch := &chunk{id: id, rel: rel, touched: map[string]bool{}}
	r.mu.Lock()
	r.init()
	r.chunks[id] = ch
	r.mu.Unlock()
	forget := func() {
		r.mu.Lock()
		delete(r.chunks, id)
		r.mu.Unlock()
	}
	if err := src.Watermark(ctx, formatMark(r.Migration, id, "low")); err != nil {
		forget()
		return prev, err
	}
	rows, last, err := src.Read(ctx, rel, prev.Cursor, limit)
	if err != nil {
		forget()
		return prev, err
	}
	mark := cdc.SnapshotMark{Cursor: last, Rows: prev.Rows + int64(len(rows)), Done: len(rows) < limit}
	r.mu.Lock()
	ch.rows, ch.mark, ch.read = rows, mark, true
	r.mu.Unlock()
	if err := src.Watermark(ctx, formatMark(r.Migration, id, "high")); err != nil {
		forget()
		return prev, err
	}
	for {
		r.mu.Lock()
		wake := r.wake
		_, pending := r.chunks[id]
		retry := ch.retry
		r.mu.Unlock()
		if retry {
			forget()
			return r.Copy(ctx, src, rel, prev, limit)
		}
		if !pending {
			return mark, nil
		}
		select {
		case <-ctx.Done():
			forget()
			return prev, ctx.Err()
		case <-wake:
		}
	}
}

// Table is one table of a reconciled snapshot.
type Table struct {
	Relation *cdc.Relation
	// From is where a previous run left off (zero for a fresh table); a Done table is skipped.
	From cdc.SnapshotMark
}

// CopyTables copies tables with up to workers parallel sessions, one table per session at a
// time, chunk after chunk in key order. progress is called after each durable chunk.
func (r *Reconciler) CopyTables(ctx context.Context, tables []Table, workers, chunkRows int, open func(ctx context.Context) (Source, error), progress func(rel *cdc.Relation, m cdc.SnapshotMark)) error {
	work := make(chan Table)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		for _, t := range tables {
			if t.From.Done {
				continue
			}
			select {
			case work <- t:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for range max(1, workers) {
		g.Go(func() error {
			var src Source
			defer func() {
				if src != nil {
					src.Close()
				}
			}()
			for t := range work {
				if src == nil {
					var err error
					if src, err = open(ctx); err != nil {
						return err
					}
				}
				mark := t.From
				for !mark.Done {
					next, err := r.Copy(ctx, src, t.Relation, mark, chunkRows)
					if err != nil {
						return fmt.Errorf("copy %s after key %v: %w", t.Relation.Table, mark.Cursor, err)
					}
					mark = next
					if progress != nil {
						progress(t.Relation, mark)
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// rowKey encodes the key columns of a row so that equal keys give equal strings.
func rowKey(row []cdc.Value, key []int) string {
	var b []byte
	for _, k := range key {
		if k >= len(row) {
			continue
		}
		v := row[k]
		b = append(b, byte(v.Kind))
		b = binary.AppendUvarint(b, uint64(len(v.Data)))
		b = append(b, v.Data...)
	}
	return string(b)
}

// Marks are "<migration>|<chunk id>|low" or "...|high"; migration names cannot contain '|'.
func formatMark(migration, id, kind string) string { return migration + "|" + id + "|" + kind }

func parseMark(s string) (migration, id, kind string, ok bool) {
	parts := strings.Split(s, "|")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

var nonce atomic.Uint32

// chunkNonce makes chunk ids from different runs of the same migration differ, so a replayed
// watermark from a previous process never matches a chunk of this one.
func chunkNonce() uint32 {
	if n := nonce.Load(); n != 0 {
		return n
	}
	nonce.CompareAndSwap(0, rand.Uint32()|1)
	return nonce.Load()
}
