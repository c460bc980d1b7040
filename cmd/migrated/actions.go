package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/migrated/migrated/internal/cutover"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/ui"
	"github.com/spf13/cobra"
)

// How long the CLI waits for the daemon's answer. A cutover or rollback is bounded by
// cutover.timeout plus the hooks' timeouts; these only guard against a daemon that hangs.
const (
	actionTimeout = 2 * time.Minute
	switchTimeout = 10 * time.Minute
	// pollInterval is how often verify --wait reads the status.
	pollInterval = time.Second
)

// actionCmds returns the operator commands that drive a running daemon through its API, in the
// order an operator meets them.
func actionCmds(g *globalFlags) []*cobra.Command {
	return []*cobra.Command{pauseCmd(g), resumeCmd(g), verifyCmd(g), cutoverCmd(g), rollbackCmd(g), completeCmd(g), cancelCmd(g)}
}

func cutoverCmd(g *globalFlags) *cobra.Command {
	var req server.ActionRequest
	var output string
	cmd := &cobra.Command{
		Use:   "cutover",
		Short: "Switch the application's writes from the source to the target",
		Long: `cutover switches writes from the source to the target. The daemon first judges every
precondition: --confirm names this migration, the migration is streaming, the time is inside
cutover.window (--force overrides the window), the lag is at most cutover.max-lag, the last
verify is clean and younger than cutover.verify-max-age, and the reverse stream can be prepared
on the target. If any fails, nothing changes, and every failure is listed with what to do.

Then it fences the source (writes there fail from now on), drains the last changes into the
target, sets the target's sequences past the source's, prepares the reverse stream back to the
source, commits, makes the target writable and runs cutover.hooks to send the application there.
Writes are unavailable from the fence until the target is writable. If that would take longer
than cutover.timeout, the cutover aborts before its commit and the source takes writes again.
After the commit the migration is switched: ` + "`migrated rollback`" + ` goes back, ` + "`migrated complete`" + ` ends it.

--dry-run judges the preconditions and lists the steps, and changes nothing. The exit code is 0
when the cutover is done or a dry run passes every check, and 1 when it is refused, aborted or
failed. A failed routing hook is shown prominently but leaves the exit code at 0, since the
switch is done: point the application at the target by hand.`,
		Example: "  migrated cutover --dry-run --confirm orders_to_pg16\n  migrated cutover --confirm orders_to_pg16\n  migrated cutover --confirm orders_to_pg16 --force -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A missing --confirm is the daemon's to judge, listed with the other checks.
			return runSwitch(cmd, g, "cutover", req, output)
		},
	}
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "judge the preconditions and list the steps; change nothing")
	cmd.Flags().StringVar(&req.Confirm, "confirm", "", "the migration's name, to confirm which migration you cut over")
	cmd.Flags().BoolVar(&req.Force, "force", false, "cut over outside cutover.window")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func rollbackCmd(g *globalFlags) *cobra.Command {
	var req server.ActionRequest
	var output string
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Switch writes back from the target to the source after a cutover",
		Long: `rollback switches writes back to the old source while the migration is switched, that is
after a cutover and before complete. The reverse stream has kept the source up to date, so no
write taken by the target is lost. It mirrors the cutover: it fences the target, drains the
reverse stream into the source, sets the source's sequences past the target's, resumes the
forward stream, commits, makes the source writable and runs cutover.hooks to send the
application back.

--confirm with the migration's name is required. --dry-run judges the preconditions and lists
the steps, and changes nothing. The exit code is 0 when the rollback is done, and 1 when it is
refused, aborted or failed.`,
		Example: "  migrated rollback --confirm orders_to_pg16 --dry-run\n  migrated rollback --confirm orders_to_pg16",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireConfirm("rollback", req.Confirm, "switches the application's writes back to the source"); err != nil {
				return err
			}
			return runSwitch(cmd, g, "rollback", req, output)
		},
	}
	cmd.Flags().StringVar(&req.Confirm, "confirm", "", "the migration's name, to confirm which migration you roll back (required)")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "judge the preconditions and list the steps; change nothing")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func completeCmd(g *globalFlags) *cobra.Command {
	var req server.ActionRequest
	cmd := &cobra.Command{
		Use:   "complete",
		Short: "End a switched migration: stop the reverse stream; rollback is no longer possible",
		Long: `complete ends the migration after a cutover, once the application runs well on the target. It
stops the reverse stream that keeps the old source up to date and removes what the migration
created for it, so that the databases stop retaining WAL for it. After complete there is no
rollback, and the old source can be retired.

--confirm with the migration's name is required.`,
		Example: "  migrated complete --confirm orders_to_pg16",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireConfirm("complete", req.Confirm, "ends the migration, after which there is no rollback"); err != nil {
				return err
			}
			return runSimple(cmd, g, "complete", req)
		},
	}
	cmd.Flags().StringVar(&req.Confirm, "confirm", "", "the migration's name, to confirm which migration you complete (required)")
	return cmd
}

