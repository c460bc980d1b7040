package ui

import (
	"fmt"
	"slices"
	"strings"

	"github.com/migrated/migrated/internal/cutover"
	"github.com/migrated/migrated/internal/server"
)

// maxSamples is how many mismatched rows of a verify RenderStatus lists; the daemon's log has
// every one.
const maxSamples = 10

// writesOnTarget reports whether the target takes the writes, so that the forward stream is
// stopped by design and the reverse stream is the one that matters: from the cutover's commit
// until complete or a rollback. A migration that failed after a cutover's commit counts too.
func writesOnTarget(s server.Status) bool {
	switch s.Phase {
	case "switched", "completed", "rolling-back":
		return true
	case "failed":
		o := s.Operation
		return o != nil && o.Op == string(cutover.OpCutover) && (o.Outcome == "done" || o.Outcome == "failed")
	}
	return false
}

// hookAlert reports whether a routing hook failed in the operation that led to the phase the
// migration is in now, so the application may still point at the wrong side: the header then
// shows it next to the phase. An older hook failure is shown with its operation only.
func hookAlert(s server.Status) bool {
	o := s.Operation
	if o == nil || o.HookError == "" || o.Outcome != "done" {
		return false
	}
	switch o.Op {
	case string(cutover.OpCutover):
		return s.Phase == "switched"
	case string(cutover.OpRollback):
		return s.Phase == "streaming"
	}
	return false
}

// cont writes value in the value column with no label.
func (r *renderer) cont(value string) {
	r.line("", strings.Repeat(" ", labelWidth)+value)
}

// wrapped writes text in the value column with no label, wrapped to the width.
func (r *renderer) wrapped(text string, codes ...string) {
	for _, l := range wrap(text, max(r.opts.Width-labelWidth, 20)) {
		r.cont(r.style(l, codes...))
	}
}

// reverse draws the reverse stream, target to old source, while the target takes the writes.
func (r *renderer) reverse(s server.Status) {
	if !writesOnTarget(s) || s.Phase == "completed" {
		return
	}
	r.b.WriteString("\n")
	if s.Reverse == nil {
		// The daemon publishes the reverse stream's state once it first starts it.
		if s.Phase == "switched" {
			r.line("reverse", "not started yet")
		} else {
			r.line("reverse", r.style("not running", ansiRed))
		}
		return
	}
	idle := ""
	switch {
	case s.Paused:
		idle = "paused"
	case s.Phase == "rolling-back":
		idle = "stopped for the rollback"
	}
	r.streamState("reverse", "target", *s.Reverse, idle)
}

// verify draws the running verify with its progress, or the last one's result and age, with
// some of the rows that differ.
func (r *renderer) verify(s server.Status) {
	v := s.Verify
	if v == nil {
		return
	}
	r.b.WriteString("\n")
	progress := fmt.Sprintf("%d/%d tables  %s chunks", v.TablesDone, v.Tables, humanCount(v.Chunks))
	when := ""
	switch {
	case !v.FinishedAt.IsZero():
		when = "  finished " + r.ago(v.FinishedAt) + " ago"
	case !v.StartedAt.IsZero():
		when = "  started " + r.ago(v.StartedAt) + " ago"
	}
	samples := true
	switch {
	case v.Running:
		head := r.style("running", ansiYellow) + "  " + progress
		if v.Mismatched > 0 {
			head += "  " + r.style(humanCount(v.Mismatched)+" mismatched so far", ansiRed)
		}
		if !v.StartedAt.IsZero() {
			head += "  for " + r.ago(v.StartedAt)
		}
		r.line("verify", head)
	case strings.HasPrefix(v.Error, "invalidated"):
		// A rollback invalidates the last verify: data moved both ways since.
		// Its times are the invalidated run's, so none is shown.
		samples = false
		r.line("verify", r.style("invalidated", ansiYellow))
		r.wrapped(strings.TrimSpace(strings.TrimPrefix(v.Error, "invalidated:")))
	case v.Error != "":
		r.line("verify", r.style("failed", ansiBold, ansiRed)+"  after "+progress+when)
		r.wrapped(v.Error, ansiRed)
	case v.Clean:
		r.line("verify", r.style("clean", ansiGreen)+fmt.Sprintf("  %d tables  %s chunks", v.Tables, humanCount(v.Chunks))+when)
	case v.Mismatched > 0:
		r.line("verify", r.style(fmt.Sprintf("%s of %s chunks mismatched", humanCount(v.Mismatched), humanCount(v.Chunks)), ansiBold, ansiRed)+
			fmt.Sprintf("  %d tables", v.Tables)+when)
	default:
		r.line("verify", r.style("stopped", ansiYellow)+"  after "+progress+when)
		r.cont("run `migrated verify` to resume it")
	}
	if samples {
		r.samples(v.Samples)
	}
}

