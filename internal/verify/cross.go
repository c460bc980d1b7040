package verify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

const (
	defaultCrossChunkRows  = 1000
	defaultCrossRechecks   = 3
	defaultCrossMaxSamples = 100
	defaultCrossWorkers    = 2
)

// CrossSource is the source database of a Cross run, read in its own engine's text form (MySQL's
// canonical form, PostgreSQL's text output). A key is the values of the table's Key columns, in
// that order. The methods may be called concurrently, for different tables.
type CrossSource interface {
	// Rows returns up to limit rows of t whose keys come after `after` (all rows when it is nil)
	// in t's key order, each as the values of t.CopyColumns().
	Rows(ctx context.Context, t *schema.Table, after []string, limit int) ([][]cdc.Value, error)
	// Lookup returns the rows of t that have the keys, as Rows does, aligned with keys: nil
	// where t has no row with that key.
	Lookup(ctx context.Context, t *schema.Table, keys [][]string) ([][]cdc.Value, error)
	// Exists reports, aligned with keys, whether t has a row with each key.
	Exists(ctx context.Context, t *schema.Table, keys [][]string) ([]bool, error)
}

// CrossLocker is a CrossSource that can hold rows still while they are compared.
type CrossLocker interface {
	// LockRows reads rows as Lookup does, in a transaction that keeps them from changing until
	// release is called.
	LockRows(ctx context.Context, t *schema.Table, keys [][]string) (rows [][]cdc.Value, release func(), err error)
}

// CrossTarget is the target database of a Cross run. The methods may be called concurrently,
// for different tables.
type CrossTarget interface {
	// Compare checks rows, each the values of t.CopyColumns() in the target's input form (what
	// the migration writes), against the rows of t with the same keys, with the engine's own
	// comparison of its types. It returns the rows that differ, by their index in rows, each with
	// the name of the first column that differs, or "" when t has no row with that key.
	Compare(ctx context.Context, t *schema.Table, rows [][]cdc.Value) (map[int]string, error)
	// Keys returns up to limit keys of t that come after `after` (from the first when it is nil)
	// in t's key order, in the target's text form.
	Keys(ctx context.Context, t *schema.Table, after []string, limit int) ([][]string, error)
	// Exists reports, aligned with keys (in the target's text form), whether t has a row with
	// each key.
	Exists(ctx context.Context, t *schema.Table, keys [][]string) ([]bool, error)
}

// Cross verifies a migration with MySQL on either side, or both, while its stream runs. Fill in
// the fields, then call Run.
//
// The chunk hashes of the PostgreSQL verify do not carry across engines: the engines print the
// same value differently and order string keys by different collations, so neither key ranges
// nor sums line up. Cross reads the source in its own key order instead, converts each row into
// the target's input form with the migration's own converter, and has the target compare the
// converted rows with its rows of the same keys, typed, on the server. A second pass reads the
// target's keys in the target's own order and asks the source which of them it lacks. Only the
// equality of keys is ever needed, never their order across engines.
//
// A key that differs may only be in flight in the stream. Differing keys are gathered and
// compared again, each time after reading the source and then waiting for the target to apply
// what the source had committed by then; a key is reported once it still differs after Rechecks
// such rounds. A row can change faster than the stream settles (a hot counter): when the source
// is a CrossLocker, the last round reads the rows under a lock held until the target has caught
// up and the rows are compared, so a writer of those rows waits that long, and what is reported
// then differs for sure.
type Cross struct {
	Source CrossSource
	Target CrossTarget
	// Convert turns a source row (the values of CopyColumns of t, the source table) into the
	// target's input form, exactly as the migration does before writing it. It returns a new
	// slice and is called concurrently. nil means the identity (the same engine on both sides).
	Convert func(t *schema.Table, row []cdc.Value) ([]cdc.Value, error)
	// KeyToSource turns a key read from the target, in the target's text form and ordered as
	// t.Key (t is the source table), into the source's form, for asking the source whether it
	// has that row. nil means the identity.
	KeyToSource func(t *schema.Table, key []string) ([]string, error)
	// WaitCaughtUp returns once the target has applied everything that the source had committed
	// when it was called (or fails, which ends the run). Required.
	WaitCaughtUp func(ctx context.Context) error
	// ChunkRows is the number of rows read and compared at once. Default 1000.
	ChunkRows int
	// Rechecks is how many times a differing key is compared again, each after WaitCaughtUp,
	// before it is reported. Default 3.
	Rechecks int
	// MaxSamples is how many mismatches are kept per table; all are counted. Default 100.
	MaxSamples int
	// Workers is how many tables are verified at once. Default 2.
	Workers int
	// Progress, if set, is called after each chunk, and when a table is done, with the table's
	// result so far, from one goroutine at a time. It must not keep the Mismatches slice.
	Progress func(t CrossTableResult)
	// Log may be nil.
	Log *zap.Logger
}