func cancelCmd(g *globalFlags) *cobra.Command {
	var req server.ActionRequest
	cmd := &cobra.Command{
		Use:   "cancel",
		Short: "Abandon the migration and remove its replication slot and publication",
		Long: `cancel abandons the migration: the daemon stops copying and streaming, and drops the
replication slot and publication it created, so that the source stops retaining WAL for it.
Writes keep going where they go now. It cannot be undone: migrating again starts over with a
new snapshot. The daemon refuses it, and says why, in a phase where it would not be safe.

--confirm with the migration's name is required.`,
		Example: "  migrated cancel --confirm orders_to_pg16",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireConfirm("cancel", req.Confirm, "abandons the migration and cannot be undone"); err != nil {
				return err
			}
			return runSimple(cmd, g, "cancel", req)
		},
	}
	cmd.Flags().StringVar(&req.Confirm, "confirm", "", "the migration's name, to confirm which migration you cancel (required)")
	return cmd
}

func pauseCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "pause",
		Short: "Pause the change stream; nothing is lost",
		Long: `pause stops the running change stream (forward while streaming, reverse while switched) at
its last checkpoint, to take load off the databases. Nothing is lost: the sending side keeps its
WAL from the last confirmed position. But its disk use and the lag grow until ` + "`migrated resume`" + `
or a restart of the daemon, which also resumes. A cutover or rollback is refused while paused.`,
		Example: "  migrated pause\n  migrated resume",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSimple(cmd, g, "pause", server.ActionRequest{})
		},
	}
}

func resumeCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "resume",
		Short:   "Resume a paused migration",
		Long:    "resume restarts the change stream stopped by `migrated pause`, from its last checkpoint.",
		Example: "  migrated resume",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSimple(cmd, g, "resume", server.ActionRequest{})
		},
	}
}

func verifyCmd(g *globalFlags) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare the source and the target online and report the rows that differ",
		Long: `verify compares the source and the target while the migration streams, table by table, in
chunks of verify.chunk-rows rows in key order, and reports the chunks that differ with some of
their rows. A cutover needs a clean verify no older than cutover.verify-max-age.

verify starts a run in the daemon and returns; follow it with ` + "`migrated status`" + `. With --wait it
shows the progress until the run ends, then the result: the exit code is 0 when the target
matches the source and 1 when it differs or the verify failed.`,
		Example: "  migrated verify\n  migrated verify --wait",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !wait {
				return runSimple(cmd, g, "verify", server.ActionRequest{})
			}
			return verifyWait(cmd, g)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "show the progress until the verify ends; exit 1 if the target differs")
	return cmd
}

// requireConfirm refuses an action that cannot be undone without --confirm. The daemon checks
// that the name is right; this only spares a round trip and says what to type.
func requireConfirm(action, confirm, why string) error {
	if confirm != "" {
		return nil
	}
	return fmt.Errorf("%w: %s %s; pass --confirm with the migration's name (shown by `migrated status`) to go ahead", errUsage, action, why)
}

// refusedError is an action the daemon refused (HTTP 409), with the daemon's reasons.
type refusedError struct {
	action string
	err    *server.APIError
}

// Error gives the daemon's message, which lists what to fix, without the HTTP status. A message
// such as "cutover aborted: ..." already says what happened.
func (e *refusedError) Error() string {
	if strings.HasPrefix(e.err.Msg, e.action+" ") {
		return e.err.Msg
	}
	return e.action + " refused: " + e.err.Msg
}

func (e *refusedError) Unwrap() error { return e.err }

