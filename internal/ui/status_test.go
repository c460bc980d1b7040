package ui

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/server"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var now = time.Date(2025, 3, 1, 13, 2, 3, 0, time.UTC)

func endpoints(s server.Status) server.Status {
	s.Migration = "orders-to-pg16"
	s.Source = server.Endpoint{Engine: "postgres", DSN: "postgres://app@db1.internal:5432/shop?sslmode=require"}
	s.Target = server.Endpoint{Engine: "postgres", DSN: "postgres://app@db2.internal:5432/shop"}
	return s
}

func snapshotting() server.Status {
	return endpoints(server.Status{
		Phase: "snapshotting",
		Since: now.Add(-62 * time.Minute),
		Snapshot: server.SnapshotState{
			TablesTotal: 4, TablesDone: 1, RowsCopied: 1_334_567, RowsEstimate: 2_410_000, ETASeconds: 750,
			Tables: []server.TableState{
				{Table: "public.customers", State: "done", RowsCopied: 100_000, RowsEstimate: 98_000, ChunksTotal: 1, ChunksDone: 1},
				{Table: "public.orders", State: "copying", RowsCopied: 1_234_567, RowsEstimate: 2_000_000, ChunksTotal: 5, ChunksDone: 3},
				{Table: "public.order_items", State: "pending", RowsEstimate: 312_000, ChunksTotal: 12},
				{Table: "audit.events", State: "copying", RowsCopied: 0},
			},
		},
	})
}

func streaming() server.Status {
	return endpoints(server.Status{
		Phase: "streaming",
		Since: now.Add(-3*time.Hour - 4*time.Minute),
		Snapshot: server.SnapshotState{
			TablesTotal: 4, TablesDone: 4, RowsCopied: 2_412_345, RowsEstimate: 2_410_000,
			Tables: []server.TableState{{Table: "public.orders", State: "done", RowsCopied: 2_000_000}},
		},
		Stream: server.StreamState{
			SourcePosition: "3/7A1B2C40", AppliedPosition: "3/7A000000",
			LastCommitTime: now.Add(-1500 * time.Millisecond),
			LagSeconds:     1.234, LagBytes: 12_897_345,
			ChangesApplied: 9_876_543, TxnsApplied: 123_456, Connected: true,
		},
	})
}

func failed() server.Status {
	s := streaming()
	s.Phase = "failed"
	s.Since = now.Add(-45 * time.Second)
	s.Stream.Connected = false
	s.Error = "replication slot migrated_orders was dropped on the source; the change stream cannot resume. " +
		"Run `migrated cancel` and start a new migration."
	return s
}

func manyTables() server.Status {
	s := snapshotting()
	s.Snapshot.Tables = nil
	for i := range 25 {
		state := "pending"
		switch {
		case i < 10:
			state = "done"
		case i == 10 || i == 11:
			state = "copying"
		}
		t := server.TableState{Table: fmt.Sprintf("public.t%02d", i), State: state, RowsEstimate: 1000, ChunksTotal: 2}
		if state == "done" {
			t.RowsCopied, t.ChunksDone = 1000, 2
		}
		if state == "copying" {
			t.RowsCopied, t.ChunksDone = 500, 1
		}
		s.Snapshot.Tables = append(s.Snapshot.Tables, t)
	}
	s.Snapshot.TablesTotal, s.Snapshot.TablesDone = 25, 10
	return s
}

// cutoverSteps are the step times of a cutover that went through, in seconds.
func cutoverSteps() map[string]float64 {
	return map[string]float64{"fence-source": 0.012, "drain": 0.31, "final-check": 0.254, "sequences": 0.02,
		"prepare-reverse": 0.18, "commit": 0.004, "target-writable": 0.031, "route": 0.09}
}

// switched is a migration after its cutover: the reverse stream runs, the last verify was
// clean, and the cutover is done.
func switched() server.Status {
	s := streaming()
	s.Phase = "switched"
	s.Since = now.Add(-20 * time.Minute)
	s.Stream.Connected, s.Stream.AppliedPosition = false, "3/7A1B2C40"
	s.Reverse = &server.StreamState{
		SourcePosition: "0/5A0031C8", AppliedPosition: "0/5A002F10",
		LastCommitTime: now.Add(-300 * time.Millisecond),
		LagSeconds:     0.25, LagBytes: 696,
		ChangesApplied: 48_211, TxnsApplied: 16_070, Connected: true,
	}
	s.Verify = &server.VerifyState{Run: 3, StartedAt: now.Add(-50 * time.Minute), FinishedAt: now.Add(-41 * time.Minute),
		Tables: 4, TablesDone: 4, Chunks: 1_241, Clean: true}
	s.Operation = &server.OperationState{Op: "cutover", Outcome: "done",
		StartedAt: now.Add(-20*time.Minute - 1400*time.Millisecond), FinishedAt: now.Add(-20 * time.Minute),
		FencePosition: "3/7A1B2C40", WriteUnavailableSeconds: 0.841, StepSeconds: cutoverSteps()}
	return s
}

