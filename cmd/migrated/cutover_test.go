package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// cutoverConfig writes the config of the cutover tests: a hook that routes the ledger, a
// cutover timeout and an optional maintenance window. max-lag is generous, so that a busy test
// machine does not refuse cutovers, except where a test sets it.
func (e *env) cutoverConfig(timeout, window string) { e.cutoverConfigLag(timeout, window, "30s") }

func (e *env) cutoverConfigLag(timeout, window, maxLag string) {
	w := ""
	if window != "" {
		w = fmt.Sprintf("\n  window: %q", window)
	}
	e.writeConfig(fmt.Sprintf(`cutover:
  max-lag: %s
  timeout: %s
  verify-max-age: 1h%s
  hooks:
    exec: ["/bin/sh", "-c", "echo $MIGRATED_WRITABLE > %[4]s/route.tmp && mv %[4]s/route.tmp %[4]s/route"]
verify:
  chunk-rows: 500
`, maxLag, timeout, w, e.dir))
}

// waitStreaming waits until the migration streams with the stream connected: a cutover refuses
// a disconnected stream, whose lag is unknown.
func (e *env) waitStreaming(d *proc) {
	e.t.Helper()
	e.waitFor(d, "streaming, connected", 3*time.Minute, func() bool {
		return e.phase() == "streaming" && e.statusField("stream", "connected") == true
	})
}

// cli runs a migrated subcommand against this env's daemon.
func (e *env) cli(args ...string) (string, int) {
	e.t.Helper()
	return runCLI(e.t, append(args, "--config", e.config)...)
}

// mustCLI runs a subcommand and fails the test unless it exits 0.
func (e *env) mustCLI(args ...string) string {
	e.t.Helper()
	out, code := e.cli(args...)
	if code != 0 {
		e.t.Fatalf("migrated %s: exit %d:\n%s\nlog:\n%s", strings.Join(args, " "), code, out, e.logTail())
	}
	return out
}

// fenced reports whether dsn's database is fenced (read-only by default).
func (e *env) fenced(dsn string) bool {
	e.t.Helper()
	conn := e.connect(dsn)
	defer conn.Close(context.Background())
	var on string
	if err := conn.QueryRow(context.Background(), "SHOW default_transaction_read_only").Scan(&on); err != nil {
		e.t.Fatal(err)
	}
	return on == "on"
}