// callAction posts one action and explains the failures an operator can act on.
func callAction(cmd *cobra.Command, client *server.Client, name string, req server.ActionRequest, timeout time.Duration) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	raw, err := client.Action(ctx, name, req)
	var ae *server.APIError
	switch {
	case err == nil:
		return raw, nil
	case errors.As(err, &ae) && ae.StatusCode == http.StatusConflict:
		return nil, &refusedError{action: name, err: ae}
	case errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil:
		return nil, fmt.Errorf("%s: no answer from the daemon within %s; it may still be working, see `migrated status`: %w", name, timeout, err)
	case cmd.Context().Err() != nil:
		return nil, fmt.Errorf("%s: interrupted while waiting for the daemon; it may go on without us, see `migrated status`: %w", name, err)
	}
	return nil, err
}

// runSimple runs an action answered by a server.ActionResult and prints it.
func runSimple(cmd *cobra.Command, g *globalFlags, name string, req server.ActionRequest) error {
	client, err := apiClient(g)
	if err != nil {
		return err
	}
	raw, err := callAction(cmd, client, name, req, actionTimeout)
	if err != nil {
		return err
	}
	var res server.ActionResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("%s: decode the daemon's answer: %w", name, err)
	}
	printResult(cmd.OutOrStdout(), name, res)
	return nil
}

func printResult(w io.Writer, name string, res server.ActionResult) {
	msg := res.Message
	if msg == "" {
		msg = "done"
	}
	if res.Phase != "" {
		msg += " (phase " + res.Phase + ")"
	}
	fmt.Fprintf(w, "%s: %s\n", name, msg)
}

// runSwitch runs a cutover or a rollback and prints its plan and outcome.
func runSwitch(cmd *cobra.Command, g *globalFlags, op string, req server.ActionRequest, output string) error {
	if output != "text" && output != "json" {
		return fmt.Errorf("%w: -o must be text or json, got %q", errUsage, output)
	}
	client, err := apiClient(g)
	if err != nil {
		return err
	}
	// The daemon answers an operation that aborted or failed with an error only; the status then
	// holds its steps. The operation before ours tells it from an older one.
	var prev *server.OperationState
	known := false
	if !req.DryRun {
		if st, err := getStatus(cmd, client); err == nil {
			prev, known = st.Operation, true
		}
	}
	raw, err := callAction(cmd, client, op, req, switchTimeout)
	if err != nil {
		var ae *server.APIError
		if known && errors.As(err, &ae) {
			if res := newOperation(cmd, client, op, prev); res != nil {
				_ = printSwitch(cmd, output, server.CutoverPlan{Op: op, Steps: planSteps(op), Result: res})
			}
		}
		return err
	}
	var plan server.CutoverPlan
	if err := json.Unmarshal(raw, &plan); err != nil {
		return fmt.Errorf("%s: decode the daemon's answer: %w", op, err)
	}
	if plan.Op == "" {
		plan.Op = op
	}
	if err := printSwitch(cmd, output, plan); err != nil {
		return err
	}
	return planErr(plan)
}

func getStatus(cmd *cobra.Command, client *server.Client) (server.Status, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	return client.Status(ctx)
}

// newOperation returns the finished operation op that the status shows, if it is not prev.
func newOperation(cmd *cobra.Command, client *server.Client, op string, prev *server.OperationState) *server.OperationState {
	st, err := getStatus(cmd, client)
	o := st.Operation
	if err != nil || o == nil || o.Op != op || o.Outcome == "running" {
		return nil
	}
	if prev != nil && prev.Op == o.Op && prev.StartedAt.Equal(o.StartedAt) {
		return nil
	}
	return o
}

// planSteps is the order of op's steps, for an operation known only from the status.
func planSteps(op string) []string {
	var out []string
	for _, s := range cutover.Plan[cutover.Op(op)] {
		out = append(out, string(s))
	}
	return out
}

// printSwitch prints a cutover or rollback plan as text or JSON, and a failed routing hook.
func printSwitch(cmd *cobra.Command, output string, plan server.CutoverPlan) error {
	out := cmd.OutOrStdout()
	if output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(plan); err != nil {
			return err
		}
	} else {
		printPlan(out, plan)
	}
	if plan.Result != nil && plan.Result.HookError != "" {
		// Last and on stderr, where it is seen even when the report goes to a file.
		printHookError(cmd.ErrOrStderr(), plan)
	}
	return nil
}

