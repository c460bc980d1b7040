package demo

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/ui"
)

// console writes the demo's progress for a person: redrawn in place on a terminal, a line at a
// time otherwise (CI logs). Its methods may be called from several goroutines.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	width int
	color bool
	words wording
}

func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, format, args...)
}

// spinner shows label() with a spinner and the time elapsed, redrawn every 100ms on a terminal
// and every 2s elsewhere, until the returned stop is called.
func (c *console) spinner(label func() string) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		every := 2 * time.Second
		if c.tty {
			every = 100 * time.Millisecond
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
		for i := 0; ; i++ {
			select {
			case <-done:
				if c.tty {
					c.printf("\r\x1b[K")
				}
				return
			case <-tick.C:
			}
			elapsed := time.Since(start).Truncate(100 * time.Millisecond)
			if c.tty {
				c.printf("\r\x1b[K%c %s  %s", frames[i%len(frames)], label(), elapsed)
			} else {
				c.printf("  … %s  %s\n", label(), elapsed)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// dashboard is what the console shows while the migration runs.
type dashboard struct {
	start   time.Time
	logPath string
	api     string
	ledger  *Ledger
	writer  *Writer
	step    string   // what the demo is waiting for
	done    []string // the stages finished so far
	status  server.Status
}

// writerLine says what the writer has done and where it writes.
func (d dashboard) writerLine() string {
	writes, txns := d.ledger.Stats()
	line := fmt.Sprintf("%s writes acknowledged in %s transactions (%s on the source, %s on the target); writing to the %s",
		count(writes), count(txns), count(d.ledger.Acked(SideSource)), count(d.ledger.Acked(SideTarget)), d.writer.Side())
	if n := d.writer.Refused(); n > 0 {
		line += fmt.Sprintf("; %s refused by a fence and retried", count(n))
	}
	return line
}

// draw clears the terminal and shows the dashboard with the daemon's own status view.
func (c *console) draw(d dashboard) {
	var b strings.Builder
	fmt.Fprintf(&b, "migrated demo — a live migration between two throwaway %s %s   (Ctrl-C stops and cleans up)\n\n", c.words.product, c.words.servers)
	fmt.Fprintf(&b, "daemon log  %s\n", d.logPath)
	fmt.Fprintf(&b, "control API http://%s/v1/status   (bin/migrated status --listen %s --watch 1s)\n", d.api, d.api)
	fmt.Fprintf(&b, "writer      %s\n", d.writerLine())
	for i, done := range d.done {
		label := ""
		if i == 0 {
			label = "done"
		}
		fmt.Fprintf(&b, "%-11s ✓ %s\n", label, done)
	}
	fmt.Fprintf(&b, "demo        %s\n\n", d.step)
	ui.RenderStatus(&b, d.status, ui.RenderOptions{Width: c.width, Color: c.color})
	c.printf("\x1b[H\x1b[2J%s", b.String())
}

// line prints the one-line summary used instead of draw when the output is not a terminal.
func (c *console) line(d dashboard) {
	s := d.status
	writes, _ := d.ledger.Stats()
	msg := fmt.Sprintf("%6.1fs  %-12s", time.Since(d.start).Seconds(), s.Phase)
	switch {
	case s.Snapshot.TablesTotal == 0:
		msg += "  preflight and schema"
	case s.Phase == "snapshotting":
		msg += fmt.Sprintf("  %d/%d tables  %s/%s rows", s.Snapshot.TablesDone, s.Snapshot.TablesTotal,
			count(s.Snapshot.RowsCopied), count(s.Snapshot.RowsEstimate))
	case s.Phase == "cutting-over" || s.Phase == "rolling-back":
		if o := s.Operation; o != nil && o.Step != "" {
			msg += "  step " + o.Step
		}
	case s.Phase == "switched" && s.Reverse != nil:
		msg += fmt.Sprintf("  reverse lag %s %s  %s changes applied to the source", seconds(s.Reverse.LagSeconds), iec(s.Reverse.LagBytes),
			count(s.Reverse.ChangesApplied))
	default:
		msg += fmt.Sprintf("  lag %s %s  %s changes applied", seconds(s.Stream.LagSeconds), iec(s.Stream.LagBytes),
			count(s.Stream.ChangesApplied))
	}
	c.printf("%s  writer %s writes, on the %s  — %s\n", msg, count(writes), d.writer.Side(), d.step)
}

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	words := wordingFor(r.Engine)
	p("\nmigrated demo — report\n\n")
	nameW := len("total")
	for _, t := range r.Tables {
		nameW = max(nameW, len(t.Table))
	}
	p("  %-*s  %14s  %14s  %10s  %s\n", nameW, "table", "snapshot rows", "rows at end", "size", "verify")
	var snap, end, size int64
	for _, t := range r.Tables {
		verdict := "identical"
		if !t.Equal {
			verdict = fmt.Sprintf("DIFFERENT (source %s rows, target %s)", count(t.SourceRows), count(t.TargetRows))
		}
		p("  %-*s  %14s  %14s  %10s  %s\n", nameW, t.Table, count(t.SnapshotRows), count(t.TargetRows), iec(t.Bytes), verdict)
		snap, end, size = snap+t.SnapshotRows, end+t.TargetRows, size+t.Bytes
	}
	p("  %-*s  %14s  %14s  %10s\n\n", nameW, "total", count(snap), count(end), iec(size))

	row := func(label, format string, args ...any) { p("  %-18s %s\n", label, fmt.Sprintf(format, args...)) }
	row("rows moved", "%s (%s copied in the snapshot + %s changes streamed to the target + %s streamed back to the source)",
		count(snap+r.ChangesStreamed+r.ReverseChanges), count(snap), count(r.ChangesStreamed), count(r.ReverseChanges))
	row("bytes", "%s on the source (%s)", iec(size), words.size)
	row("setup", "%s (two %s started, %s generated in %s)", dur(r.SetupTime), words.servers, iec(r.GeneratedBytes), dur(r.LoadTime))
	row("snapshot time", "%s (preflight, schema, parallel copy, indexes and keys, under live writes)", dur(r.SnapshotTime))
	row("streamed", "%s while writing (verify, cutover, dual-write and rollback included), then caught up %s after the writer stopped",
		dur(r.StreamTime), dur(r.CatchUpTime))
	row("changes streamed", "%s in %s transactions to the target; %s back to the source during the dual-write phase",
		count(r.ChangesStreamed), count(r.TxnsStreamed), count(r.ReverseChanges))
	row("final lag", "%s, %s", seconds(r.FinalLagSeconds), iec(r.FinalLagBytes))
	switch v := r.Verify; {
	case !v.Ran:
		row("migrated verify", "did not run")
	case v.Clean:
		row("migrated verify", "clean: %d tables, %s chunks compared online while the writer wrote, in %s", v.Tables, count(v.Chunks), dur(v.Time))
	default:
		row("migrated verify", "NOT CLEAN: %s", v.problem())
	}
	r.Cutover.print(row, "cutover", "target")
	if r.Cutover.Done() {
		row("dual-write", "%s writing to the target, the reverse stream's lag at most %s", dur(r.DualWriteTime), seconds(r.ReverseMaxLagSeconds))
	}
	r.Rollback.print(row, "rollback", "source")
	if len(r.Routes) > 0 {
		row("routing hook", "moved the writer to the %s", strings.Join(r.Routes, ", then the "))
	}
	row("writes acked", "%s in %s transactions: %s on the source, %s on the target",
		count(r.WritesAcked), count(r.TxnsAcked), count(r.WritesOnSource), count(r.WritesOnTarget))
	row("keys checked", "%s on each side (%s more later deleted by the writer)", count(int64(r.KeysChecked)), count(int64(r.KeysExcluded)))
	lost := count(int64(r.WritesLost))
	switch {
	case r.WritesLost > 0:
		lost += " — acknowledged writes missing"
		if len(r.MissingOnTarget) > 0 {
			lost += " on the target: " + sample(r.MissingOnTarget)
		}
		if len(r.MissingOnSource) > 0 {
			lost += " on the source: " + sample(r.MissingOnSource)
		}
	case r.KeysChecked > 0:
		lost += " (every acknowledged write is on the target and on the source)"
	}
	row("writes lost", "%s", lost)
	if len(r.Mismatched) == 0 {
		row("verify", "clean: %d tables byte-identical on both sides (%s), in %s", len(r.Tables), words.compare, dur(r.VerifyTime))
	} else {
		row("verify", "%d mismatched tables: %s", len(r.Mismatched), strings.Join(r.Mismatched, ", "))
	}
	row("total time", "%s", dur(r.TotalTime))
}

// print writes the report's row of a cutover or rollback that moves the writes to side.
func (s SwitchResult) print(row func(label, format string, args ...any), name, side string) {
	switch {
	case s.Outcome == "":
		row(name, "did not run")
	case !s.Done():
		row(name, "%s after %s: %s", strings.ToUpper(s.Outcome), dur(s.Took), s.Error)
	default:
		row(name, "writes unavailable %s (migrated: fence to %s writable); the writer's longest wait between two acknowledged writes %s",
			dur(s.WriteUnavailable), side, dur(s.LongestGap))
		row("", "%s in all; %s writer transactions refused by the fence and retried on the %s", dur(s.Took), count(s.Refused), side)
	}
}

// sample lists a few missing keys for the report.
func sample(missing map[string][]string) string {
	var parts []string
	for _, table := range slices.Sorted(maps.Keys(missing)) {
		keys := missing[table]
		shown := keys[:min(len(keys), 3)]
		parts = append(parts, fmt.Sprintf("%s %s", table, strings.Join(shown, ", ")))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// mismatches lists a few of the rows a verify found different.
func mismatches(ms []server.Mismatch) string {
	var parts []string
	for _, m := range ms[:min(len(ms), 5)] {
		parts = append(parts, fmt.Sprintf("%s %s %s", m.Kind, m.Table, m.Key))
	}
	if n := len(ms) - 5; n > 0 {
		parts = append(parts, fmt.Sprintf("%d more", n))
	}
	if len(parts) == 0 {
		return "no samples"
	}
	return strings.Join(parts, ", ")
}

// count formats n with thousands separators: 1234567 becomes "1,234,567".
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + count(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// iec formats a byte count in IEC units: "512 B", "12.3 MiB".
func iec(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB"} {
		v /= 1024
		if v < 1024 || unit == "GiB" {
			return fmt.Sprintf("%.1f %s", v, unit)
		}
	}
	return ""
}

// dur formats a duration to a tenth of a second, or in milliseconds below one second.
func dur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func seconds(s float64) string { return dur(time.Duration(s * float64(time.Second))) }