// CrossTable is a migrated table: its catalog on the source and on the target.
type CrossTable struct {
	Source, Target *schema.Table
}

// CrossResult is the outcome of a Cross run.
type CrossResult struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Clean is true when every table was verified and no row differs.
	Clean  bool               `json:"clean"`
	Tables []CrossTableResult `json:"tables"`
	// Error says why the run stopped.
	Error string `json:"error,omitempty"`
}

// CrossTableResult is what a Cross run found in one table.
type CrossTableResult struct {
	Table string `json:"table"` // the source table
	// Rows is the number of source rows compared; TargetRows the number of target keys looked
	// up on the source.
	Rows       int64 `json:"rows"`
	TargetRows int64 `json:"target_rows"`
	// Chunks counts the chunks of both passes; MismatchedChunks those with a reported row.
	Chunks           int64 `json:"chunks"`
	MismatchedChunks int64 `json:"mismatched_chunks"`
	Missing          int64 `json:"missing"`
	Extra            int64 `json:"extra"`
	Different        int64 `json:"different"`
	Done             bool  `json:"done"`
	// Mismatches are the first Cross.MaxSamples rows reported.
	Mismatches []CrossMismatch `json:"mismatches"`
}

// CrossMismatch is a row reported by a Cross run. Its Key is in the source's form, with values
// that are not printable text (binary keys) written as \x and their bytes in hex.
type CrossMismatch struct {
	Mismatch
	// Column is the first column that differs, for KindDifferent.
	Column string `json:"column,omitempty"`
}

// Mismatched returns the number of rows reported.
func (t CrossTableResult) Mismatched() int64 { return t.Missing + t.Extra + t.Different }

// Summary returns the run in the form of a verify.Result, for the status and the state the
// PostgreSQL verify keeps: Chunks and Mismatched count chunks, and Samples holds up to 5
// mismatches per table.
func (r CrossResult) Summary() Result {
	res := Result{StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Tables: len(r.Tables), Clean: r.Clean, Error: r.Error,
		Samples: []Mismatch{}}
	for _, t := range r.Tables {
		if t.Done {
			res.TablesDone++
		}
		res.Chunks += t.Chunks
		res.Mismatched += t.MismatchedChunks
		for _, m := range t.Mismatches[:min(len(t.Mismatches), maxSamples)] {
			res.Samples = append(res.Samples, m.Mismatch)
		}
	}
	return res
}

// Run verifies the tables and returns what it found. Stopped by ctx or failing, it returns the
// result so far with the error; nothing is kept, and a new Run starts again.
func (c *Cross) Run(ctx context.Context, tables []CrossTable) (CrossResult, error) {
	if c.Source == nil || c.Target == nil || c.WaitCaughtUp == nil {
		return CrossResult{}, errors.New("verify: Cross.Source, Target and WaitCaughtUp are required")
	}
	o := *c
	if o.ChunkRows <= 0 {
		o.ChunkRows = defaultCrossChunkRows
	}
	if o.Rechecks <= 0 {
		o.Rechecks = defaultCrossRechecks
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = defaultCrossMaxSamples
	}
	if o.Workers <= 0 {
		o.Workers = defaultCrossWorkers
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	o.Log = o.Log.Named("verify")
	plans := make([]*crossPlan, len(tables))
	for i, t := range tables {
		p, err := newCrossPlan(t)
		if err != nil {
			return CrossResult{}, err
		}
		plans[i] = p
	}

	res := CrossResult{StartedAt: time.Now(), Tables: make([]CrossTableResult, len(plans))}
	var progressMu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Workers)
	for i, p := range plans {
		res.Tables[i] = CrossTableResult{Table: p.name, Mismatches: []CrossMismatch{}}
		r := &crossRun{c: &o, p: p, out: &res.Tables[i], progressMu: &progressMu,
			log: o.Log.With(zap.String("table", p.name)), chunks: map[int64]bool{}}
		g.Go(func() error { return r.run(gctx) })
	}
	err := g.Wait()
	res.FinishedAt = time.Now()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("verify stopped: %w", ctx.Err())
		}
		res.Error = err.Error()
		return res, err
	}
	res.Clean = true
	for _, t := range res.Tables {
		if t.Mismatched() > 0 {
			res.Clean = false
		}
	}
	o.Log.Info("verify run finished", zap.Bool("clean", res.Clean), zap.Int("tables", len(res.Tables)))
	return res, nil
}

