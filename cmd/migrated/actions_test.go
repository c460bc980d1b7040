package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/server"
)

// fakeDaemon serves the real control API with fake actions and status on a free port, and
// returns the flags that point the CLI at it.
func fakeDaemon(t *testing.T, status func() server.Status, actions map[string]server.ActionFunc) []string {
	t.Helper()
	if status == nil {
		status = func() server.Status { return server.Status{Migration: "orders", Phase: "streaming"} }
	}
	srv, err := server.New(server.Options{Listen: "127.0.0.1:0", Status: status, Actions: actions})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	// No config file: the CLI falls back to --listen.
	return []string{"--config", filepath.Join(t.TempDir(), "none.yaml"), "--listen", srv.Addr()}
}

// recorder is an action that records its requests and answers with result, err.
type recorder struct {
	mu   sync.Mutex
	reqs []server.ActionRequest
}

func (r *recorder) action(result any, err error) server.ActionFunc {
	return func(_ context.Context, req server.ActionRequest) (any, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.reqs = append(r.reqs, req)
		return result, err
	}
}

func (r *recorder) requests() []server.ActionRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]server.ActionRequest(nil), r.reqs...)
}

var cutoverSteps = []string{"fence-source", "drain", "final-check", "sequences", "prepare-reverse", "commit", "target-writable", "route"}

func passing() []server.Check {
	return []server.Check{
		{Name: "confirm", OK: true, Detail: "migration orders"},
		{Name: "phase", OK: true, Detail: "streaming"},
		{Name: "window", OK: true, Detail: "inside the maintenance window"},
		{Name: "lag", OK: true, Detail: "lag 120ms, at most 5s (cutover.max-lag)"},
		{Name: "verify", OK: true, Detail: "clean, 2m0s ago"},
		{Name: "reverse", OK: true, Detail: "a slot and publication can be created on the target"},
	}
}

func TestCutoverDryRun(t *testing.T) {
	failing := passing()
	failing[3] = server.Check{Name: "lag", OK: false, Detail: "lag 12s, at most 5s (cutover.max-lag); wait for the stream to catch up, or find what slows apply"}

	for _, c := range []struct {
		name   string
		checks []server.Check
		code   int
		tail   string
	}{
		{"failed check", failing, exitError,
			"migrated: cutover would be refused: lag failed; fix them and run the dry run again\n"},
		{"every check passes", passing(), exitOK,
			"\nevery check passed; run it again without --dry-run to cut over\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var rec recorder
			plan := server.CutoverPlan{Op: "cutover", DryRun: true, Checks: c.checks, Steps: cutoverSteps}
			flags := fakeDaemon(t, nil, map[string]server.ActionFunc{"cutover": rec.action(plan, nil)})

			out, code := runCLI(t, append(flags, "cutover", "--dry-run", "--confirm", "orders")...)
			if code != c.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, c.code, out)
			}
			var want strings.Builder
			want.WriteString("cutover dry run: nothing was changed\n")
			for _, ch := range c.checks {
				mark := "PASS"
				if !ch.OK {
					mark = "FAIL"
				}
				want.WriteString(mark + " " + (ch.Name + "            ")[:12] + " " + ch.Detail + "\n")
			}
			want.WriteString("\nsteps:\n  1. fence-source\n  2. drain\n  3. final-check\n  4. sequences\n  5. prepare-reverse\n  6. commit\n  7. target-writable\n  8. route\n")
			want.WriteString(c.tail)
			if got := out; got != want.String() {
				t.Errorf("output\n%s\nwant\n%s", got, want.String())
			}
			if got, want := rec.requests(), []server.ActionRequest{{Confirm: "orders", DryRun: true}}; len(got) != 1 || got[0] != want[0] {
				t.Errorf("requests %+v, want %+v", got, want)
			}
		})
	}
}

