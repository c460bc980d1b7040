// Package cutover is the cutover and rollback state machine, with no I/O in its core. The engine
// work of each step (fence, drain, sequences, reverse stream) is done elsewhere; this package
// decides which step comes next, what a restart in the middle must do, and whether a cutover may
// start at all.
//
// Every step is written to a journal before it runs and again when it is done. Given the journal
// a daemon finds after a crash, Next says how to continue: before the commit step the operation
// is aborted (the source is unfenced, nothing changed for the application); after it, the
// operation rolls forward, because the target may already have taken writes.
package cutover

import "fmt"

// Op is the operation a journal records.
type Op string

// The operations.
const (
	OpCutover  Op = "cutover"
	OpRollback Op = "rollback"
)

// Fenced names the side an operation fences: the source for a cutover, the target for a
// rollback. It stays read-only when the operation commits.
func (op Op) Fenced() string {
	if op == OpRollback {
		return "target"
	}
	return "source"
}

// Writable names the side that takes the writes once the operation commits.
func (op Op) Writable() string {
	if op == OpRollback {
		return "source"
	}
	return "target"
}

// Step is one step of an operation, in the order they run.
type Step string

// The cutover steps. Commit is the point of no return.
const (
	StepFence      Step = "fence-source"
	StepDrain      Step = "drain"
	StepFinalCheck Step = "final-check"
	StepSequences  Step = "sequences"
	StepReverse    Step = "prepare-reverse"
	StepCommit     Step = "commit"
	StepWritable   Step = "target-writable"
	StepRoute      Step = "route"
	// StepUnfence undoes StepFence when a cutover aborts.
	StepUnfence Step = "unfence-source"
)

// The rollback steps, mirrored: the target is fenced and drained into the old source.
const (
	StepFenceTarget    Step = "fence-target"
	StepDrainReverse   Step = "drain-reverse"
	StepSequencesBack  Step = "sequences-back"
	StepForward        Step = "resume-forward"
	StepRollbackCommit Step = "rollback-commit"
	StepSourceWritable Step = "source-writable"
	StepRouteBack      Step = "route-back"
	StepUnfenceTarget  Step = "unfence-target"
)

// Plan is the ordered steps of an operation; the commit step splits abort from roll-forward.
var Plan = map[Op][]Step{
	OpCutover:  {StepFence, StepDrain, StepFinalCheck, StepSequences, StepReverse, StepCommit, StepWritable, StepRoute},
	OpRollback: {StepFenceTarget, StepDrainReverse, StepSequencesBack, StepForward, StepRollbackCommit, StepSourceWritable, StepRouteBack},
}

// commitStep is the point of no return of each operation.
var commitStep = map[Op]Step{OpCutover: StepCommit, OpRollback: StepRollbackCommit}

// undo is the step that returns the system to where it was when an operation aborts before its
// commit: only the fence needs undoing, every other step before commit is invisible to clients.
var undo = map[Op]Step{OpCutover: StepUnfence, OpRollback: StepUnfenceTarget}

// CommitStep returns op's point of no return.
func CommitStep(op Op) Step { return commitStep[op] }

// Undo returns the step that undoes op before its commit.
func Undo(op Op) Step { return undo[op] }

// EntryState is how far a journal entry got.
type EntryState string

// The states of a journal entry.
const (
	Started EntryState = "started"
	Done    EntryState = "done"
	Failed  EntryState = "failed"
)

// Entry is one line of the journal.
type Entry struct {
	Step  Step
	State EntryState
}

// Journal is the persisted record of one operation.
type Journal struct {
	Op      Op
	Entries []Entry
}

// Action tells the daemon what to do next.
type Action struct {
	// Step to run next; empty when Finished.
	Step Step
	// Aborting is true when the operation is being undone: the fence is lifted and the migration
	// returns to where it was before the operation.
	Aborting bool
	// Finished is true when nothing is left: the operation completed, or its abort did.
	Finished bool
	// Committed reports whether the operation passed its point of no return.
	Committed bool
}

func (a Action) String() string {
	switch {
	case a.Finished && a.Aborting:
		return "aborted"
	case a.Finished:
		return "finished"
	case a.Aborting:
		return "abort: " + string(a.Step)
	}
	return "run: " + string(a.Step)
}

// Next decides the next action from the journal. It is the whole recovery logic:
//   - a failed step before the commit aborts the operation;
//   - a step left "started" by a crash is run again (every step is idempotent) when it is after
//     the commit, and aborts the operation when it is before;
//   - after the commit, the remaining steps run in order and failures are retried, never undone.
func Next(j Journal) (Action, error) {
	plan, ok := Plan[j.Op]
	if !ok {
		return Action{}, fmt.Errorf("cutover journal: unknown operation %q", j.Op)
	}
	done := map[Step]bool{}
	var last *Entry
	for i := range j.Entries {
		e := &j.Entries[i]
		if e.State == Done {
			done[e.Step] = true
		}
		last = e
	}
	committed := done[commitStep[j.Op]]
	undoStep := undo[j.Op]

	if done[undoStep] {
		return Action{Aborting: true, Finished: true}, nil
	}
	aborting := false
	if !committed && last != nil {
		switch {
		case last.Step == undoStep:
			aborting = true // the abort itself was interrupted: run it again
		case last.State == Failed, last.State == Started:
			aborting = true
		}
	}
	if aborting {
		if !done[plan[0]] && !startedOrDone(j, plan[0]) {
			// Nothing was fenced: there is nothing to undo.
			return Action{Aborting: true, Finished: true}, nil
		}
		return Action{Step: undoStep, Aborting: true}, nil
	}
	for _, s := range plan {
		if !done[s] {
			return Action{Step: s, Committed: committed}, nil
		}
	}
	return Action{Finished: true, Committed: true}, nil
}

func startedOrDone(j Journal, s Step) bool {
	for _, e := range j.Entries {
		if e.Step == s {
			return true
		}
	}
	return false
}

// Record returns the journal with one more entry, refusing entries that break the plan's order:
// a step may start only when Next would run it.
func Record(j Journal, e Entry) (Journal, error) {
	// Closing the step in progress is always in order.
	if n := len(j.Entries); n > 0 && j.Entries[n-1].State == Started && e.State != Started {
		if e.Step != j.Entries[n-1].Step {
			return j, fmt.Errorf("cutover journal: %s %s while %s is in progress", e.Step, e.State, j.Entries[n-1].Step)
		}
		return Journal{Op: j.Op, Entries: append(append([]Entry(nil), j.Entries...), e)}, nil
	}
	if e.State != Started {
		return j, fmt.Errorf("cutover journal: %s %s was never started", e.Step, e.State)
	}
	next, err := Next(j)
	if err != nil {
		return j, err
	}
	if next.Finished {
		return j, fmt.Errorf("cutover journal: %s is over; cannot record %s %s", j.Op, e.Step, e.State)
	}
	if e.Step != next.Step {
		return j, fmt.Errorf("cutover journal: %s %s out of order; next is %s", e.Step, e.State, next)
	}
	out := Journal{Op: j.Op, Entries: append(append([]Entry(nil), j.Entries...), e)}
	return out, nil
}