func printPlan(w io.Writer, plan server.CutoverPlan) {
	res := plan.Result
	failed := failedChecks(plan.Checks)
	// The checks of a real run that went ahead all passed; they matter for a dry run or a refusal.
	if plan.DryRun || res == nil || len(failed) > 0 {
		if plan.DryRun {
			fmt.Fprintf(w, "%s dry run: nothing was changed\n", plan.Op)
		}
		for _, c := range plan.Checks {
			mark := "PASS"
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "%s %-12s %s\n", mark, c.Name, c.Detail)
		}
	}
	if res == nil {
		if len(plan.Steps) > 0 {
			fmt.Fprintf(w, "\nsteps:\n")
			for i, s := range plan.Steps {
				fmt.Fprintf(w, "  %d. %s\n", i+1, s)
			}
		}
		if plan.DryRun && len(failed) == 0 {
			fmt.Fprintf(w, "\nevery check passed; run it again without --dry-run to %s\n", verb(plan.Op))
		}
		return
	}

	head := fmt.Sprintf("%s %s", plan.Op, res.Outcome)
	if !res.StartedAt.IsZero() && !res.FinishedAt.IsZero() {
		head += fmt.Sprintf(" in %.3fs", res.FinishedAt.Sub(res.StartedAt).Seconds())
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, "steps:")
	width := 0
	for _, s := range stepNames(plan) {
		width = max(width, len(s))
	}
	stopped := false // a step that did not finish was seen; those after it did not run
	for i, s := range plan.Steps {
		took := "not run"
		sec, ok := res.StepSeconds[s]
		switch {
		case s == res.FailedStep:
			took, stopped = fmt.Sprintf("failed after %.3fs", sec), true
		case ok:
			took = fmt.Sprintf("%.3fs", sec)
		case s == res.Step && res.Outcome == "running":
			took = "running"
		case !stopped && (res.Outcome == "aborted" || res.Outcome == "failed"):
			took, stopped = "did not finish", true
		}
		fmt.Fprintf(w, "  %2d. %-*s  %s\n", i+1, width, s, took)
	}
	for _, s := range extraSteps(plan) { // such as the unfence of an aborted cutover
		fmt.Fprintf(w, "      %-*s  %.3fs\n", width, s, res.StepSeconds[s])
	}
	if res.WriteUnavailableSeconds > 0 {
		fmt.Fprintf(w, "writes unavailable: %.3fs\n", res.WriteUnavailableSeconds)
	}
	if res.FencePosition != "" {
		fmt.Fprintf(w, "fence position: %s\n", res.FencePosition)
	}
	switch res.Outcome {
	case "done":
		fmt.Fprintf(w, "the %s takes writes\n", cutover.Op(plan.Op).Writable())
	case "running":
		fmt.Fprintf(w, "still running; follow it with `migrated status --watch 1s`\n")
	}
}

func verb(op string) string {
	if op == "rollback" {
		return "roll back"
	}
	return "cut over"
}

// stepNames is every step of the plan and any other step that took time.
func stepNames(plan server.CutoverPlan) []string {
	return append(append([]string(nil), plan.Steps...), extraSteps(plan)...)
}