// slots lists the replication slots of dsn's database.
func (e *env) slots(dsn string) string {
	e.t.Helper()
	conn := e.connect(dsn)
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(context.Background(), `SELECT coalesce(string_agg(slot_name, ',' ORDER BY slot_name), '') FROM pg_replication_slots WHERE database = current_database()`).Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) statusField(path ...string) any {
	st, ok := e.status()
	if !ok {
		return nil
	}
	var v any = st
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// verifyClean runs `migrated verify --wait` and fails unless it reports clean.
func (e *env) verifyClean() {
	e.t.Helper()
	out := e.mustCLI("verify", "--wait")
	if !strings.Contains(strings.ToLower(out), "clean") {
		e.t.Fatalf("verify did not report clean:\n%s", out)
	}
}

func seedLedger(t *testing.T, e *env) {
	t.Helper()
	e.exec(e.src, ledgerSQL)
	e.exec(e.src, `INSERT INTO public.ledger (worker, n, side) SELECT -1, n, 'source' FROM generate_series(1, 3000) n`)
}

// TestCutoverAndRollbackUnderLoad is the whole life of a migration with an application writing
// throughout: refusals, verify, a cutover that the application follows through the hook, writes
// on the target flowing back, a rollback, a second cutover, and complete.
func TestCutoverAndRollbackUnderLoad(t *testing.T) {
	e := newEnv(t, "cut")
	seed(t, e.src, 3000)
	seedLedger(t, e)
	// A window that is not open now: the cutover needs --force.
	closed := time.Now().UTC().Add(12 * time.Hour)
	e.cutoverConfig("10s", fmt.Sprintf("* %02d:00-%02d:30 UTC", closed.Hour(), closed.Hour()))
	d := e.start()
	e.waitStreaming(d)
	l := startLedger(t, e, 3)
	time.Sleep(time.Second)

	// Refusals, each naming its reason; nothing changes.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cutover"}, "--confirm cut"},
		{[]string{"cutover", "--confirm", "other"}, `does not name this migration`},
		{[]string{"cutover", "--confirm", "cut"}, "outside the maintenance window"},
		{[]string{"cutover", "--confirm", "cut", "--force"}, "no verify has run"},
	} {
		out, code := e.cli(tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("migrated %s: exit %d, want a refusal naming %q:\n%s", strings.Join(tc.args, " "), code, tc.want, out)
		}
	}
	if e.fenced(e.src) || e.phase() != "streaming" {
		t.Fatalf("a refused cutover changed something: fenced %v, phase %s", e.fenced(e.src), e.phase())
	}

	// Verify finds differences planted on the target (a changed value, a missing row, an extra
	// row; the ledger never touches these ids), and the cutover is refused for them.
	e.exec(e.dst, `UPDATE public.ledger SET n = -42 WHERE id = 7`)
	e.exec(e.dst, `DELETE FROM public.ledger WHERE id = 1500`)
	e.exec(e.dst, `INSERT INTO public.ledger (id, worker, n, side) VALUES (900000000, -9, 0, 'nowhere')`)
	out, code := e.cli("verify", "--wait")
	for _, want := range []string{"(7)", "(1500)", "(900000000)", "different", "missing", "extra"} {
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("verify with planted differences: exit %d, want %q in:\n%s", code, want, out)
		}
	}
	if m := e.get("/metrics"); !regexp.MustCompile(`migrated_verify_mismatched_chunks [1-9]`).MatchString(m) {
		t.Errorf("metrics do not show the mismatched chunk")
	}
	if out, code := e.cli("cutover", "--confirm", "cut", "--force"); code == 0 || !strings.Contains(out, "mismatched") {
		t.Errorf("cutover after a dirty verify: exit %d:\n%s", code, out)
	}
	e.exec(e.dst, `UPDATE public.ledger SET n = 7 WHERE id = 7`)
	e.exec(e.dst, `INSERT INTO public.ledger (id, worker, n, side) VALUES (1500, -1, 1500, 'source')`)
	e.exec(e.dst, `DELETE FROM public.ledger WHERE id = 900000000`)
	e.verifyClean()

	// Dry run: every check but the window passes; nothing changes.
	out = e.mustCLI("cutover", "--dry-run", "--confirm", "cut", "--force")
	for _, want := range []string{"PASS", "lag", "verify", "reverse", "fence-source", "prepare-reverse", "commit"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL") || e.fenced(e.src) {
		t.Fatalf("dry run failed a check or fenced the source:\n%s", out)
	}

	// The cutover, with the ledger writing all along.
	out = e.mustCLI("cutover", "--confirm", "cut", "--force")
	t.Logf("cutover:\n%s", out)
	if e.phase() != "switched" || e.fenced(e.dst) || !e.fenced(e.src) {
		t.Fatalf("after the cutover: phase %s, target fenced %v, source fenced %v", e.phase(), e.fenced(e.dst), e.fenced(e.src))
	}
	if got := readFile(t, filepath.Join(e.dir, "route")); strings.TrimSpace(got) != "target" {
		t.Fatalf("the routing hook did not route to the target: %q", got)
	}
	if s := e.slots(e.src); s != "" {
		t.Errorf("the forward slot is still on the source after the cutover: %s", s)
	}
	if s := e.slots(e.dst); s != "migrated_cut_reverse" {
		t.Errorf("target slots after the cutover: %q, want the reverse slot", s)
	}
	if m := e.get("/metrics"); !regexp.MustCompile(`migrated_cutover_write_unavailable_seconds [0-9.e+-]+`).MatchString(m) ||
		!strings.Contains(m, `migrated_cutover_phase_duration_seconds{phase="drain"}`) || !strings.Contains(m, `migrated_phase{phase="switched"} 1`) {
		t.Errorf("metrics lack the cutover series")
	}
	time.Sleep(2 * time.Second) // the ledger writes on the target
	if m := e.get("/metrics"); !strings.Contains(m, `migrated_replication_lag_seconds{direction="reverse"}`) {
		t.Errorf("metrics lack the reverse lag")
	}
	if e.statusField("reverse", "connected") != true {
		t.Errorf("status shows no connected reverse stream: %v", e.statusField("reverse"))
	}
	acked := l.snapshot()
	l.check(t, e, e.dst, "target after cutover", acked)
	e.waitStreamCaughtUp(d, "reverse")
	l.check(t, e, e.src, "old source through the reverse stream", acked)
	if n := l.sides()["target"]; n == 0 {
		t.Fatalf("the ledger wrote nothing on the target after the cutover")
	}

	// Rollback: the writes return to the old source, nothing lost either way.
	out = e.mustCLI("rollback", "--confirm", "cut")
	t.Logf("rollback:\n%s", out)
	if e.phase() != "streaming" || e.fenced(e.src) || !e.fenced(e.dst) {
		t.Fatalf("after the rollback: phase %s, source fenced %v, target fenced %v", e.phase(), e.fenced(e.src), e.fenced(e.dst))
	}
	if got := readFile(t, filepath.Join(e.dir, "route")); strings.TrimSpace(got) != "source" {
		t.Fatalf("the routing hook did not route back to the source: %q", got)
	}
	acked = l.snapshot()
	l.check(t, e, e.src, "source after rollback", acked)
	time.Sleep(time.Second)
	acked = l.snapshot()
	e.waitCaughtUp(d)
	l.check(t, e, e.dst, "target through the new forward stream", acked)

	// A second cutover needs a fresh verify: the rollback invalidated the last one.
	if out, code := e.cli("cutover", "--confirm", "cut", "--force"); code == 0 || !strings.Contains(out, "verify") {
		t.Errorf("cutover after a rollback without a new verify: exit %d:\n%s", code, out)
	}
	e.verifyClean()
	e.mustCLI("cutover", "--confirm", "cut", "--force")
	if e.phase() != "switched" {
		t.Fatalf("second cutover: phase %s", e.phase())
	}
	time.Sleep(time.Second)
	l.finish(t)
	e.waitStreamCaughtUp(d, "reverse")
	l.check(t, e, e.dst, "target after the second cutover", nil)
	l.check(t, e, e.src, "old source after the second cutover", nil)
	e.compare()

	out = e.mustCLI("complete", "--confirm", "cut")
	if e.phase() != "completed" || e.slots(e.src) != "" || e.slots(e.dst) != "" {
		t.Fatalf("after complete: phase %s, slots %q / %q:\n%s", e.phase(), e.slots(e.src), e.slots(e.dst), out)
	}
	e.stop(d)
}