func TestCutoverOutcome(t *testing.T) {
	start := time.Date(2024, 6, 1, 1, 0, 0, 0, time.UTC)
	done := &server.OperationState{
		Op: "cutover", Outcome: "done", StartedAt: start, FinishedAt: start.Add(1500 * time.Millisecond),
		FencePosition: "0/16B3748", WriteUnavailableSeconds: 0.412,
		StepSeconds: map[string]float64{
			"fence-source": 0.012, "drain": 0.3, "final-check": 0.02, "sequences": 0.01,
			"prepare-reverse": 0.05, "commit": 0.005, "target-writable": 0.015, "route": 1.088,
		},
	}
	hookFailed := *done
	hookFailed.HookError = "hook exec /usr/local/bin/route-writes: exit status 3; output:\nproxy said no; the cutover is done and the target takes writes: point the application at postgres://migrated@db2/app by hand"
	aborted := &server.OperationState{
		Op: "cutover", Outcome: "aborted", StartedAt: start, FinishedAt: start.Add(30 * time.Second),
		WriteUnavailableSeconds: 30.01,
		StepSeconds:             map[string]float64{"fence-source": 0.012, "unfence-source": 0.008},
		Error:                   "drain did not finish within 30s (cutover.timeout); find what slows apply, then try again",
	}

	doneSteps := `steps:
   1. fence-source     0.012s
   2. drain            0.300s
   3. final-check      0.020s
   4. sequences        0.010s
   5. prepare-reverse  0.050s
   6. commit           0.005s
   7. target-writable  0.015s
   8. route            1.088s
writes unavailable: 0.412s
fence position: 0/16B3748
the target takes writes
`
	for _, c := range []struct {
		name   string
		result *server.OperationState
		code   int
		want   string
	}{
		{"done", done, exitOK, "cutover done in 1.500s\n" + doneSteps},
		{"hook failed", &hookFailed, exitOK, "cutover done in 1.500s\n" + doneSteps +
			"\n*** ROUTING HOOK FAILED: the cutover is done and the target takes writes, but the application was not sent there ***\n" +
			hookFailed.HookError + "\n\n"},
		{"aborted", aborted, exitError, `cutover aborted in 30.000s
steps:
   1. fence-source     0.012s
   2. drain            did not finish
   3. final-check      not run
   4. sequences        not run
   5. prepare-reverse  not run
   6. commit           not run
   7. target-writable  not run
   8. route            not run
      unfence-source   0.008s
writes unavailable: 30.010s
migrated: cutover aborted before its commit; the source takes writes as before: drain did not finish within 30s (cutover.timeout); find what slows apply, then try again
`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var rec recorder
			plan := server.CutoverPlan{Op: "cutover", Checks: passing(), Steps: cutoverSteps, Result: c.result}
			flags := fakeDaemon(t, nil, map[string]server.ActionFunc{"cutover": rec.action(plan, nil)})
			out, code := runCLI(t, append(flags, "cutover", "--confirm", "orders", "--force")...)
			if code != c.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, c.code, out)
			}
			if out != c.want {
				t.Errorf("output\n%s\nwant\n%s", out, c.want)
			}
			if got, want := rec.requests(), []server.ActionRequest{{Confirm: "orders", Force: true}}; len(got) != 1 || got[0] != want[0] {
				t.Errorf("requests %+v, want %+v", got, want)
			}
		})
	}
}

func TestCutoverJSON(t *testing.T) {
	plan := server.CutoverPlan{Op: "cutover", Checks: passing(), Steps: cutoverSteps,
		Result: &server.OperationState{Op: "cutover", Outcome: "done", StepSeconds: map[string]float64{"drain": 0.3}}}
	flags := fakeDaemon(t, nil, map[string]server.ActionFunc{"cutover": (&recorder{}).action(plan, nil)})
	out, code := runCLI(t, append(flags, "cutover", "--confirm", "orders", "-o", "json")...)
	if code != exitOK {
		t.Fatalf("exit code %d; output:\n%s", code, out)
	}
	var got server.CutoverPlan
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not a plan: %v\n%s", err, out)
	}
	if got.Result == nil || got.Result.Outcome != "done" || len(got.Checks) != 6 {
		t.Errorf("plan = %+v", got)
	}
	if out, code := runCLI(t, append(flags, "cutover", "-o", "yaml")...); code != exitConfig || !strings.Contains(out, "-o must be text or json") {
		t.Errorf("-o yaml: exit code %d, output:\n%s", code, out)
	}
}

// TestCutoverRefused: the daemon judges a missing --confirm with the other checks, and its 409
// is shown as the daemon wrote it.
func TestCutoverRefused(t *testing.T) {
	var rec recorder
	msg := "cutover refused; nothing was changed:\n  - confirm: pass --confirm orders to cut over this migration\n  - lag: lag 12s, at most 5s (cutover.max-lag)"
	flags := fakeDaemon(t, nil, map[string]server.ActionFunc{
		"cutover": rec.action(nil, &server.ActionError{Code: http.StatusConflict, Msg: msg}),
	})
	out, code := runCLI(t, append(flags, "cutover")...)
	if code != exitError {
		t.Errorf("exit code %d, want %d", code, exitError)
	}
	if got, want := out, "migrated: "+msg+"\n"; got != want {
		t.Errorf("output\n%s\nwant\n%s", got, want)
	}
	if got := rec.requests(); len(got) != 1 || got[0] != (server.ActionRequest{}) {
		t.Errorf("requests %+v, want one without confirm", got)
	}

	// A 409 whose message does not say what was refused gets the action's name.
	flags = fakeDaemon(t, nil, map[string]server.ActionFunc{
		"pause": (&recorder{}).action(nil, &server.ActionError{Code: http.StatusConflict, Msg: "phase is completed; there is nothing to pause"}),
	})
	out, code = runCLI(t, append(flags, "pause")...)
	if got, want := out, "migrated: pause refused: phase is completed; there is nothing to pause\n"; code != exitError || got != want {
		t.Errorf("pause: exit code %d, output\n%s\nwant\n%s", code, got, want)
	}
}

