package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// reportMySQL renders the MariaDB parts of the summary.
func reportMySQL(r *mysqlResults) string {
	var w strings.Builder
	if r.skipped != "" {
		fmt.Fprintf(&w, "mariadb   skipped: %s\n", r.skipped)
		return w.String()
	}
	fmt.Fprintf(&w, "mariadb   %s  MariaDB %s, %d CPUs, load average %s at start, %s at end, all servers on this machine; each server: %s\n",
		time.Now().Format("2006-01-02 15:04"), r.version, runtime.NumCPU(), r.load, loadAverage(), mariadbSettingsText())
	data := fmt.Sprintf("sysbench %d tables × %d rows (%s)", r.tables, r.rows, mb(r.bytes))
	if s := r.snapshot; s != nil {
		fmt.Fprintf(&w, "snapshot  MariaDB → MariaDB, %s; time to a complete, indexed copy in a fresh database on the target server; migrated with %d workers\n",
			data, s.jobs)
		row(&w, "mariadb-dump|mariadb", s.dump, "(--single-transaction)")
		note := fmt.Sprintf("(goal: ≤ %.1fx dump)  n/a", mySnapshotGoal)
		if s.dump.ok() && s.migrated.ok() {
			ratio := s.migrated.d.Seconds() / s.dump.d.Seconds()
			note = fmt.Sprintf("migrated/dump %.2fx   (goal: ≤ %.1fx)  %s   peak RSS %s, CPU %.1f s",
				ratio, mySnapshotGoal, verdict(ratio <= mySnapshotGoal), mb(s.migratedRSS), s.migratedCPU.Seconds())
		}
		row(&w, "migrated", s.migrated, note)
	}
	if a := r.apply; a != nil {
		fmt.Fprintf(&w, "apply     %d sysbench oltp_write_only transactions backlog (%d threads, written in %.1f s, %s of binlog); time until the source's GTID position is applied\n",
			a.backlog, a.threads, a.written.Seconds(), mb(a.binlogBytes))
		perSec := func(res result) string { return fmt.Sprintf("%5.0f txn/s", float64(a.backlog)/res.d.Seconds()) }
		if a.native.ok() {
			row(&w, "native replica", a.native, perSec(a.native)+"   (one SQL thread; IO and SQL threads stopped during the backlog)")
		} else {
			row(&w, "native replica", a.native, "")
		}
		note := fmt.Sprintf("(goal: ≥ %.1fx faster)  n/a", myApplyGoal)
		if a.native.ok() && a.mig.ok() {
			ratio := a.native.d.Seconds() / a.mig.d.Seconds()
			speed := fmt.Sprintf("%.2fx faster", ratio)
			if ratio < 1 {
				speed = fmt.Sprintf("%.2fx slower", 1/ratio)
			}
			note = fmt.Sprintf("%s   %s  (goal: ≥ %.1fx faster)  %s   peak RSS %s, CPU %.1f s",
				perSec(a.mig), speed, myApplyGoal, verdict(ratio >= myApplyGoal), mb(a.migRSS), a.migCPU.Seconds())
		}
		row(&w, "migrated", a.mig, note)
		if a.mig.ok() && a.migStatements > 0 {
			fmt.Fprintf(&w, "  %-20s %d statements on the target while catching up, %.1f per source transaction\n",
				"", a.migStatements, float64(a.migStatements)/float64(a.backlog))
		}
		if a.transfer.ok() {
			row(&w, "binlog transfer only", a.transfer, perSec(a.transfer)+"   (mariadb-binlog --raw, applying nothing: the source's pace of sending, a floor for any binlog consumer)")
		}
		if a.mig.ok() && a.native.ok() && a.migDstCPU > 0 {
			fmt.Fprintf(&w, "  %-20s server CPU while catching up: replica %.1f s (source %.1f s); migrated's target %.1f s (source %.1f s)\n",
				"", a.nativeDstCPU.Seconds(), a.nativeSrcCPU.Seconds(), a.migDstCPU.Seconds(), a.migSrcCPU.Seconds())
		}
	}
	if p := r.pg; p != nil {
		pgv := p.pgVersion
		if pgv == "" {
			pgv = "?"
		}
		fmt.Fprintf(&w, "to pg     MariaDB → PostgreSQL %s, %s; time to a complete, indexed copy\n", pgv, data)
		note := ""
		if p.pgloader.ok() {
			note = fmt.Sprintf("(WITH %s; peak RSS %s)", strings.Join(pgloaderWith, ", "), mb(p.rss))
		}
		row(&w, "pgloader", p.pgloader, note)
		note = ""
		if p.pgloader.ok() && p.migrated.ok() {
			note = fmt.Sprintf("migrated/pgloader %.2fx   peak RSS %s, CPU %.1f s",
				p.migrated.d.Seconds()/p.pgloader.d.Seconds(), mb(p.migratedRSS), p.migratedCPU.Seconds())
		}
		row(&w, "migrated", p.migrated, note)
	}
	return w.String()
}
