package demo

import (
	"fmt"
	"io"
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
	step    string // what the demo is waiting for
	status  server.Status
}

// draw clears the terminal and shows the dashboard with the daemon's own status view.
func (c *console) draw(d dashboard) {
	var b strings.Builder
	writes, txns := d.ledger.Stats()
	fmt.Fprintf(&b, "migrated demo — a live migration between two throwaway PostgreSQL clusters   (Ctrl-C stops and cleans up)\n\n")
	fmt.Fprintf(&b, "daemon log  %s\n", d.logPath)
	fmt.Fprintf(&b, "control API http://%s/v1/status   (bin/migrated status --listen %s --watch 1s)\n", d.api, d.api)
	fmt.Fprintf(&b, "writer      %s writes acknowledged in %s transactions\n", count(writes), count(txns))
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
	default:
		msg += fmt.Sprintf("  lag %s %s  %s changes applied", seconds(s.Stream.LagSeconds), iec(s.Stream.LagBytes),
			count(s.Stream.ChangesApplied))
	}
	c.printf("%s  writer %s writes  — %s\n", msg, count(writes), d.step)
}

// Print writes the report. It ends with what this version does not do yet.
func (r *Report) Print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
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
	row("rows moved", "%s (%s copied in the snapshot + %s changes streamed)", count(snap+r.ChangesStreamed), count(snap), count(r.ChangesStreamed))
	row("bytes", "%s on the source (tables, TOAST and indexes)", iec(size))
	row("setup", "%s (two clusters started, %s generated in %s)", dur(r.SetupTime), iec(r.GeneratedBytes), dur(r.LoadTime))
	row("snapshot time", "%s (preflight, schema, parallel copy, indexes and keys, under live writes)", dur(r.SnapshotTime))
	row("streamed", "%s while writing, then caught up %s after the writer stopped", dur(r.StreamTime), dur(r.CatchUpTime))
	row("changes streamed", "%s in %s transactions", count(r.ChangesStreamed), count(r.TxnsStreamed))
	row("final lag", "%s, %s", seconds(r.FinalLagSeconds), iec(r.FinalLagBytes))
	row("writes acked", "%s in %s transactions (%s keys checked on the target, %s later deleted by the writer)",
		count(r.WritesAcked), count(r.TxnsAcked), count(int64(r.KeysChecked)), count(int64(r.KeysExcluded)))
	lost := count(int64(r.WritesLost))
	if r.WritesLost > 0 {
		lost += " — acknowledged writes missing on the target: " + sample(r.Missing)
	}
	row("writes lost", "%s", lost)
	if len(r.Mismatched) == 0 {
		row("verify", "clean: %d tables byte-identical on both sides (sorted COPY, SHA-256), in %s", len(r.Tables), dur(r.VerifyTime))
	} else {
		row("verify", "%d mismatched tables: %s", len(r.Mismatched), strings.Join(r.Mismatched, ", "))
	}
	row("total time", "%s", dur(r.TotalTime))
	p("\nNot in this version: cutover (the write pause and switch to the target), the dual-write phase\n")
	p("and rollback come in a later version; the demo stops at a caught-up stream and verifies it.\n")
}

// sample lists a few missing keys for the report.
func sample(missing map[string][]string) string {
	var parts []string
	for table, keys := range missing {
		shown := keys[:min(len(keys), 3)]
		parts = append(parts, fmt.Sprintf("%s %s", table, strings.Join(shown, ", ")))
	}
	return strings.Join(parts, "; ")
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
