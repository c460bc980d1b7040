package cutover

import (
	"strings"
	"testing"
)

// journal builds a journal from "step:state" items.
func journal(op Op, items ...string) Journal {
	j := Journal{Op: op}
	for _, it := range items {
		step, state, _ := strings.Cut(it, ":")
		j.Entries = append(j.Entries, Entry{Step: Step(step), State: EntryState(state)})
	}
	return j
}

func TestNext(t *testing.T) {
	for _, tt := range []struct {
		name string
		j    Journal
		want string
	}{
		{"empty cutover starts with the fence", journal(OpCutover), "run: fence-source"},
		{"after a done step, the next", journal(OpCutover, "fence-source:started", "fence-source:done"), "run: drain"},
		{"crash while fencing aborts: the fence may have landed", journal(OpCutover, "fence-source:started"), "abort: unfence-source"},
		{"drain timeout before commit aborts", journal(OpCutover, "fence-source:started", "fence-source:done", "drain:started", "drain:failed"), "abort: unfence-source"},
		{"crash mid-drain aborts", journal(OpCutover, "fence-source:started", "fence-source:done", "drain:started"), "abort: unfence-source"},
		{"crash in the commit step aborts: commit is the done record", journal(OpCutover,
			"fence-source:started", "fence-source:done", "drain:started", "drain:done", "final-check:started", "final-check:done",
			"sequences:started", "sequences:done", "prepare-reverse:started", "prepare-reverse:done", "commit:started"), "abort: unfence-source"},
		{"after commit a crash rolls forward", journal(OpCutover,
			"fence-source:started", "fence-source:done", "drain:started", "drain:done", "final-check:started", "final-check:done",
			"sequences:started", "sequences:done", "prepare-reverse:started", "prepare-reverse:done", "commit:started", "commit:done",
			"target-writable:started"), "run: target-writable"},
		{"after commit a failure is retried, never undone", journal(OpCutover,
			"fence-source:started", "fence-source:done", "drain:started", "drain:done", "final-check:started", "final-check:done",
			"sequences:started", "sequences:done", "prepare-reverse:started", "prepare-reverse:done", "commit:started", "commit:done",
			"target-writable:started", "target-writable:done", "route:started", "route:failed"), "run: route"},
		{"all done", journal(OpCutover,
			"fence-source:done", "drain:done", "final-check:done", "sequences:done", "prepare-reverse:done", "commit:done",
			"target-writable:done", "route:done"), "finished"},
		{"interrupted abort runs again", journal(OpCutover, "fence-source:started", "fence-source:done", "drain:failed", "unfence-source:started"), "abort: unfence-source"},
		{"failed abort is retried", journal(OpCutover, "fence-source:done", "drain:failed", "unfence-source:started", "unfence-source:failed"), "abort: unfence-source"},
		{"finished abort", journal(OpCutover, "fence-source:done", "drain:failed", "unfence-source:started", "unfence-source:done"), "aborted"},
		{"rollback mirrors cutover", journal(OpRollback, "fence-target:started", "fence-target:done"), "run: drain-reverse"},
		{"rollback crash before its commit unfences the target", journal(OpRollback, "fence-target:started", "fence-target:done", "drain-reverse:started"), "abort: unfence-target"},
		{"rollback after its commit rolls forward", journal(OpRollback,
			"fence-target:done", "drain-reverse:done", "sequences-back:done", "resume-forward:done", "rollback-commit:started", "rollback-commit:done",
			"source-writable:started"), "run: source-writable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Next(tt.j)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("Next = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestNextCommitted(t *testing.T) {
	before := journal(OpCutover, "fence-source:done", "drain:done", "final-check:done", "sequences:done", "prepare-reverse:done")
	after := journal(OpCutover, "fence-source:done", "drain:done", "final-check:done", "sequences:done", "prepare-reverse:done", "commit:done")
	for _, tt := range []struct {
		j    Journal
		want bool
	}{{before, false}, {after, true}} {
		got, err := Next(tt.j)
		if err != nil {
			t.Fatal(err)
		}
		if got.Committed != tt.want {
			t.Errorf("Committed = %v after %d entries, want %v", got.Committed, len(tt.j.Entries), tt.want)
		}
	}
}

// TestRecordWalk drives a whole cutover through Record and Next, as the daemon would.
func TestRecordWalk(t *testing.T) {
	j := Journal{Op: OpCutover}
	var ran []string
	for i := 0; i < 20; i++ {
		next, err := Next(j)
		if err != nil {
			t.Fatal(err)
		}
		if next.Finished {
			break
		}
		ran = append(ran, string(next.Step))
		if j, err = Record(j, Entry{next.Step, Started}); err != nil {
			t.Fatal(err)
		}
		if j, err = Record(j, Entry{next.Step, Done}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(ran, " "), "fence-source drain final-check sequences prepare-reverse commit target-writable route"; got != want {
		t.Errorf("steps = %s, want %s", got, want)
	}
}

func TestRecordRefusesOutOfOrder(t *testing.T) {
	for _, tt := range []struct {
		name string
		j    Journal
		e    Entry
	}{
		{"skip a step", journal(OpCutover), Entry{StepDrain, Started}},
		{"done without start", journal(OpCutover), Entry{StepFence, Done}},
		{"close another step", journal(OpCutover, "fence-source:started"), Entry{StepDrain, Done}},
		{"after the end", journal(OpCutover, "fence-source:done", "drain:failed", "unfence-source:started", "unfence-source:done"), Entry{StepFence, Started}},
		{"unknown op", Journal{Op: "teleport"}, Entry{StepFence, Started}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Record(tt.j, tt.e); err == nil {
				t.Errorf("Record(%v) accepted", tt.e)
			}
		})
	}
}