// crossPlan is how the columns and keys of a table line up on the two sides.
type crossPlan struct {
	src, dst *schema.Table
	name     string
	srcCols  int
	srcKey   []int // the positions of src.Key in src.CopyColumns()
	dstKey   []int // the positions of dst.Key in dst.CopyColumns()
	fromSrc  []int // for each of dst.CopyColumns(), its position in src.CopyColumns()
	keyToSrc []int // for each of src.Key, its position in dst.Key
}

func newCrossPlan(t CrossTable) (*crossPlan, error) {
	if t.Source == nil || t.Target == nil {
		return nil, errors.New("verify: a CrossTable needs both its Source and its Target")
	}
	p := &crossPlan{src: t.Source, dst: t.Target, name: t.Source.ID.String()}
	fail := func(format string, args ...any) (*crossPlan, error) {
		return nil, fmt.Errorf("verify %s: "+format, append([]any{p.name}, args...)...)
	}
	if len(p.src.Key) == 0 {
		return fail("the table has no primary key or unique key to read it by; add one, or leave the table out")
	}
	srcCols, dstCols := p.src.CopyColumns(), p.dst.CopyColumns()
	p.srcCols = len(srcCols)
	srcAt := map[string]int{}
	for i, c := range srcCols {
		srcAt[c] = i
	}
	for _, c := range dstCols {
		i, ok := srcAt[c]
		if !ok {
			return fail("the target table %s has a column %s that the source table lacks; the schemas differ, so compare them by hand", p.dst.ID, c)
		}
		p.fromSrc = append(p.fromSrc, i)
	}
	if len(dstCols) != len(srcCols) {
		for _, c := range srcCols {
			if !slices.Contains(dstCols, c) {
				return fail("column %s is missing from the target table %s; the schemas differ, so compare them by hand", c, p.dst.ID)
			}
		}
	}
	if len(p.dst.Key) != len(p.src.Key) {
		return fail("the target table %s is keyed by (%s), the source by (%s); give both the same key", p.dst.ID, strings.Join(p.dst.Key, ", "), strings.Join(p.src.Key, ", "))
	}
	for _, k := range p.src.Key {
		i, ok := srcAt[k]
		j := slices.Index(p.dst.Key, k)
		if !ok || j < 0 {
			return fail("key column %s is generated, or not in the key of the target table %s; give both the same key", k, p.dst.ID)
		}
		p.srcKey, p.keyToSrc = append(p.srcKey, i), append(p.keyToSrc, j)
	}
	for _, k := range p.dst.Key {
		p.dstKey = append(p.dstKey, slices.Index(dstCols, k))
	}
	return p, nil
}

// keyOf returns the values at the positions pos of row.
func keyOf(row []cdc.Value, pos []int) []string {
	key := make([]string, len(pos))
	for i, j := range pos {
		key[i] = string(row[j].Data)
	}
	return key
}

// crossEntry is a key that differed, and how, the last time it was compared.
type crossEntry struct {
	src, dst []string // its key on each side
	kind     string
	column   string
	chunk    int64 // the chunk it was found in
}

// crossRun is one table's part of a Cross run; its goroutine alone uses it.
type crossRun struct {
	c          *Cross
	p          *crossPlan
	out        *CrossTableResult
	progressMu *sync.Mutex
	log        *zap.Logger
	pending    []*crossEntry
	chunks     map[int64]bool // the chunks with a reported row
}

func (r *crossRun) run(ctx context.Context) error {
	r.log.Debug("verifying table")
	if err := r.sourcePass(ctx); err != nil {
		return fmt.Errorf("verify %s: %w", r.p.name, err)
	}
	if err := r.targetPass(ctx); err != nil {
		return fmt.Errorf("verify %s: %w", r.p.name, err)
	}
	r.out.Done = true
	r.progress()
	r.log.Info("verified table", zap.Int64("rows", r.out.Rows), zap.Int64("missing", r.out.Missing),
		zap.Int64("extra", r.out.Extra), zap.Int64("different", r.out.Different))
	return nil
}

