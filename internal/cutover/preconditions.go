package cutover

import (
	"fmt"
	"strings"
	"time"
)

// Facts are what the daemon knows when an operator asks for a cutover. Gathering them is I/O;
// judging them is not.
type Facts struct {
	Migration string // the migration's name
	Confirm   string // the --confirm argument
	Phase     string // the migration's phase; a cutover starts only from "streaming"
	Force     bool   // --force: ignore the maintenance window

	InWindow  bool  // the time is inside cutover.window (true when no window is configured)
	WindowErr error // the window could not be evaluated

	Lag    time.Duration // forward replication lag now
	MaxLag time.Duration // cutover.max-lag

	VerifiedAt  time.Time     // when the last verify finished; zero if none
	VerifyClean bool          // the last verify found no mismatched chunk
	VerifyError string        // the last verify failed or was invalidated, and why
	VerifyAge   time.Duration // how old a verify may be; 0 means any age
	Now         time.Time

	ReverseErr error // the probe of the reverse path (slot/publication creatable on the target)
	// ReverseOK says what the probe found when it passed; a PostgreSQL target's slot and
	// publication unless set.
	ReverseOK string
}

// Check is one precondition, as `migrated cutover --dry-run` prints it.
type Check struct {
	Name   string
	OK     bool
	Detail string // why it failed, and what to do; or what was seen when it passed
}

func (c Check) String() string {
	mark := "PASS"
	if !c.OK {
		mark = "FAIL"
	}
	return fmt.Sprintf("%s %-12s %s", mark, c.Name, c.Detail)
}

// Preconditions judges every precondition of a cutover, in a fixed order, all of them, so that
// an operator sees every problem at once.
func Preconditions(f Facts) []Check {
	var out []Check
	add := func(name string, ok bool, format string, args ...any) {
		out = append(out, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}

	switch {
	case f.Confirm == "":
		add("confirm", false, "pass --confirm %s to cut over this migration", f.Migration)
	case f.Confirm != f.Migration:
		add("confirm", false, "--confirm %q does not name this migration (%s); check that you are talking to the right daemon", f.Confirm, f.Migration)
	default:
		add("confirm", true, "migration %s", f.Migration)
	}

	add("phase", f.Phase == "streaming", "phase is %s; a cutover starts only while streaming", f.Phase)
	if f.Phase == "streaming" {
		out[len(out)-1].Detail = "streaming"
	}

	switch {
	case f.WindowErr != nil:
		add("window", false, "cannot evaluate cutover.window: %v", f.WindowErr)
	case f.InWindow:
		add("window", true, "inside the maintenance window")
	case f.Force:
		add("window", true, "outside the maintenance window, overridden by --force")
	default:
		add("window", false, "outside the maintenance window (cutover.window); wait for it, or pass --force")
	}

	add("lag", f.Lag <= f.MaxLag, "lag %s, at most %s (cutover.max-lag)", f.Lag.Round(time.Millisecond), f.MaxLag)
	if f.Lag > f.MaxLag {
		out[len(out)-1].Detail += "; wait for the stream to catch up, or find what slows apply"
	}

	switch {
	case f.VerifiedAt.IsZero():
		add("verify", false, "no verify has run; run `migrated verify` first")
	case f.VerifyError != "":
		add("verify", false, "the last verify did not complete cleanly (%s); run `migrated verify` again", f.VerifyError)
	case !f.VerifyClean:
		add("verify", false, "the last verify found mismatched chunks; resolve them and verify again")
	case f.VerifyAge > 0 && f.Now.Sub(f.VerifiedAt) > f.VerifyAge:
		add("verify", false, "the last clean verify is %s old, older than %s; run `migrated verify` again", f.Now.Sub(f.VerifiedAt).Round(time.Second), f.VerifyAge)
	default:
		add("verify", true, "clean, %s ago", f.Now.Sub(f.VerifiedAt).Round(time.Second))
	}

	if f.ReverseErr != nil {
		add("reverse", false, "the reverse path cannot be prepared: %v", f.ReverseErr)
	} else {
		ok := f.ReverseOK
		if ok == "" {
			ok = "a slot and publication can be created on the target"
		}
		add("reverse", true, "%s", ok)
	}
	return out
}

// RefusedError lists the failed preconditions of a refused cutover.
type RefusedError struct{ Failed []Check }

func (e *RefusedError) Error() string {
	lines := make([]string, len(e.Failed))
	for i, c := range e.Failed {
		lines[i] = "  - " + c.Name + ": " + c.Detail
	}
	return "cutover refused; nothing was changed:\n" + strings.Join(lines, "\n")
}

// Allowed returns nil when every check passed, else a *RefusedError with the failures.
func Allowed(checks []Check) error {
	var failed []Check
	for _, c := range checks {
		if !c.OK {
			failed = append(failed, c)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &RefusedError{Failed: failed}
}
