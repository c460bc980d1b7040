package snapshot

// A snapshot reconciled with a running change stream, for engines that cannot export a
// consistent snapshot to the copy (MySQL). It follows Netflix's DBLog:
//
//   - For each chunk, a copy worker writes a low watermark into the source, reads the chunk (the
//     next rows in key order) in one short statement, and writes a high watermark.
//   - The stream carries both watermarks in commit order. Between them, the Reconciler notes
//     the keys of every change to the chunk's table.
//   - At the high watermark it drops those keys from the chunk (the stream already carries a
//     state at least as new), and hands the remaining rows back to the worker, which writes them
//     with the chunk's progress mark in one transaction on its own target session.
//
// The chunks are thus written beside the stream, on as many target sessions as there are
// workers, and the stream goes on while they are written. Three rules keep the target equal
// to the source (the argument is in docs/design-notes.md, "Snapshot chunks written beside the
// stream"):
//
//  1. A chunk leaves out every key the stream changed between its watermarks (as DBLog does),
//     and also every key of a change that the target has not made durable yet (recent): the
//     stream writes those rows itself, with an image at least as new as the one read, and no
//     open stream transaction ever holds a lock the chunk's write waits for.
//  2. From its high watermark until its transaction commits, a chunk holds back the stream:
//     the Filter passes no change to a key the chunk writes (nor a truncate of its table)
//     before the commit, so every later change lands on top of the chunk's rows.
//  3. The chunk's mark commits with its rows; the stream's checkpoint is its own. A restart
//     re-copies every chunk whose mark is missing, between new watermarks, and replays the
//     stream from its checkpoint; every write is idempotent and carries a whole row, so each
//     key ends with the last image written to it, which is the source's.
//
// No table is locked and no transaction stays open on the source longer than one chunk's
// SELECT. The target tables must have no unique key but the row key while the copy runs (the
// other keys come after it), so that rows written in another order than the source's cannot
// meet.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/migrated/migrated/internal/apply"
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

// Target opens one worker's session on the target, where it writes its chunks, and returns it
// with the function that closes it. A chunk is one transaction of inserts (applied as
// upserts) and an OpMark, committed with a nil position: it does not move the stream's
// checkpoint.
type Target func(ctx context.Context) (apply.Writer, func(), error)

// ErrNotTracking means CopyTables ran without Track before the stream started.
var ErrNotTracking = errors.New("snapshot: the reconciler does not track the stream's changes; call Track before the stream starts")

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
	// tracking is set while a copy may run: the Filter then notes in recent the keys of the
	// changes it passed that the target has not made durable yet, by table, with the
	// sequence of the position that commits them; recentLog holds the same in sequence order,
	// to forget them as they become durable.
	tracking  bool
	recent    map[cdc.TableID]map[string]uint64
	recentLog []recentKey
}

type recentKey struct {
	table cdc.TableID
	key   string
	seq   uint64
}

// chunk is one chunk between its low watermark and the commit of its rows on the target.
type chunk struct {
	id   string
	rel  *cdc.Relation
	rows [][]cdc.Value
	keys []string // rowKey of each row
	mark cdc.SnapshotMark
	read bool // rows, keys and mark are set
	open bool // the low watermark has passed in the stream
	// touched holds the keys the stream changed since the low watermark.
	touched map[string]bool
	// handed is set at the high watermark: write holds the rows the worker writes, and held
	// their keys, which the stream's changes wait on until the chunk is forgotten.
	handed bool
	write  [][]cdc.Value
	held   map[string]bool
	// retry is set when the stream passed the high watermark without the low one: the worker
	// reads the chunk again between new watermarks.
	retry bool
}

// Position wraps a stream position with the sequence the Reconciler gave it, so Durable can
// tell which changes a target commit made durable. Its text form is the wrapped position's.
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

// Track makes the Filter note the keys of the changes the target has not made durable yet,
// which a chunk leaves out (rule 1). Call it before the stream starts when a copy will run,
// so that no change passes unnoted; CopyTables stops it when every table is copied.
func (r *Reconciler) Track() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	r.tracking = true
	if r.recent == nil {
		r.recent = map[cdc.TableID]map[string]uint64{}
	}
}

