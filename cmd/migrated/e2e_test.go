package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMigrateUnderLoad moves a live database: every type, a partitioned table, a composite key,
// TOAST values, a truncate, a 200k-row transaction and a writer running throughout. It ends with
// an independent row-by-row comparison.
func TestMigrateUnderLoad(t *testing.T) {
	e := newEnv(t, "load")
	seed(t, e.src, 12000)
	w := startWriter(t, e.src, 12001, 2)
	d := e.start()
	e.waitFor(d, "streaming", 5*time.Minute, func() bool { return e.phase() == "streaming" })

	time.Sleep(2 * time.Second)
	e.exec(e.src, `INSERT INTO public.bulk SELECT n, 'big txn ' || n FROM generate_series(1000000, 1200000) n`)
	e.exec(e.src, `TRUNCATE public.pairs`)
	e.exec(e.src, `INSERT INTO public.pairs SELECT n, 'after-truncate', n FROM generate_series(1, 500) n`)
	// Drop both sides' connections under load: the stream must reconnect from its checkpoint.
	e.exec(e.src, `SELECT pg_terminate_backend(pid) FROM pg_stat_replication`)
	e.exec(e.dst, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
	time.Sleep(2 * time.Second)
	w.finish(t)

	e.waitCaughtUp(d)
	e.waitFor(d, "lag 0 on the caught-up stream", time.Minute, func() bool {
		st, ok := e.status()
		if !ok {
			return false
		}
		s := st["stream"].(map[string]any)
		return s["lag_seconds"].(float64) == 0 && s["connected"] == true
	})
	metrics := e.get("/metrics")
	for _, want := range []string{
		`migrated_phase{phase="streaming"} 1`,
		`migrated_replication_lag_seconds{direction="forward"} `,
		`migrated_replication_lag_bytes{direction="forward"} `,
		`migrated_changes_applied_total{direction="forward",op="truncate"} 1`,
		`migrated_stream_connected{direction="forward"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var copied int64
	dst := e.connect(e.dst)
	defer dst.Close(context.Background())
	if err := dst.QueryRow(context.Background(), `SELECT rows_copied FROM _migrated.tables WHERE migration = 'load' AND table_name = 'everything'`).Scan(&copied); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`migrated_snapshot_rows_copied_total{table="app.everything"} %d`, copied); copied < 12000 || !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q (rows recorded as copied: %d)", want, copied)
	}
	if !regexp.MustCompile(`migrated_stream_reconnects_total\{direction="forward"\} [1-9]`).MatchString(metrics) {
		t.Errorf("/metrics shows no stream reconnect after the connections were dropped")
	}
	out, code := runCLI(t, "status", "--config", e.config)
	if code != 0 || !strings.Contains(out, "streaming") || !strings.Contains(out, "app.everything") && !strings.Contains(out, "tables") {
		t.Errorf("migrated status (exit %d) does not show the streaming migration:\n%s", code, out)
	}
	st, _ := e.status()
	stream, _ := st["stream"].(map[string]any)
	if got := stream["changes_applied"].(float64); got < 200000 {
		t.Errorf("status shows %v changes applied; want at least the 200k-row transaction", got)
	}
	e.stop(d)
	e.compare()

	// The comparison above proves the values equal; this proves the workload took the path where
	// an update leaves TOASTed values out of the stream (counter changed, big_txt did not).
	conn := e.connect(e.src)
	defer conn.Close(context.Background())
	var exercised int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM app.everything WHERE counter > 0 AND length(big_txt) > 2000`).Scan(&exercised); err != nil {
		t.Fatal(err)
	}
	if exercised == 0 {
		t.Error("the writer updated no row with a TOASTed value; the unchanged-TOAST path was not tested")
	}
}

// TestKillAndResume kills the daemon with SIGKILL during the snapshot and again while streaming;
// each restart resumes, and the target ends equal to the source.
func TestKillAndResume(t *testing.T) {
	e := newEnv(t, "kill")
	e.writeConfig("")
	seed(t, e.src, 40000)
	w := startWriter(t, e.src, 40001, 2)

	d := e.start()
	dst := e.connect(e.dst)
	defer dst.Close(context.Background())
	// Kill once some tables are copied and others are not.
	e.waitFor(d, "a partly finished snapshot", 5*time.Minute, func() bool {
		var done, pending int
		err := dst.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state <> 'done') FROM _migrated.tables WHERE migration = 'kill'`).Scan(&done, &pending)
		return err == nil && done > 0 && pending > 0
	})
	d.kill()
	t.Log("killed during snapshot")

	d = e.start()
	e.waitFor(d, "streaming after restart", 5*time.Minute, func() bool { return e.phase() == "streaming" })
	if !strings.Contains(e.logTail(), "copying unfinished tables again") {
		t.Error("restart did not report re-copying the unfinished tables")
	}
	time.Sleep(3 * time.Second)
	d.kill()
	t.Log("killed while streaming")
	// The source may only have been told about positions the target holds durably.
	var applied string
	if err := dst.QueryRow(context.Background(), `SELECT position FROM _migrated.progress WHERE migration = 'kill' AND stream = 'forward'`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	src := e.connect(e.src)
	defer src.Close(context.Background())
	var confirmed string
	var safe bool
	if err := src.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text, confirmed_flush_lsn <= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'migrated_kill'`, applied).Scan(&confirmed, &safe); err != nil {
		t.Fatal(err)
	}
	if !safe {
		t.Errorf("slot confirmed %s but the target holds only up to %s", confirmed, applied)
	}

	d = e.start()
	e.waitFor(d, "streaming after second restart", 2*time.Minute, func() bool { return e.phase() == "streaming" })
	time.Sleep(2 * time.Second)
	w.finish(t)
	e.waitCaughtUp(d)
	e.stop(d)
	e.compare()
}

// TestPermanentErrorStopsAndResumes plants a constraint on the target that a source change
// violates. The stream must stop and say which table, key and SQLSTATE; nothing is skipped, and
// once the operator fixes the target, a restart applies the change.
func TestPermanentErrorStopsAndResumes(t *testing.T) {
	e := newEnv(t, "perm")
	e.exec(e.src, `CREATE TABLE public.t (id int PRIMARY KEY, v int); INSERT INTO public.t SELECT n, n FROM generate_series(1, 100) n`)
	d := e.start()
	e.waitFor(d, "streaming", 2*time.Minute, func() bool { return e.phase() == "streaming" })

	e.exec(e.dst, `ALTER TABLE public.t ADD CONSTRAINT v_small CHECK (v < 1000) NOT VALID`)
	e.exec(e.src, `INSERT INTO public.t VALUES (500, 5000), (501, 1)`)
	e.waitFor(d, "the failed phase", time.Minute, func() bool { return e.phase() == "failed" })
	st, _ := e.status()
	msg, _ := st["error"].(string)
	for _, want := range []string{"public.t", "id=500", "SQLSTATE 23514", "restart migrated"} {
		if !strings.Contains(msg, want) {
			t.Errorf("status error lacks %q: %s", want, msg)
		}
	}
	if resp, err := http.Get("http://" + e.listen + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %v, %v; want 503 while failed", resp, err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	err := <-d.done
	d.done <- err
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitError {
		t.Errorf("failed daemon exited with %v, want exit code %d", err, exitError)
	}

	e.exec(e.dst, `ALTER TABLE public.t DROP CONSTRAINT v_small`)
	d = e.start()
	e.waitFor(d, "streaming after the fix", 2*time.Minute, func() bool { return e.phase() == "streaming" })
	e.waitCaughtUp(d)
	e.stop(d)
	e.compare()
}
