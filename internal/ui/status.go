// Package ui renders migrated's status for a terminal.
package ui

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/migrated/migrated/internal/server"
)

// labelWidth is the width of the label column, "last commit " being the longest label.
const labelWidth = 12

// maxTableBars is how many table bars RenderStatus draws before summarising the rest, so that a
// schema of hundreds of tables still fits a screen.
const maxTableBars = 20

// RenderOptions controls RenderStatus.
type RenderOptions struct {
	// Width is the terminal width in columns, default 80. It sizes the progress bars.
	Width int
	// Color adds ANSI colours: the phase, errors, and the bars.
	Color bool
	// Now is the time against which "for 5m" and "3s ago" are measured, default time.Now(). Tests
	// fix it so that output is deterministic.
	Now time.Time
}

// RenderStatus writes s for a person at a terminal: the migration and its phase, any error
// first (and a routing hook that failed), the snapshot's progress with a bar per table while it
// is copying, the change stream's positions, lag and throughput, the reverse stream of the
// dual-write phase, then the last verify and the running or last cutover or rollback. Write
// errors are ignored, as for fmt.Print.
func RenderStatus(w io.Writer, s server.Status, opts RenderOptions) {
	if opts.Width <= 0 {
		opts.Width = 80
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	r := &renderer{opts: opts}
	r.header(s)
	r.snapshot(s)
	r.stream(s)
	r.reverse(s)
	r.verify(s)
	r.operation(s)
	_, _ = io.WriteString(w, r.b.String())
}

type renderer struct {
	opts RenderOptions
	b    strings.Builder
}

func (r *renderer) style(s string, codes ...string) string {
	if !r.opts.Color || len(codes) == 0 {
		return s
	}
	return strings.Join(codes, "") + s + ansiReset
}

// line writes value in the value column after label, or from the left margin when label is
// empty.
func (r *renderer) line(label, value string) {
	if label != "" {
		value = padRight(label, labelWidth) + value
	}
	r.b.WriteString(strings.TrimRight(value, " ") + "\n")
}

func (r *renderer) header(s server.Status) {
	r.line("migration", s.Migration)
	phase := r.style(s.Phase, phaseStyle(s.Phase)...)
	if !s.Since.IsZero() {
		phase += " for " + humanDuration(r.opts.Now.Sub(s.Since))
	}
	if s.Paused {
		phase += "  " + r.style("PAUSED", ansiBold, ansiYellow)
	}
	r.line("phase", phase)
	// Errors come right after the phase, wrapped to the width, so they cannot be missed.
	if s.Error != "" {
		r.alert("ERROR", s.Error)
	}
	if hookAlert(s) {
		r.alert("HOOK FAILED", s.Operation.HookError)
	}
	r.line("source", endpoint(s.Source))
	r.line("target", endpoint(s.Target))
}

// alert writes text in red after a bold red label, wrapped to the width of the value column.
func (r *renderer) alert(label, text string) {
	for i, l := range wrap(text, max(r.opts.Width-labelWidth, 20)) {
		lead := strings.Repeat(" ", labelWidth)
		if i == 0 {
			lead = r.style(label, ansiBold, ansiRed) + strings.Repeat(" ", max(labelWidth-len(label), 1))
		}
		r.line("", lead+r.style(l, ansiRed))
	}
}

func endpoint(e server.Endpoint) string {
	if e.Engine == "" {
		return e.DSN
	}
	return padRight(e.Engine, 10) + e.DSN
}

// phaseStyle colours phases by what they ask of the operator: green is fine, yellow is in
// progress, red needs attention.
func phaseStyle(phase string) []string {
	switch phase {
	case "streaming", "switched", "completed":
		return []string{ansiBold, ansiGreen}
	case "snapshotting", "cutting-over", "rolling-back":
		return []string{ansiBold, ansiYellow}
	case "failed", "cancelled":
		return []string{ansiBold, ansiRed}
	}
	return []string{ansiBold}
}

func (r *renderer) snapshot(s server.Status) {
	snap := s.Snapshot
	r.b.WriteString("\n")
	if snap.TablesTotal == 0 && len(snap.Tables) == 0 {
		r.line("snapshot", "not started")
		return
	}
	finished := snap.TablesDone >= snap.TablesTotal
	if finished && s.Phase != "snapshotting" {
		r.line("snapshot", fmt.Sprintf("done  %d tables  %s rows", snap.TablesTotal, humanCount(snap.RowsCopied)))
		return
	}

	summary := fmt.Sprintf("%d/%d tables  %s", snap.TablesDone, snap.TablesTotal, rows(snap.RowsCopied, snap.RowsEstimate))
	if pct, ok := percent(snap.RowsCopied, snap.RowsEstimate, finished); ok {
		summary += fmt.Sprintf("  %d%%", pct)
	}
	if snap.ETASeconds > 0 && !finished {
		summary += "  ETA " + humanDuration(seconds(snap.ETASeconds))
	}
	r.line("snapshot", summary)
	r.tables(snap.Tables)
}

func rows(copied, estimate int64) string {
	if estimate <= 0 {
		return humanCount(copied) + " rows"
	}
	return humanCount(copied) + " / " + humanCount(estimate) + " rows"
}

// minBarWidth is the narrowest bar worth drawing; below it the row drops columns instead.
const minBarWidth = 10

// tableRow is one table's bar line, split into columns so that they can be aligned.
type tableRow struct {
	name, pct, copied, estimate, chunks string
	pctValue                            int
}

// tables draws one bar per table, its columns aligned across tables:
//
//	public.orders  [#########.....]  62%  1,234,567 / 2,000,000 rows  3/5 chunks
//
// On a narrow terminal the chunk column goes first, then the row counts, so that the bar and
// percentage always fit.
func (r *renderer) tables(tables []server.TableState) {
	shown, hidden := pickTables(tables)
	rowsOut := make([]tableRow, len(shown))
	var nameW, copiedW, estW, chunksW int
	anyEstimate := false
	for i, t := range shown {
		row := tableRow{name: truncate(t.Table, 40), copied: humanCount(t.RowsCopied), estimate: "?", pct: "   ?"}
		if t.RowsEstimate > 0 {
			row.estimate = humanCount(t.RowsEstimate)
			anyEstimate = true
		}
		if pct, ok := percent(t.RowsCopied, t.RowsEstimate, t.State == "done"); ok {
			row.pct, row.pctValue = fmt.Sprintf("%3d%%", pct), pct
		}
		if t.ChunksTotal > 0 {
			row.chunks = fmt.Sprintf("%d/%d chunks", t.ChunksDone, t.ChunksTotal)
		}
		rowsOut[i] = row
		nameW = max(nameW, utf8.RuneCountInString(row.name))
		copiedW = max(copiedW, len(row.copied))
		estW = max(estW, len(row.estimate))
		chunksW = max(chunksW, len(row.chunks))
	}
	right := func(row tableRow, withRows, withChunks bool) string {
		s := row.pct
		if withRows {
			s += "  " + padLeft(row.copied, copiedW)
			if anyEstimate {
				s += " / " + padLeft(row.estimate, estW)
			}
			s += " rows"
		}
		if withChunks && chunksW > 0 {
			s += "  " + padLeft(row.chunks, chunksW)
		}
		return s
	}
	// The right-hand columns have the same width on every row, so the first row sizes them.
	fixed := 2 + nameW + 2 + 2 // indent, name, gaps either side of the bar
	withRows, withChunks := true, true
	if len(rowsOut) > 0 {
		for _, cols := range [][2]bool{{true, true}, {true, false}, {false, false}} {
			withRows, withChunks = cols[0], cols[1]
			if r.opts.Width-fixed-len(right(rowsOut[0], withRows, withChunks)) >= minBarWidth {
				break
			}
		}
	}
	for _, row := range rowsOut {
		rightText := right(row, withRows, withChunks)
		barW := min(max(r.opts.Width-fixed-len(rightText), minBarWidth), 60)
		r.line("", "  "+padRight(row.name, nameW)+"  "+bar(row.pctValue, barW, r.opts.Color)+"  "+rightText)
	}
	if hidden.count > 0 {
		r.line("", fmt.Sprintf("  … %d more tables: %d done, %d pending", hidden.count, hidden.done, hidden.pending))
	}
}

type hiddenTables struct{ count, done, pending int }

// pickTables chooses up to maxTableBars tables to draw, preferring the ones being copied, then
// the pending ones, then the finished ones, and keeps them in their original order.
func pickTables(tables []server.TableState) ([]server.TableState, hiddenTables) {
	if len(tables) <= maxTableBars {
		return tables, hiddenTables{}
	}
	rank := func(state string) int {
		switch state {
		case "copying":
			return 0
		case "done":
			return 2
		}
		return 1
	}
	idx := make([]int, len(tables))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return rank(tables[a].State) - rank(tables[b].State) })
	keep := idx[:maxTableBars]
	slices.Sort(keep)
	var h hiddenTables
	for _, i := range idx[maxTableBars:] {
		h.count++
		if tables[i].State == "done" {
			h.done++
		} else {
			h.pending++
		}
	}
	shown := make([]server.TableState, len(keep))
	for j, i := range keep {
		shown[j] = tables[i]
	}
	return shown, h
}