// TestCutoverDrainTimeout stalls apply with a lock on the target: the cutover cannot drain in
// time, so the source is unfenced and the migration goes back to streaming, having lost nothing.
func TestCutoverDrainTimeout(t *testing.T) {
	e := newEnv(t, "stall")
	seed(t, e.src, 500)
	seedLedger(t, e)
	e.cutoverConfigLag("2s", "", "3s")
	d := e.start()
	e.waitStreaming(d)
	l := startLedger(t, e, 2)
	e.verifyClean()

	ctx := context.Background()
	lock := e.connect(e.dst)
	defer lock.Close(ctx)
	tx, err := lock.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE public.ledger IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	out, code := e.cli("cutover", "--confirm", "stall", "--force")
	if code == 0 || !strings.Contains(out, "fence position") || !strings.Contains(out, "aborted") {
		t.Fatalf("cutover with a stalled apply: exit %d, want an aborted drain:\n%s", code, out)
	}
	// With apply still stalled, lag grows past cutover.max-lag and the cutover is refused.
	e.waitFor(d, "lag above max-lag", time.Minute, func() bool {
		lag, _ := e.statusField("stream", "lag_seconds").(float64)
		return lag > 3.5
	})
	if out, code := e.cli("cutover", "--confirm", "stall", "--force"); code == 0 || !strings.Contains(out, "cutover.max-lag") {
		t.Errorf("cutover with lag above max-lag: exit %d, want a refusal naming the lag:\n%s", code, out)
	}
	if e.fenced(e.src) {
		t.Fatal("the refused cutover fenced the source")
	}
	_ = tx.Rollback(ctx)
	if e.fenced(e.src) {
		t.Fatal("the source is still fenced after the aborted cutover")
	}
	e.waitFor(d, "streaming again", time.Minute, func() bool { return e.phase() == "streaming" })
	if s := e.slots(e.dst); s != "" {
		t.Errorf("the aborted cutover left slots on the target: %s", s)
	}
	if e.statusField("operation", "outcome") != "aborted" {
		t.Errorf("status does not show the aborted cutover: %v", e.statusField("operation"))
	}
	time.Sleep(time.Second)
	l.finish(t)
	e.waitCaughtUp(d)
	l.check(t, e, e.dst, "target after the aborted cutover", nil)
	e.stop(d)
	e.compare()
}