// Filter passes events from in to out, turning this migration's watermarks into chunks handed
// to the copy workers, and holding back changes to rows a chunk is writing. It may be run
// again on a new stream after the old one failed: a chunk keeps the keys it noted, and one
// whose high watermark passed is written whatever the stream does.
func (r *Reconciler) Filter(ctx context.Context, in <-chan cdc.Event, out chan<- cdc.Event) error {
	r.mu.Lock()
	r.init()
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
				if err := r.watermark(c); err != nil {
					return err
				}
				continue
			}
			if err := r.holdBack(ctx, c); err != nil {
				return err
			}
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

// holdBack waits until no chunk being written holds a key the change writes (rule 2), then
// notes the change's keys in the open chunks of its table and, while tracking, in recent.
func (r *Reconciler) holdBack(ctx context.Context, c *cdc.Change) error {
	r.mu.Lock()
	idle := len(r.chunks) == 0 && !r.tracking
	r.mu.Unlock()
	if idle {
		return nil // streaming after the copy: nothing to note or wait for
	}
	var keys []string
	truncates := c.Op == cdc.OpTruncate
	if !truncates && c.Relation != nil {
		key := c.Relation.KeyColumns()
		for _, row := range [][]cdc.Value{c.New, c.Old} {
			if row != nil {
				keys = append(keys, rowKey(row, key))
			}
		}
	}
	for {
		r.mu.Lock()
		held, wake := r.heldBy(c, keys), r.wake
		if !held {
			r.touch(c, keys)
			r.mu.Unlock()
			return nil
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// heldBy reports whether a chunk being written holds a key of the change; the caller holds mu.
func (r *Reconciler) heldBy(c *cdc.Change, keys []string) bool {
	for _, ch := range r.chunks {
		if !ch.handed {
			continue
		}
		if c.Op == cdc.OpTruncate {
			for _, rel := range c.Truncated {
				if rel.Table == ch.rel.Table {
					return true
				}
			}
			continue
		}
		if c.Relation == nil || c.Relation.Table != ch.rel.Table {
			continue
		}
		for _, k := range keys {
			if ch.held[k] {
				return true
			}
		}
	}
	return false
}

// touch notes the keys a change writes in every table with an open chunk window, and in
// recent while tracking; the caller holds mu.
func (r *Reconciler) touch(c *cdc.Change, keys []string) {
	var tables []cdc.TableID
	if c.Op == cdc.OpTruncate {
		// Every row left in the table after it came from a later change.
		keys = []string{truncatedAll}
		for _, rel := range c.Truncated {
			tables = append(tables, rel.Table)
		}
	} else if c.Relation != nil {
		tables = append(tables, c.Relation.Table)
	}
	for _, t := range tables {
		for _, ch := range r.chunks {
			if ch.open && !ch.handed && ch.rel.Table == t {
				for _, k := range keys {
					ch.touched[k] = true
				}
			}
		}
		if !r.tracking {
			continue
		}
		// The change commits with the next position the Filter emits.
		seq := r.emitted + 1
		m := r.recent[t]
		if m == nil {
			m = map[string]uint64{}
			r.recent[t] = m
		}
		for _, k := range keys {
			m[k] = seq
			r.recentLog = append(r.recentLog, recentKey{table: t, key: k, seq: seq})
		}
	}
}

// truncatedAll in a touched or recent set drops every row of the chunk.
const truncatedAll = "\x00truncated"

// watermark handles one watermark row.
func (r *Reconciler) watermark(c *cdc.Change) error {
	if c.New == nil {
		return nil // a cleanup delete
	}
	col := -1
	for i, rc := range c.Relation.Columns {
		if rc.Name == "mark" {
			col = i
		}
	}
	if col < 0 || c.New[col].Kind != cdc.ValueText {
		return fmt.Errorf("snapshot: watermark row without a mark column in %s", r.WatermarkTable)
	}
	migration, id, kind, ok := parseMark(string(c.New[col].Data))
	if !ok || migration != r.Migration {
		return nil // another migration's, or a heartbeat
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := r.chunks[id]
	if ch == nil || ch.handed {
		return nil // from before a restart, or a replay of one being written
	}
	switch kind {
	case "low":
		// A replay after a reconnect may see it again: keep the keys noted already.
		ch.open = true
	case "high":
		if !ch.open || !ch.read {
			// The low mark was before the stream's resume point and never seen: the keys
			// changed between the marks are unknown, so the worker reads the chunk again.
			ch.retry = true
			r.broadcast()
			return nil
		}
		r.handOff(ch)
	}
	return nil
}

// handOff picks the rows the worker writes (rule 1) and starts holding the stream back on
// them (rule 2); the caller holds mu.
func (r *Reconciler) handOff(ch *chunk) {
	recent := r.recent[ch.rel.Table]
	ch.held = make(map[string]bool, len(ch.rows))
	if !ch.touched[truncatedAll] && recent[truncatedAll] == 0 {
		for i, row := range ch.rows {
			k := ch.keys[i]
			if ch.touched[k] || recent[k] != 0 {
				continue
			}
			ch.write = append(ch.write, row)
			ch.held[k] = true
		}
	}
	ch.rows, ch.keys, ch.touched = nil, nil, nil
	ch.handed = true
	r.broadcast()
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
	n := 0
	for _, rk := range r.recentLog {
		if rk.seq > r.durable {
			break
		}
		n++
		// A key changed again later keeps its newer entry.
		if m := r.recent[rk.table]; m[rk.key] == rk.seq {
			delete(m, rk.key)
		}
	}
	r.recentLog = append(r.recentLog[:0], r.recentLog[n:]...)
}

// forget drops a chunk, letting the stream's changes it held back go on.
func (r *Reconciler) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.chunks, id)
	r.broadcast()
}

// readChunk reads the chunk after prev between two watermarks and waits for the stream to
// pass the high one, reading again when the stream missed the low one. It returns the chunk
// handed off: the caller writes it, or forgets it.
func (r *Reconciler) readChunk(ctx context.Context, src Source, rel *cdc.Relation, prev cdc.SnapshotMark, limit int) (*chunk, error) {
	for {
		id := strconv.FormatUint(r.seq.Add(1), 36) + "." + strconv.FormatUint(uint64(chunkNonce()), 36)
		ch := &chunk{id: id, rel: rel, touched: map[string]bool{}}
		r.mu.Lock()
		r.init()
		r.chunks[id] = ch
		r.mu.Unlock()
		if err := src.Watermark(ctx, formatMark(r.Migration, id, "low")); err != nil {
			r.forget(id)
			return nil, err
		}
		rows, last, err := src.Read(ctx, rel, prev.Cursor, limit)
		if err != nil {
			r.forget(id)
			return nil, err
		}
		key := rel.KeyColumns()
		keys := make([]string, len(rows))
		for i, row := range rows {
			keys[i] = rowKey(row, key)
		}
		mark := cdc.SnapshotMark{Cursor: last, Rows: prev.Rows + int64(len(rows)), Done: len(rows) < limit}
		r.mu.Lock()
		ch.rows, ch.keys, ch.mark, ch.read = rows, keys, mark, true
		r.mu.Unlock()
		if err := src.Watermark(ctx, formatMark(r.Migration, id, "high")); err != nil {
			r.forget(id)
			return nil, err
		}
		handed, err := r.awaitHandOff(ctx, ch)
		if err != nil {
			r.forget(id)
			return nil, err
		}
		if handed {
			return ch, nil
		}
		r.forget(id)
	}
}

// awaitHandOff waits until the stream passes the chunk's high watermark: true when the rows
// were handed back, false when the chunk must be read again.
func (r *Reconciler) awaitHandOff(ctx context.Context, ch *chunk) (bool, error) {
	for {
		r.mu.Lock()
		wake, handed, retry := r.wake, ch.handed, ch.retry
		r.mu.Unlock()
		switch {
		case handed:
			return true, nil
		case retry:
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-wake:
		}
	}
}

// writeChunk writes a handed-off chunk's rows and its mark in one target transaction: a
// transaction of fresh rows if asked for and the target has them (see apply.FreshWriter).
func writeChunk(ctx context.Context, dst apply.Writer, ch *chunk, fresh bool) error {
	begin := dst.Begin
	if fw, ok := dst.(apply.FreshWriter); ok && fresh {
		begin = fw.BeginFresh
	}
	txn, err := begin(ctx)
	if err != nil {
		return err
	}
	for _, row := range ch.write {
		if err := txn.Add(ctx, &cdc.Change{Op: cdc.OpInsert, Relation: ch.rel, New: row}); err != nil {
			txn.Rollback(context.WithoutCancel(ctx))
			return err
		}
	}
	mark := ch.mark
	if err := txn.Add(ctx, &cdc.Change{Op: cdc.OpMark, Relation: ch.rel, Mark: &mark}); err != nil {
		txn.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := txn.Commit(ctx, nil, time.Time{}); err != nil {
		txn.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// Table is one table of a reconciled snapshot.
type Table struct {
	Relation *cdc.Relation
	// From is where a previous run left off (zero for a fresh table); a Done table is skipped.
	From cdc.SnapshotMark
}

// CopyTables copies tables with up to workers parallel workers, each with a session on the
// source and one on the target, one table per worker at a time, chunk after chunk in key
// order. A worker reads its next chunk while the one before is written; its chunks commit in
// order, so a table's mark never passes rows not yet written. progress is called after each
// committed chunk. Track must have been called before the stream started.
func (r *Reconciler) CopyTables(ctx context.Context, tables []Table, workers, chunkRows int, open func(ctx context.Context) (Source, error), target Target, progress func(rel *cdc.Relation, m cdc.SnapshotMark)) error {
	r.mu.Lock()
	tracking := r.tracking
	r.mu.Unlock()
	if !tracking {
		return ErrNotTracking
	}
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
			w := &worker{r: r, progress: progress, closeDst: func() {}}
			defer w.close()
			for t := range work {
				if w.src == nil {
					var err error
					if w.src, err = open(ctx); err != nil {
						return err
					}
					dst, closeDst, err := target(ctx)
					if err != nil {
						return err
					}
					w.dst, w.closeDst = dst, sync.OnceFunc(closeDst)
				}
				mark := t.From
				for !mark.Done {
					ch, err := r.readChunk(ctx, w.src, t.Relation, mark, chunkRows)
					if err != nil {
						return fmt.Errorf("copy %s after key %v: %w", t.Relation.Table, mark.Cursor, err)
					}
					if err := w.write(ctx, ch); err != nil {
						r.forget(ch.id)
						return err
					}
					mark = ch.mark
				}
			}
			return w.wait()
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	r.mu.Lock()
	r.tracking = false
	r.recent, r.recentLog = nil, nil
	r.mu.Unlock()
	return nil
}

// worker is one copy worker's sessions, and the chunk it is writing while it reads the next.
type worker struct {
	r        *Reconciler
	src      Source
	dst      apply.Writer
	closeDst func()
	progress func(rel *cdc.Relation, m cdc.SnapshotMark)
	// writing is the chunk being written, done receives the outcome.
	writing *chunk
	done    chan error
	// held holds the tables where the target already held a row of a chunk, whose chunks are
	// written as upserts from then on. Only the chunk writer touches it, one chunk at a time.
	held map[cdc.TableID]bool
}

// write starts writing ch on the target session, once the chunk before it has committed.
// The chunk lets go of the stream's changes it held back as soon as it is written, not when
// the worker next looks: the worker may be waiting for the stream to pass its next chunk's
// high watermark, behind those very changes.
func (w *worker) write(ctx context.Context, ch *chunk) error {
	if err := w.wait(); err != nil {
		return err
	}
	w.writing, w.done = ch, make(chan error, 1)
	go func() {
		// A chunk's rows go in as fresh rows, cheaper than upserts, until the target turns out
		// to hold one already (a row the stream wrote before its chunk was read). That
		// transaction failed whole, before its commit, so the chunk is written again.
		fresh := !w.held[ch.rel.Table]
		err := writeChunk(ctx, w.dst, ch, fresh)
		if fresh && errors.Is(err, apply.ErrHeld) {
			if w.held == nil {
				w.held = map[cdc.TableID]bool{}
			}
			w.held[ch.rel.Table] = true
			err = writeChunk(ctx, w.dst, ch, false)
		}
		if err != nil {
			// A commit cut short may still land until the session is gone: only then may
			// the stream's changes to the chunk's rows go on.
			w.closeDst()
		}
		w.r.forget(ch.id)
		w.done <- err
	}()
	return nil
}

// wait waits for the chunk being written, if any, and reports its progress.
func (w *worker) wait() error {
	ch := w.writing
	if ch == nil {
		return nil
	}
	err := <-w.done
	w.writing = nil
	if err != nil {
		return fmt.Errorf("write %s up to key %v: %w", ch.rel.Table, ch.mark.Cursor, err)
	}
	if w.progress != nil {
		w.progress(ch.rel, ch.mark)
	}
	return nil
}

// close waits for the chunk being written and closes the sessions.
func (w *worker) close() {
	_ = w.wait() // the error, if any, ended the copy already or is one of its consequences
	if w.src != nil {
		w.src.Close()
	}
	w.closeDst()
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