// stream draws the forward stream, source to target. Once the target takes the writes it is
// stopped by design, so it is not drawn as a fault, and its frozen lag is left out.
func (r *renderer) stream(s server.Status) {
	st := s.Stream
	if s.Phase == "snapshotting" && st == (server.StreamState{}) {
		return
	}
	r.b.WriteString("\n")
	if writesOnTarget(s) {
		r.line("stream", "stopped at the cutover")
		if st != (server.StreamState{}) {
			r.line("position", fmt.Sprintf("source %s  applied %s", orDash(st.SourcePosition), orDash(st.AppliedPosition)))
			r.line("applied", fmt.Sprintf("%s changes in %s transactions", humanCount(st.ChangesApplied), humanCount(st.TxnsApplied)))
		}
		return
	}
	idle := ""
	switch {
	case s.Paused:
		idle = "paused"
	case s.Phase == "cutting-over":
		idle = "stopped for the cutover"
	}
	r.streamState("stream", "source", st, idle)
}

// streamState draws one stream's connection, positions, lag and throughput. origin names the
// side the stream reads from. idle, when set, is why the stream is meant not to run now: it
// replaces "disconnected", which is drawn as a fault.
func (r *renderer) streamState(label, origin string, st server.StreamState, idle string) {
	switch {
	case st.Connected:
		r.line(label, r.style("connected", ansiGreen))
	case idle != "":
		r.line(label, r.style(idle, ansiYellow))
	default:
		r.line(label, r.style("disconnected", ansiRed))
	}
	r.line("position", fmt.Sprintf("%s %s  applied %s", origin, orDash(st.SourcePosition), orDash(st.AppliedPosition)))
	r.line("lag", humanDuration(seconds(st.LagSeconds))+"  "+humanBytes(st.LagBytes))
	r.line("applied", fmt.Sprintf("%s changes in %s transactions", humanCount(st.ChangesApplied), humanCount(st.TxnsApplied)))
	if !st.LastCommitTime.IsZero() {
		r.line("last commit", fmt.Sprintf("%s (%s ago)",
			st.LastCommitTime.UTC().Format("2006-01-02 15:04:05 UTC"), r.ago(st.LastCommitTime)))
	}
}

// ago is how long before Now t was.
func (r *renderer) ago(t time.Time) string {
	return humanDuration(r.opts.Now.Sub(t))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