func hookFailed() server.Status {
	s := switched()
	s.Operation.HookError = "hook exec /usr/local/bin/route-writes: exit status 2; output:\nconsul: connection refused; " +
		"the cutover is done and the target takes writes: point the application at postgres://app@db2.internal:5432/shop by hand"
	return s
}

// cuttingOver is a cutover in its drain: the source is fenced and the stream stopped.
func cuttingOver() server.Status {
	s := streaming()
	s.Phase = "cutting-over"
	s.Since = now.Add(-1200 * time.Millisecond)
	s.Stream.Connected = false
	s.Verify = switched().Verify
	s.Operation = &server.OperationState{Op: "cutover", Outcome: "running", Step: "drain",
		StartedAt: now.Add(-1200 * time.Millisecond), FencePosition: "3/7A1B2C40",
		StepSeconds: map[string]float64{"fence-source": 0.012}}
	return s
}

// aborted is a cutover whose drain ran out of cutover.timeout: it was undone.
func aborted() server.Status {
	s := streaming()
	s.Since = now.Add(-40 * time.Second)
	s.Operation = &server.OperationState{Op: "cutover", Outcome: "aborted",
		StartedAt: now.Add(-45 * time.Second), FinishedAt: now.Add(-42 * time.Second),
		FencePosition: "3/7A1B2C40", WriteUnavailableSeconds: 2.07,
		StepSeconds: map[string]float64{"fence-source": 0.012, "drain": 2.0, "unfence-source": 0.041},
		Error: "drain did not finish within cutover.timeout (2s) of the fence: the forward stream did not reach the fence " +
			"position 3/7A1B2C40 in time (applied 3/7A000000); find what slows apply (migrated status, the target's locks) " +
			"and try again: context deadline exceeded"}
	return s
}

// failedAfterCommit is a cutover whose step after the commit kept failing.
func failedAfterCommit() server.Status {
	s := switched()
	s.Phase = "failed"
	s.Error = "target-writable failed 5 times: unfence database shop: connection refused; fix the cause and restart migrated, which retries it"
	s.Reverse = nil
	o := s.Operation
	o.Outcome, o.FinishedAt, o.Step, o.Error = "failed", time.Time{}, "", s.Error
	o.WriteUnavailableSeconds = 0
	delete(o.StepSeconds, "route")
	return s
}

func rollingBack() server.Status {
	s := switched()
	s.Phase = "rolling-back"
	s.Since = now.Add(-800 * time.Millisecond)
	s.Reverse.Connected = false
	s.Operation = &server.OperationState{Op: "rollback", Outcome: "running", Step: "sequences-back",
		StartedAt: now.Add(-800 * time.Millisecond), FencePosition: "0/5A0031C8",
		StepSeconds: map[string]float64{"fence-target": 0.015, "drain-reverse": 0.102}}
	return s
}

// rolledBack is streaming again after a rollback, which invalidated the last verify.
func rolledBack() server.Status {
	s := streaming()
	s.Since = now.Add(-5 * time.Minute)
	s.Reverse = switched().Reverse // left over from the dual-write phase
	s.Reverse.Connected = false
	s.Verify = switched().Verify
	s.Verify.Clean, s.Verify.FinishedAt = false, now.Add(-5*time.Minute)
	s.Verify.Error = "invalidated: rolled back; verify again before the next cutover"
	s.Operation = &server.OperationState{Op: "rollback", Outcome: "done",
		StartedAt: now.Add(-5*time.Minute - 900*time.Millisecond), FinishedAt: now.Add(-5 * time.Minute),
		FencePosition: "0/5A0031C8", WriteUnavailableSeconds: 0.62,
		StepSeconds: map[string]float64{"fence-target": 0.015, "drain-reverse": 0.102, "sequences-back": 0.02,
			"resume-forward": 0.2, "rollback-commit": 0.003, "source-writable": 0.03, "route-back": 0.1}}
	return s
}

func verifyRunning() server.Status {
	s := streaming()
	s.Verify = &server.VerifyState{Run: 4, Running: true, StartedAt: now.Add(-62 * time.Second),
		Tables: 4, TablesDone: 2, Chunks: 345, Mismatched: 1,
		Samples: []server.Mismatch{{Table: "public.orders", Key: "(42)", Kind: "missing"}}}
	return s
}

func verifyDirty() server.Status {
	s := streaming()
	s.Verify = &server.VerifyState{Run: 4, StartedAt: now.Add(-20 * time.Minute), FinishedAt: now.Add(-12 * time.Minute),
		Tables: 4, TablesDone: 4, Chunks: 1_241, Mismatched: 3}
	// At most 5 rows per table: 12 rows in 3 tables.
	for i := range 12 {
		kind := []string{"missing", "different", "extra"}[i%3]
		table := []string{"public.order_items", "public.orders", "audit.events"}[i/5]
		s.Verify.Samples = append(s.Verify.Samples, server.Mismatch{Table: table, Key: fmt.Sprintf("(%d,sku-%d)", 1000+i, i), Kind: kind})
	}
	return s
}