// TestCutoverCrashAtEachStep kills the daemon at every step of a cutover, after the step's work
// and before its journal says done, and restarts it: before the commit the cutover is undone,
// after it the cutover is finished. Either way nothing acknowledged is lost.
func TestCutoverCrashAtEachStep(t *testing.T) {
	e := newEnv(t, "crash")
	seed(t, e.src, 300)
	seedLedger(t, e)
	e.cutoverConfig("10s", "")
	d := e.start()
	e.waitStreaming(d)
	l := startLedger(t, e, 2)
	steps := []struct {
		step      string
		committed bool
	}{
		{"fence-source", false}, {"drain", false}, {"final-check", false}, {"sequences", false},
		{"prepare-reverse", false},
		// The commit's done record is the commit itself: a crash before it undoes the cutover.
		{"commit", false}, {"target-writable", true}, {"route", true},
	}
	for _, s := range steps {
		if only := os.Getenv("MIGRATED_TEST_CRASH_STEP"); only != "" && only != s.step {
			continue
		}
		e.verifyClean()
		d = e.crashAt(d, s.step, func() bool {
			return e.phase() == "streaming" && e.statusField("stream", "connected") == true
		}, "cutover", "--confirm", "crash", "--force")
		want := "streaming"
		if s.committed {
			want = "switched"
		}
		e.waitRecovered(d, want, s.step)
		if got := e.fenced(e.src); got != s.committed {
			t.Fatalf("crash at %s: source fenced = %v, want %v", s.step, got, s.committed)
		}
		if got := e.fenced(e.dst); got {
			t.Fatalf("crash at %s: target fenced", s.step)
		}
		if s.committed {
			if strings.TrimSpace(readFile(t, filepath.Join(e.dir, "route"))) != "target" {
				t.Fatalf("crash at %s: the hook did not route to the target after the roll forward", s.step)
			}
			acked := l.snapshot()
			e.waitStreamCaughtUp(d, "reverse")
			l.check(t, e, e.src, "old source after the crash at "+s.step, acked)
			e.mustCLI("rollback", "--confirm", "crash")
		} else if s := e.slots(e.dst); s != "" {
			t.Fatalf("the undone cutover left slots on the target: %s", s)
		}
		acked := l.snapshot()
		e.waitCaughtUp(d)
		l.check(t, e, e.dst, "target after the crash at "+s.step, acked)
		t.Logf("crash at %s: recovered to %s", s.step, want)
	}
	l.finish(t)
	e.waitCaughtUp(d)
	e.stop(d)
	e.compare()
}

// crashAt restarts the daemon with a fault that kills it after step's work and before its
// journal says done, waits until ready, runs the CLI action that reaches the step, waits for the
// daemon to die, and starts it again.
func (e *env) crashAt(d *proc, step string, ready func() bool, action ...string) *proc {
	e.t.Helper()
	e.stop(d)
	d = e.startEnv("MIGRATED_FAULT=crash-before-done:" + step)
	e.waitFor(d, "ready for "+action[0], time.Minute, ready)
	out, code := e.cli(action...)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		e.t.Fatalf("crash at %s: the daemon did not die (exit %d):\n%s", step, code, out)
	}
	return e.start()
}

// waitRecovered waits until the restarted daemon has finished or undone the interrupted operation
// and shows phase want.
func (e *env) waitRecovered(d *proc, want, step string) {
	e.t.Helper()
	e.waitFor(d, want+" after the crash at "+step, time.Minute, func() bool {
		return e.phase() == want && e.statusField("operation", "outcome") != "running"
	})
}

