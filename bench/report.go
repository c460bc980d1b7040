package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Goals the summary judges; they are reported, never enforced.
const (
	applyGoal  = 1.5         // migrated applies a backlog at least this many times faster than native
	memoryGoal = 300_000_000 // bytes of peak RSS (300 MB)
)

// report renders the summary printed at the end and written to latest.txt.
func (b *bench) report(version string, s *snapshotResults, a *applyResults) string {
	var w strings.Builder
	fmt.Fprintf(&w, "migrated bench %s  PostgreSQL %s, %d CPUs, load average %s at start; both clusters: %s\n",
		time.Now().Format("2006-01-02 15:04"), version, runtime.NumCPU(), b.load, settingsText())
	if s != nil {
		reportSnapshot(&w, s)
	}
	if a != nil {
		reportApply(&w, a)
	}
	var parts []string
	var peak int64
	if s != nil && s.migrated.ok() {
		parts = append(parts, "snapshot "+mb(s.migratedRSS))
		peak = max(peak, s.migratedRSS)
	}
	if a != nil && a.mig.ok() {
		parts = append(parts, "apply "+mb(a.migRSS))
		peak = max(peak, a.migRSS)
	}
	if len(parts) > 0 {
		fmt.Fprintf(&w, "memory    peak RSS migrated: %s  (goal: < %s)  %s\n",
			strings.Join(parts, ", "), mb(memoryGoal), verdict(peak < memoryGoal))
	}
	return w.String()
}

func reportSnapshot(w *strings.Builder, s *snapshotResults) {
	fmt.Fprintf(w, "snapshot  pgbench scale %d (%s); time to a complete, indexed target; %d jobs for pgcopydb and migrated\n",
		s.scale, mb(s.bytes), s.jobs)
	type peer struct {
		name string
		r    result
	}
	peers := []peer{{"pg_dump|psql", s.pgdump}, {"pgcopydb", s.pgcopy}}
	row(w, "pg_dump|psql", s.pgdump, "")
	if s.pgcopy.skipped != "" {
		fmt.Fprintf(w, "  pgcopydb: %s\n", s.pgcopy.skipped)
	} else {
		row(w, "pgcopydb clone", s.pgcopy, "")
		if s.splitAt > 0 {
			row(w, "pgcopydb --split", s.split, fmt.Sprintf("(--split-tables-larger-than %s: %d parts of pgbench_accounts, as migrated chunks it)",
				mb(s.splitAt), s.parts))
			peers = append(peers, peer{"pgcopydb --split", s.split})
		}
	}
	var ratios []string
	fastest := time.Duration(0)
	for _, p := range peers {
		if !p.r.ok() {
			continue
		}
		if fastest == 0 || p.r.d < fastest {
			fastest = p.r.d
		}
		if s.migrated.ok() {
			ratios = append(ratios, fmt.Sprintf("%.2fx %s", s.migrated.d.Seconds()/p.r.d.Seconds(), p.name))
		}
	}
	note := "migrated/peer " + strings.Join(ratios, ", ") + "   (goal: ≤ fastest)  "
	if s.migrated.ok() && fastest > 0 {
		note += verdict(s.migrated.d <= fastest)
	} else {
		note += "n/a"
	}
	row(w, "migrated", s.migrated, note)
	if s.best.ok() || s.best.err != nil {
		row(w, fmt.Sprintf("migrated, %d workers", s.bestWorkers), s.best, "(for information: migrated's default worker count)")
	}
}

func reportApply(w *strings.Builder, a *applyResults) {
	wal := max(a.native.wal, a.mig.wal)
	fmt.Fprintf(w, "apply     %d TPC-B transactions backlog (pgbench scale %d, %d clients, %s of WAL); time until the end LSN is confirmed\n",
		a.backlog, a.scale, a.clients, mb(wal))
	applyRow := func(name string, r applyRun, note string) {
		if !r.ok() {
			row(w, name, r.result, "")
			return
		}
		row(w, name, r.result, fmt.Sprintf("%5.0f txn/s   (all rows visible at %.1f s)  %s", a.txnPerSec(r), r.rows.Seconds(), note))
	}
	applyRow("native logical rep", a.native, "")
	note := fmt.Sprintf("(goal: ≥ %.1fx faster)  n/a", applyGoal)
	if a.native.ok() && a.mig.ok() {
		ratio := a.native.d.Seconds() / a.mig.d.Seconds() // native/migrated
		speed := fmt.Sprintf("%.2fx faster", ratio)
		if ratio < 1 {
			speed = fmt.Sprintf("%.2fx slower", 1/ratio)
		}
		note = fmt.Sprintf("%s  (goal: ≥ %.1fx faster)  %s   [native/migrated %.2f; by rows visible %.2f]", speed, applyGoal,
			verdict(ratio >= applyGoal), ratio, a.native.rows.Seconds()/a.mig.rows.Seconds())
	}
	applyRow("migrated", a.mig, note)
	if a.decode.err == nil && a.decode.d > 0 {
		if a.migCPU > 0 {
			fmt.Fprintf(w, "  %-20s %5.1f s of CPU used by migrated while catching up (decode, statements, pipeline)\n", "", a.migCPU.Seconds())
		}
		row(w, "source decode only", a.decode, fmt.Sprintf("%5.0f txn/s   (pg_recvlogical, applying nothing: the walsender's pace, a ceiling for any single-slot consumer)",
			float64(a.backlog)/a.decode.d.Seconds()))
	} else {
		row(w, "source decode only", a.decode, "")
	}
}

// row writes one tool's line: its time, or why there is none, then a note.
func row(w *strings.Builder, name string, r result, note string) {
	switch {
	case r.skipped != "":
		fmt.Fprintf(w, "  %-20s %s\n", name, r.skipped)
	case r.err != nil:
		fmt.Fprintf(w, "  %-20s FAILED: %s\n", name, firstLineOf(r.err.Error()))
	default:
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-20s %6.1f s   %s", name, r.d.Seconds(), note), " "))
	}
}

func verdict(met bool) string {
	if met {
		return "MET"
	}
	return "NOT MET"
}

// mb formats bytes as decimal megabytes.
func mb(n int64) string {
	return fmt.Sprintf("%.0f MB", float64(n)/1e6)
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