// samples lists mismatched rows: kind, table and key.
func (r *renderer) samples(ms []server.Mismatch) {
	kindW := 0
	for _, m := range ms[:min(len(ms), maxSamples)] {
		kindW = max(kindW, len(m.Kind))
	}
	for _, m := range ms[:min(len(ms), maxSamples)] {
		r.line("", "  "+padRight(m.Kind, kindW)+"  "+m.Table+" "+m.Key)
	}
	if n := len(ms) - maxSamples; n > 0 {
		r.line("", fmt.Sprintf("  … %d more; the daemon's log lists every row that differs", n))
	}
}

// operation draws the running or last cutover or rollback: its outcome, why it failed, the
// write pause, the fence position, and each step's time in plan order.
func (r *renderer) operation(s server.Status) {
	o := s.Operation
	if o == nil {
		return
	}
	r.b.WriteString("\n")
	label := o.Op
	if label == "" {
		label = "operation"
	}
	var head string
	switch o.Outcome {
	case "running":
		head = r.style("running", ansiBold, ansiYellow)
		if !o.StartedAt.IsZero() {
			head += " for " + r.ago(o.StartedAt)
		}
		if o.Step != "" {
			head += ": " + o.Step
		}
	case "done":
		head = r.style("done", ansiGreen) + r.took(o, "in")
	case "aborted", "failed":
		head = r.style(o.Outcome, ansiBold, ansiRed) + r.took(o, "after")
	default:
		head = o.Outcome + r.took(o, "after")
	}
	r.line(label, head)
	if o.Outcome == "aborted" {
		r.wrapped(fmt.Sprintf("undone before its commit: the %s takes writes as before; nothing was lost", cutover.Op(o.Op).Fenced()))
	}
	// A failure after the commit is also the migration's error, shown in the header already.
	if o.Error != "" && o.Error != s.Error {
		r.alert("ERROR", o.Error)
	}
	if o.HookError != "" && !hookAlert(s) {
		r.alert("HOOK FAILED", o.HookError)
	}
	if o.WriteUnavailableSeconds > 0 {
		r.line("write pause", humanDuration(seconds(o.WriteUnavailableSeconds)))
	}
	if o.FencePosition != "" {
		r.line("fence", cutover.Op(o.Op).Fenced()+" at "+o.FencePosition)
	}
	r.steps(o)
}

// took says how long a finished operation took and how long ago it ended, or when an unfinished
// one started.
func (r *renderer) took(o *server.OperationState, prep string) string {
	switch {
	case o.FinishedAt.IsZero() && o.StartedAt.IsZero():
		return ""
	case o.FinishedAt.IsZero():
		return ", started " + r.ago(o.StartedAt) + " ago"
	case o.StartedAt.IsZero():
		return ", " + r.ago(o.FinishedAt) + " ago"
	}
	return fmt.Sprintf(" %s %s, %s ago", prep, humanDuration(o.FinishedAt.Sub(o.StartedAt)), r.ago(o.FinishedAt))
}

// steps lists the operation's steps in plan order with the time each took, "running" for the
// one in progress and "-" for those that have not run; then steps outside the plan that ran,
// such as the unfence of an aborted cutover.
func (r *renderer) steps(o *server.OperationState) {
	var names []string
	for _, s := range cutover.Plan[cutover.Op(o.Op)] {
		names = append(names, string(s))
	}
	var extra []string
	for s := range o.StepSeconds {
		if !slices.Contains(names, s) {
			extra = append(extra, s)
		}
	}
	slices.Sort(extra)
	names = append(names, extra...)
	if o.Step != "" && !slices.Contains(names, o.Step) {
		names = append(names, o.Step)
	}
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		took := "-"
		if sec, ok := o.StepSeconds[n]; ok {
			took = humanDuration(seconds(sec))
		}
		if n == o.Step && o.Outcome == "running" {
			took = r.style("running", ansiYellow)
		}
		r.line("", "  "+padRight(n, width)+"  "+took)
	}
}