func (e *env) startEnv(env ...string) *proc {
	e.t.Helper()
	cmd := exec.Command(binary, "run", "--config", e.config)
	cmd.Env = append(os.Environ(), env...)
	return e.startCmd(cmd)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestPauseResumeCancel pauses the stream (the target stops moving while the source writes),
// resumes it (it catches up), then cancels the migration: slot and publication leave the source.
func TestPauseResumeCancel(t *testing.T) {
	e := newEnv(t, "pause")
	seed(t, e.src, 300)
	seedLedger(t, e)
	d := e.start()
	e.waitStreaming(d)
	e.waitCaughtUp(d)
	out := e.mustCLI("pause")
	if e.statusField("paused") != true || !strings.Contains(out, "paused") {
		t.Fatalf("after pause: status paused = %v:\n%s", e.statusField("paused"), out)
	}
	if out, code := e.cli("cutover", "--confirm", "pause", "--force"); code == 0 || !strings.Contains(out, "paused") {
		t.Errorf("cutover while paused: exit %d, want a refusal naming the pause:\n%s", code, out)
	}
	e.exec(e.src, `INSERT INTO public.ledger (worker, n, side) SELECT -2, n, 'source' FROM generate_series(1, 100) n`)
	time.Sleep(time.Second)
	conn := e.connect(e.dst)
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM public.ledger WHERE worker = -2`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the paused stream applied %d rows (%v)", n, err)
	}
	conn.Close(context.Background())
	e.mustCLI("resume")
	e.waitCaughtUp(d)
	e.compare()

	if out, code := e.cli("cancel"); code == 0 {
		t.Fatalf("cancel without --confirm succeeded:\n%s", out)
	}
	e.mustCLI("cancel", "--confirm", "pause")
	if e.phase() != "cancelled" || e.slots(e.src) != "" {
		t.Fatalf("after cancel: phase %s, slots %q", e.phase(), e.slots(e.src))
	}
	src := e.connect(e.src)
	defer src.Close(context.Background())
	var pubs int
	if err := src.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication`).Scan(&pubs); err != nil || pubs != 0 {
		t.Fatalf("publications left on the source after cancel: %d (%v)", pubs, err)
	}
	e.stop(d)
	// A restart of a cancelled migration stays cancelled and streams nothing.
	d = e.start()
	e.waitFor(d, "cancelled after a restart", time.Minute, func() bool { return e.phase() == "cancelled" })
	if s := e.slots(e.src); s != "" {
		t.Fatalf("a restart of a cancelled migration made slots: %s", s)
	}
	e.stop(d)
}

// TestRollbackCrashAtEachStep kills the daemon at every step of a rollback, after the step's work
// and before its journal says done: before the rollback's commit it is undone (the target keeps
// the writes), after it it is finished (the source takes them). Nothing acknowledged is lost.
func TestRollbackCrashAtEachStep(t *testing.T) {
	e := newEnv(t, "rbcrash")
	seed(t, e.src, 300)
	seedLedger(t, e)
	e.cutoverConfig("10s", "")
	d := e.start()
	e.waitStreaming(d)
	l := startLedger(t, e, 2)
	reverseUp := func() bool {
		return e.phase() == "switched" && e.statusField("reverse", "connected") == true
	}
	steps := []struct {
		step      string
		committed bool
	}{
		{"fence-target", false}, {"drain-reverse", false}, {"sequences-back", false}, {"resume-forward", false},
		{"rollback-commit", false}, {"source-writable", true}, {"route-back", true},
	}
	for _, s := range steps {
		if only := os.Getenv("MIGRATED_TEST_CRASH_STEP"); only != "" && only != s.step {
			continue
		}
		if e.phase() != "switched" {
			e.verifyClean()
			e.mustCLI("cutover", "--confirm", "rbcrash", "--force")
		}
		d = e.crashAt(d, s.step, reverseUp, "rollback", "--confirm", "rbcrash")
		want := "switched"
		if s.committed {
			want = "streaming"
		}
		e.waitRecovered(d, want, s.step)
		if src, dst := e.fenced(e.src), e.fenced(e.dst); src == s.committed || dst != s.committed {
			t.Fatalf("crash at %s: source fenced %v, target fenced %v; want the %s fenced only", s.step, src, dst, map[bool]string{true: "target", false: "source"}[s.committed])
		}
		acked := l.snapshot()
		if s.committed {
			if strings.TrimSpace(readFile(t, filepath.Join(e.dir, "route"))) != "source" {
				t.Fatalf("crash at %s: the hook did not route back to the source", s.step)
			}
			l.check(t, e, e.src, "source after the crash at "+s.step, acked)
			e.waitCaughtUp(d)
			l.check(t, e, e.dst, "target after the crash at "+s.step, acked)
		} else {
			l.check(t, e, e.dst, "target after the crash at "+s.step, acked)
			e.waitFor(d, "the reverse stream", time.Minute, reverseUp)
			e.waitStreamCaughtUp(d, "reverse")
			l.check(t, e, e.src, "old source after the crash at "+s.step, acked)
		}
		t.Logf("crash at %s: recovered to %s", s.step, want)
	}
	if e.phase() == "switched" {
		e.mustCLI("rollback", "--confirm", "rbcrash")
	}
	l.finish(t)
	e.waitCaughtUp(d)
	e.stop(d)
	e.compare()
}