func TestActionConfirmRequired(t *testing.T) {
	var rec recorder
	actions := map[string]server.ActionFunc{}
	for _, name := range []string{"rollback", "complete", "cancel"} {
		actions[name] = rec.action(server.ActionResult{Action: name}, nil)
	}
	flags := fakeDaemon(t, nil, actions)
	for _, name := range []string{"rollback", "complete", "cancel"} {
		t.Run(name, func(t *testing.T) {
			out, code := runCLI(t, append(flags, name)...)
			if code != exitConfig {
				t.Errorf("exit code %d, want %d", code, exitConfig)
			}
			if want := "; pass --confirm with the migration's name (shown by `migrated status`) to go ahead"; !strings.HasPrefix(out, "migrated: usage error: "+name+" ") || !strings.Contains(out, want) {
				t.Errorf("output\n%s\nwant a usage error that asks for --confirm", out)
			}
		})
	}
	if got := rec.requests(); len(got) != 0 {
		t.Errorf("the daemon was called without --confirm: %+v", got)
	}
}

func TestActionSimple(t *testing.T) {
	var rec recorder
	flags := fakeDaemon(t, nil, map[string]server.ActionFunc{
		"pause":    rec.action(server.ActionResult{Action: "pause", Phase: "streaming", Message: "paused; resume with `migrated resume`"}, nil),
		"resume":   rec.action(server.ActionResult{Action: "resume", Phase: "streaming"}, nil),
		"complete": rec.action(server.ActionResult{Action: "complete", Phase: "completed", Message: "the migration is complete"}, nil),
		"verify":   rec.action(server.ActionResult{Action: "verify", Phase: "streaming", Message: "verify run 3 started"}, nil),
	})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pause"}, "pause: paused; resume with `migrated resume` (phase streaming)\n"},
		{[]string{"resume"}, "resume: done (phase streaming)\n"},
		{[]string{"complete", "--confirm", "orders"}, "complete: the migration is complete (phase completed)\n"},
		{[]string{"verify"}, "verify: verify run 3 started (phase streaming)\n"},
	} {
		t.Run(c.args[0], func(t *testing.T) {
			out, code := runCLI(t, append(flags, c.args...)...)
			if code != exitOK || out != c.want {
				t.Errorf("exit code %d, output\n%s\nwant 0 and\n%s", code, out, c.want)
			}
		})
	}
	if got := rec.requests(); len(got) != 4 || got[2].Confirm != "orders" {
		t.Errorf("requests %+v", got)
	}
	// An action this daemon does not serve.
	if out, code := runCLI(t, append(flags, "cancel", "--confirm", "orders")...); code != exitError || !strings.Contains(out, "not available in this version") {
		t.Errorf("cancel on a daemon without it: exit code %d, output:\n%s", code, out)
	}
}