func verifyFailed() server.Status {
	s := streaming()
	s.Verify = &server.VerifyState{Run: 5, StartedAt: now.Add(-3 * time.Minute), Tables: 4, TablesDone: 1, Chunks: 80,
		Error: "verify public.orders chunk 81 (keys after (80000)): the change stream is not catching up: the applied " +
			"position 3/7A000000 has not reached the source position 3/7B000000 in 30s; check that the migration is " +
			"streaming and its lag is falling; run verify again to resume at this chunk"}
	return s
}

func TestRenderStatus(t *testing.T) {
	paused := streaming()
	paused.Paused = true
	pausedSwitched := switched()
	pausedSwitched.Paused, pausedSwitched.Reverse.Connected = true, false
	tests := []struct {
		name   string
		status server.Status
		opts   RenderOptions
	}{
		{"snapshotting", snapshotting(), RenderOptions{Width: 100}},
		{"snapshotting_narrow", snapshotting(), RenderOptions{Width: 60}},
		{"snapshotting_color", snapshotting(), RenderOptions{Width: 100, Color: true}},
		{"streaming", streaming(), RenderOptions{}},
		{"paused", paused, RenderOptions{Width: 100}},
		{"failed", failed(), RenderOptions{Width: 80}},
		{"failed_color", failed(), RenderOptions{Width: 80, Color: true}},
		{"many_tables", manyTables(), RenderOptions{Width: 90}},
		{"empty", server.Status{}, RenderOptions{}},
		{"switched", switched(), RenderOptions{}},
		{"switched_paused", pausedSwitched, RenderOptions{}},
		{"hook_failed", hookFailed(), RenderOptions{}},
		{"hook_failed_color", hookFailed(), RenderOptions{Color: true}},
		{"cutting_over", cuttingOver(), RenderOptions{}},
		{"cutover_aborted", aborted(), RenderOptions{}},
		{"cutover_aborted_color", aborted(), RenderOptions{Color: true}},
		{"failed_after_commit", failedAfterCommit(), RenderOptions{}},
		{"rolling_back", rollingBack(), RenderOptions{}},
		{"rolled_back", rolledBack(), RenderOptions{}},
		{"verify_running", verifyRunning(), RenderOptions{}},
		{"verify_dirty", verifyDirty(), RenderOptions{}},
		{"verify_failed", verifyFailed(), RenderOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = now
			var buf bytes.Buffer
			RenderStatus(&buf, tt.status, tt.opts)
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("output differs from %s (run go test -update to accept):\n got:\n%s\nwant:\n%s", golden, got, want)
			}
			if !tt.opts.Color && strings.Contains(buf.String(), "\x1b[") {
				t.Error("colour codes without Color")
			}
		})
	}
}

// TestRenderWidth checks that no indented line (a table bar, a step, a wrapped message) is wider
// than asked, down to a narrow terminal.
func TestRenderWidth(t *testing.T) {
	for _, st := range []server.Status{snapshotting(), hookFailed(), aborted(), verifyDirty(), verifyFailed()} {
		for _, width := range []int{60, 80, 120} {
			var buf bytes.Buffer
			RenderStatus(&buf, st, RenderOptions{Width: width, Now: now})
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.HasPrefix(l, "  ") && len([]rune(l)) > width {
					t.Errorf("%s, width %d: line is %d wide: %q", st.Phase, width, len([]rune(l)), l)
				}
			}
		}
	}
}

// TestHookAlert checks when a failed routing hook is raised next to the phase: only while the
// migration is still in the phase the operation left it in.
func TestHookAlert(t *testing.T) {
	rollback := rolledBack()
	rollback.Operation.HookError = "hook webhook https://router.internal/migrated: HTTP 503"
	completed := hookFailed()
	completed.Phase = "completed"
	tests := []struct {
		name   string
		status server.Status
		want   bool
	}{
		{"cutover hook failed, switched", hookFailed(), true},
		{"rollback hook failed, streaming", rollback, true},
		{"cutover hook failed, completed since", completed, false},
		{"hook fine", switched(), false},
		{"no operation", streaming(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := hookAlert(tt.status), tt.want; got != want {
				t.Errorf("hookAlert = %v, want %v", got, want)
			}
		})
	}
}

// TestRenderOperationSteps checks that the steps appear in the order of cutover.Plan, whatever
// the map order, with the ones outside the plan after them.
func TestRenderOperationSteps(t *testing.T) {
	tests := []struct {
		name   string
		status server.Status
		want   []string
	}{
		{"cutover", switched(), []string{"fence-source", "drain", "final-check", "sequences", "prepare-reverse", "commit", "target-writable", "route"}},
		{"aborted cutover", aborted(), []string{"fence-source", "drain", "final-check", "route", "unfence-source"}},
		{"rollback", rolledBack(), []string{"fence-target", "drain-reverse", "sequences-back", "resume-forward", "rollback-commit", "source-writable", "route-back"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			RenderStatus(&buf, tt.status, RenderOptions{Now: now})
			out := buf.String()
			last := -1
			for _, step := range tt.want {
				i := strings.Index(out, "\n  "+step+" ")
				if i < 0 {
					t.Fatalf("step %s is missing:\n%s", step, out)
				}
				if i < last {
					t.Errorf("step %s is out of plan order:\n%s", step, out)
				}
				last = i
			}
		})
	}
}