// sourcePass compares every source row with the target row of its key.
func (r *crossRun) sourcePass(ctx context.Context) error {
	n := r.c.ChunkRows
	var after []string
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, err := r.c.Source.Rows(ctx, r.p.src, after, n)
		if err != nil {
			return fmt.Errorf("read the source after key %s: %w", startKey(after), err)
		}
		if len(rows) == 0 {
			break
		}
		r.out.Chunks++
		conv, err := r.convert(rows)
		if err != nil {
			return err
		}
		diffs, err := r.c.Target.Compare(ctx, r.p.dst, conv)
		if err != nil {
			return fmt.Errorf("compare the rows after key %s with the target: %w", startKey(after), err)
		}
		for _, i := range sortedKeys(diffs) {
			r.pending = append(r.pending, &crossEntry{src: keyOf(rows[i], r.p.srcKey), dst: keyOf(conv[i], r.p.dstKey),
				kind: kindOf(diffs[i]), column: diffs[i], chunk: r.out.Chunks})
		}
		r.out.Rows += int64(len(rows))
		r.progress()
		after = keyOf(rows[len(rows)-1], r.p.srcKey)
		if len(r.pending) >= n {
			if err := r.settle(ctx); err != nil {
				return err
			}
		}
		if len(rows) < n {
			break
		}
	}
	return r.settle(ctx)
}

// targetPass looks for target rows whose keys the source lacks.
func (r *crossRun) targetPass(ctx context.Context) error {
	n := r.c.ChunkRows
	var after []string
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		keys, err := r.c.Target.Keys(ctx, r.p.dst, after, n)
		if err != nil {
			return fmt.Errorf("read the target's keys after %s: %w", startKey(after), err)
		}
		if len(keys) == 0 {
			break
		}
		r.out.Chunks++
		src := make([][]string, len(keys))
		for i, k := range keys {
			if src[i], err = r.toSource(k); err != nil {
				return err
			}
		}
		ok, err := r.c.Source.Exists(ctx, r.p.src, src)
		if err != nil {
			return fmt.Errorf("look up the target's keys after %s on the source: %w", startKey(after), err)
		}
		for i := range keys {
			if !ok[i] {
				r.pending = append(r.pending, &crossEntry{src: src[i], dst: keys[i], kind: KindExtra, chunk: r.out.Chunks})
			}
		}
		r.out.TargetRows += int64(len(keys))
		after = keys[len(keys)-1]
		if len(r.pending) >= n {
			if err := r.settle(ctx); err != nil {
				return err
			}
		}
		if len(keys) < n {
			break
		}
	}
	return r.settle(ctx)
}

// convert turns source rows into the target's input form, in the order of the target's columns.
func (r *crossRun) convert(rows [][]cdc.Value) ([][]cdc.Value, error) {
	out := make([][]cdc.Value, len(rows))
	for i, row := range rows {
		v := row
		if r.c.Convert != nil {
			var err error
			if v, err = r.c.Convert(r.p.src, row); err != nil {
				return nil, fmt.Errorf("convert the source row %s into the target's form: %w", formatCrossKey(keyOf(row, r.p.srcKey)), err)
			}
		}
		if len(v) != r.p.srcCols {
			return nil, fmt.Errorf("the source row %s has %d values for %d columns", formatCrossKey(keyOf(row, r.p.srcKey)), len(v), r.p.srcCols)
		}
		d := make([]cdc.Value, len(r.p.fromSrc))
		for j, k := range r.p.fromSrc {
			d[j] = v[k]
		}
		out[i] = d
	}
	return out, nil
}

// toSource turns a target key into the source's key.
func (r *crossRun) toSource(dst []string) ([]string, error) {
	key := make([]string, len(r.p.keyToSrc))
	for i, j := range r.p.keyToSrc {
		key[i] = dst[j]
	}
	if r.c.KeyToSource == nil {
		return key, nil
	}
	src, err := r.c.KeyToSource(r.p.src, key)
	if err != nil {
		return nil, fmt.Errorf("turn the target key %s into the source's form: %w", formatCrossKey(key), err)
	}
	return src, nil
}

// settle compares the pending keys again, up to Rechecks times, and reports those that still
// differ.
func (r *crossRun) settle(ctx context.Context) error {
	for round := 0; round < r.c.Rechecks && len(r.pending) > 0; round++ {
		var still []*crossEntry
		for batch := range slices.Chunk(r.pending, r.c.ChunkRows) {
			s, err := r.recheck(ctx, batch, round == r.c.Rechecks-1)
			if err != nil {
				return err
			}
			still = append(still, s...)
		}
		r.pending = still
	}
	for _, e := range r.pending {
		r.report(e)
	}
	r.pending = nil
	return nil
}