func TestVerifyWait(t *testing.T) {
	start := time.Date(2024, 6, 1, 1, 0, 0, 0, time.UTC)
	last := &server.VerifyState{Run: 2, StartedAt: start.Add(-time.Hour), FinishedAt: start.Add(-59 * time.Minute), Tables: 3, TablesDone: 3, Chunks: 40, Clean: true}
	running := &server.VerifyState{Run: 3, Running: true, StartedAt: start, Tables: 3, TablesDone: 1, Chunks: 12, Mismatched: 1}
	dirty := &server.VerifyState{Run: 3, StartedAt: start, FinishedAt: start.Add(2500 * time.Millisecond), Tables: 3, TablesDone: 3, Chunks: 41, Mismatched: 2,
		Samples: []server.Mismatch{
			{Table: "public.orders", Key: "(42)", Kind: "missing"},
			{Table: "public.order_items", Key: "(42,1)", Kind: "different"},
		}}
	clean := *dirty
	clean.Mismatched, clean.Samples, clean.Clean = 0, nil, true
	failed := *running
	failed.Running, failed.FinishedAt, failed.Error = false, start.Add(time.Second), "read chunk public.orders (1)..(10000): connection reset; check the source and run verify again"

	for _, c := range []struct {
		name  string
		after []*server.VerifyState // the status after the request, one per poll; the last repeats
		code  int
		want  string
	}{
		{"dirty", []*server.VerifyState{last, running, dirty}, exitError, `verify: verify run 3 started (phase streaming)
verify run 3: 1/3 tables, 12 chunks, 1 mismatched
verify run 3 found differences: 2 of 41 chunks mismatched, in 3 tables compared in 2.5s
sample rows (kind, table, key):
  missing    public.orders (42)
  different  public.order_items (42,1)
migrated: verify found 2 mismatched chunks; compare the rows listed on the source and the target, fix the cause, then run ` + "`migrated verify --wait`" + ` again (a cutover needs a clean verify)
`},
		{"clean", []*server.VerifyState{running, &clean}, exitOK, `verify: verify run 3 started (phase streaming)
verify run 3: 1/3 tables, 12 chunks, 1 mismatched
verify run 3 clean: 3 tables, 41 chunks compared in 2.5s
`},
		{"failed", []*server.VerifyState{&failed}, exitError, `verify: verify run 3 started (phase streaming)
verify run 3 failed after 1/3 tables and 12 chunks
migrated: verify failed: read chunk public.orders (1)..(10000): connection reset; check the source and run verify again
`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			requested, polls := false, 0
			status := func() server.Status {
				mu.Lock()
				defer mu.Unlock()
				st := server.Status{Migration: "orders", Phase: "streaming", Verify: last}
				if requested {
					st.Verify = c.after[min(polls, len(c.after)-1)]
					polls++
				}
				return st
			}
			flags := fakeDaemon(t, status, map[string]server.ActionFunc{
				"verify": func(context.Context, server.ActionRequest) (any, error) {
					mu.Lock()
					defer mu.Unlock()
					requested = true
					return server.ActionResult{Action: "verify", Phase: "streaming", Message: "verify run 3 started"}, nil
				},
			})
			out, code := runCLI(t, append(flags, "verify", "--wait")...)
			if code != c.code {
				t.Errorf("exit code %d, want %d", code, c.code)
			}
			if out != c.want {
				t.Errorf("output\n%s\nwant\n%s", out, c.want)
			}
		})
	}
}

func TestActionHelp(t *testing.T) {
	for _, name := range []string{"pause", "resume", "verify", "cutover", "rollback", "complete", "cancel"} {
		t.Run(name, func(t *testing.T) {
			out, code := runCLI(t, name, "--help")
			if code != exitOK {
				t.Fatalf("exit code %d; output:\n%s", code, out)
			}
			if !strings.HasPrefix(out, name+" ") || !strings.Contains(out, "Examples:\n  migrated "+name) {
				t.Errorf("help has no description or example:\n%s", out)
			}
		})
	}
}

// TestCutoverAbortedAsError: the daemon answers an aborted cutover with a 409 only; the CLI
// shows the steps from the status, and not an older operation's.
func TestCutoverAbortedAsError(t *testing.T) {
	start := time.Date(2024, 6, 1, 1, 0, 0, 0, time.UTC)
	older := &server.OperationState{Op: "cutover", Outcome: "aborted", StartedAt: start.Add(-time.Hour), FinishedAt: start.Add(-time.Hour)}
	aborted := &server.OperationState{
		Op: "cutover", Outcome: "aborted", StartedAt: start, FinishedAt: start.Add(2 * time.Second),
		FencePosition: "0/3000060", WriteUnavailableSeconds: 2.004,
		StepSeconds: map[string]float64{"fence-source": 0.004, "unfence-source": 0.002},
		Error:       "drain did not finish within 2s (cutover.timeout)",
	}
	msg := "cutover aborted: drain did not finish within 2s (cutover.timeout); the source takes writes again and the migration is streaming. Nothing was lost."
	for _, c := range []struct {
		name   string
		before *server.OperationState
		after  *server.OperationState
		want   string
	}{
		{"steps from the status", older, aborted, `cutover aborted in 2.000s
steps:
   1. fence-source     0.004s
   2. drain            did not finish
   3. final-check      not run
   4. sequences        not run
   5. prepare-reverse  not run
   6. commit           not run
   7. target-writable  not run
   8. route            not run
      unfence-source   0.002s
writes unavailable: 2.004s
fence position: 0/3000060
migrated: ` + msg + "\n"},
		{"no new operation", older, older, "migrated: " + msg + "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			op := c.before
			status := func() server.Status {
				mu.Lock()
				defer mu.Unlock()
				return server.Status{Migration: "orders", Phase: "streaming", Operation: op}
			}
			flags := fakeDaemon(t, status, map[string]server.ActionFunc{
				"cutover": func(context.Context, server.ActionRequest) (any, error) {
					mu.Lock()
					defer mu.Unlock()
					op = c.after
					return nil, &server.ActionError{Code: http.StatusConflict, Msg: msg}
				},
			})
			out, code := runCLI(t, append(flags, "cutover", "--confirm", "orders")...)
			if code != exitError {
				t.Errorf("exit code %d, want %d", code, exitError)
			}
			if out != c.want {
				t.Errorf("output\n%s\nwant\n%s", out, c.want)
			}
		})
	}
}