// extraSteps are the steps that ran but are not in the plan, sorted by name.
func extraSteps(plan server.CutoverPlan) []string {
	var out []string
	if plan.Result == nil {
		return nil
	}
	for s := range plan.Result.StepSeconds {
		if !slices.Contains(plan.Steps, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func failedChecks(checks []server.Check) []string {
	var out []string
	for _, c := range checks {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}

func printHookError(w io.Writer, plan server.CutoverPlan) {
	side := cutover.Op(plan.Op).Writable()
	fmt.Fprintf(w, "\n*** ROUTING HOOK FAILED: the %s is done and the %s takes writes, but the application was not sent there ***\n", plan.Op, side)
	fmt.Fprintf(w, "%s\n\n", plan.Result.HookError)
}

// planErr decides the exit code of a cutover or rollback: nil when it is done (or a dry run
// passed), else why not.
func planErr(plan server.CutoverPlan) error {
	failed := failedChecks(plan.Checks)
	res := plan.Result
	switch {
	case plan.DryRun && len(failed) > 0:
		return fmt.Errorf("%s would be refused: %s failed; fix them and run the dry run again", plan.Op, strings.Join(failed, ", "))
	case plan.DryRun:
		return nil
	case res == nil && len(failed) > 0:
		return fmt.Errorf("%s refused; nothing was changed: %s failed", plan.Op, strings.Join(failed, ", "))
	case res == nil:
		return fmt.Errorf("%s: the daemon did not say how it went; see `migrated status`", plan.Op)
	}
	switch res.Outcome {
	case "done", "running":
		return nil
	case "aborted":
		return fmt.Errorf("%s aborted before its commit; the %s takes writes as before: %s", plan.Op, cutover.Op(plan.Op).Fenced(), orUnknown(res.Error))
	}
	return fmt.Errorf("%s %s: %s", plan.Op, res.Outcome, orUnknown(res.Error))
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given; see `migrated status` and the daemon's log"
	}
	return s
}

// verifyWait starts a verify and follows it until it ends.
func verifyWait(cmd *cobra.Command, g *globalFlags) error {
	client, err := apiClient(g)
	if err != nil {
		return err
	}
	// The run started here is told from the last one by its number and start time.
	before, err := getStatus(cmd, client)
	if err != nil {
		return err
	}
	prev := before.Verify
	raw, err := callAction(cmd, client, "verify", server.ActionRequest{}, actionTimeout)
	if err != nil {
		return err
	}
	var res server.ActionResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("verify: decode the daemon's answer: %w", err)
	}
	out := cmd.OutOrStdout()
	printResult(out, "verify", res)

	tty := ui.IsTerminal(os.Stdout)
	var last string
	for {
		st, err := getStatus(cmd, client)
		if err != nil {
			return err
		}
		v := st.Verify
		if v != nil && isNewRun(prev, v) {
			line := fmt.Sprintf("verify run %d: %d/%d tables, %d chunks, %d mismatched", v.Run, v.TablesDone, v.Tables, v.Chunks, v.Mismatched)
			if !v.Running {
				if tty && last != "" {
					fmt.Fprint(out, "\r\033[K")
				}
				return verifyResult(out, v)
			}
			switch {
			case tty:
				fmt.Fprint(out, "\r\033[K"+line)
			case line != last:
				fmt.Fprintln(out, line)
			}
			last = line
		}
		select {
		case <-cmd.Context().Done():
			if tty {
				fmt.Fprintln(out)
			}
			return errors.New("verify: stopped waiting; the verify goes on in the daemon, see `migrated status`")
		case <-time.After(pollInterval):
		}
	}
}

// isNewRun reports whether v is the run started after prev was read. A run already going on
// then counts too: the daemon may have let the request join it.
func isNewRun(prev, v *server.VerifyState) bool {
	return prev == nil || prev.Running || v.Run != prev.Run || !v.StartedAt.Equal(prev.StartedAt)
}

// verifyResult prints a finished verify and returns an error unless it is clean.
func verifyResult(w io.Writer, v *server.VerifyState) error {
	took := ""
	if !v.StartedAt.IsZero() && !v.FinishedAt.IsZero() {
		took = " in " + v.FinishedAt.Sub(v.StartedAt).Round(time.Millisecond).String()
	}
	switch {
	case v.Error != "":
		fmt.Fprintf(w, "verify run %d failed after %d/%d tables and %d chunks\n", v.Run, v.TablesDone, v.Tables, v.Chunks)
		return fmt.Errorf("verify failed: %s", v.Error)
	case v.Clean:
		fmt.Fprintf(w, "verify run %d clean: %d tables, %d chunks compared%s\n", v.Run, v.Tables, v.Chunks, took)
		return nil
	case v.Mismatched == 0:
		fmt.Fprintf(w, "verify run %d stopped after %d/%d tables and %d chunks\n", v.Run, v.TablesDone, v.Tables, v.Chunks)
		return errors.New("verify stopped before it finished, most likely because the daemon stopped; run `migrated verify --wait` again")
	}
	fmt.Fprintf(w, "verify run %d found differences: %d of %d chunks mismatched, in %d tables compared%s\n", v.Run, v.Mismatched, v.Chunks, v.Tables, took)
	if len(v.Samples) > 0 {
		fmt.Fprintln(w, "sample rows (kind, table, key):")
		for _, m := range v.Samples {
			fmt.Fprintf(w, "  %-9s  %s %s\n", m.Kind, m.Table, m.Key)
		}
	}
	return fmt.Errorf("verify found %d mismatched chunks; compare the rows listed on the source and the target, fix the cause, then run `migrated verify --wait` again (a cutover needs a clean verify)", v.Mismatched)
}