// recheck reads the entries' rows from the source, waits until the target has applied what the
// source had committed by then, and compares them with the target again. The source is read
// first, so that the target is at least as new as what it is compared with; with lock, the
// rows are held still on the source until the comparison is done. It returns the entries that
// still differ, updated.
func (r *crossRun) recheck(ctx context.Context, entries []*crossEntry, lock bool) ([]*crossEntry, error) {
	keys := make([][]string, len(entries))
	for i, e := range entries {
		keys[i] = e.src
	}
	var rows [][]cdc.Value
	var err error
	if locker, ok := r.c.Source.(CrossLocker); ok && lock {
		var release func()
		rows, release, err = locker.LockRows(ctx, r.p.src, keys)
		if err == nil {
			defer release()
		}
	} else {
		rows, err = r.c.Source.Lookup(ctx, r.p.src, keys)
	}
	if err != nil {
		return nil, fmt.Errorf("read %d differing rows again on the source: %w", len(keys), err)
	}
	if err := r.c.WaitCaughtUp(ctx); err != nil {
		return nil, fmt.Errorf("wait for the target to catch up with the source: %w", err)
	}
	var present, absent []int
	var cmp [][]cdc.Value
	var gone [][]string
	for i, row := range rows {
		if row == nil {
			absent, gone = append(absent, i), append(gone, entries[i].dst)
			continue
		}
		present = append(present, i)
		cmp = append(cmp, row)
	}
	differs := make([]bool, len(entries))
	if len(cmp) > 0 {
		conv, err := r.convert(cmp)
		if err != nil {
			return nil, err
		}
		diffs, err := r.c.Target.Compare(ctx, r.p.dst, conv)
		if err != nil {
			return nil, fmt.Errorf("compare %d differing rows with the target again: %w", len(conv), err)
		}
		for j, col := range diffs {
			e := entries[present[j]]
			e.dst, e.kind, e.column = keyOf(conv[j], r.p.dstKey), kindOf(col), col
			differs[present[j]] = true
		}
	}
	if len(gone) > 0 {
		ok, err := r.c.Target.Exists(ctx, r.p.dst, gone)
		if err != nil {
			return nil, fmt.Errorf("look up %d keys gone from the source on the target: %w", len(gone), err)
		}
		for j, i := range absent {
			if ok[j] {
				entries[i].kind, entries[i].column = KindExtra, ""
				differs[i] = true
			}
		}
	}
	var still []*crossEntry
	for i, e := range entries {
		if differs[i] {
			still = append(still, e)
		}
	}
	return still, nil
}

func (r *crossRun) report(e *crossEntry) {
	switch e.kind {
	case KindMissing:
		r.out.Missing++
	case KindExtra:
		r.out.Extra++
	default:
		r.out.Different++
	}
	if !r.chunks[e.chunk] {
		r.chunks[e.chunk] = true
		r.out.MismatchedChunks++
	}
	if len(r.out.Mismatches) < r.c.MaxSamples {
		m := CrossMismatch{Mismatch: Mismatch{Table: r.p.name, Key: formatCrossKey(e.src), Kind: e.kind}, Column: e.column}
		r.out.Mismatches = append(r.out.Mismatches, m)
		r.log.Warn("row differs", zap.String("key", m.Key), zap.String("kind", m.Kind), zap.String("column", m.Column))
	}
}

func (r *crossRun) progress() {
	if r.c.Progress == nil {
		return
	}
	r.progressMu.Lock()
	defer r.progressMu.Unlock()
	r.c.Progress(*r.out)
}

// kindOf is the kind of a difference that CrossTarget.Compare reports.
func kindOf(column string) string {
	if column == "" {
		return KindMissing
	}
	return KindDifferent
}

func sortedKeys(m map[int]string) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// formatCrossKey formats key values as formatKey does, with a value that is not printable text
// (a binary key) written as \x and its bytes in hex, as PostgreSQL prints bytea.
func formatCrossKey(key []string) string {
	parts := make([]string, len(key))
	for i, v := range key {
		parts[i] = v
		if !printable(v) {
			parts[i] = `\x` + hex.EncodeToString([]byte(v))
		}
	}
	return formatKey(parts)
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}
