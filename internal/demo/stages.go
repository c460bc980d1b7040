package demo

import (
	"context"
	"fmt"
	"time"

	"github.com/migrated/migrated/internal/server"
)

// stream shows the daemon's progress until it streams, then lets the writer run for
// opts.Stream with the lag shown live. It returns when the streaming began.
func (m *migration) stream(ctx context.Context) (time.Time, error) {
	daemonStart := time.Now()
	var streamingAt time.Time
	err := m.follow(ctx, "stream", func(st server.Status, now time.Time) (string, bool, error) {
		if streamingAt.IsZero() && st.Phase == "streaming" {
			streamingAt = now
			m.rep.SnapshotTime = st.Since.Sub(daemonStart)
		}
		if streamingAt.IsZero() {
			return "the daemon copies the source while the writer keeps writing to it (snapshot, then indexes and keys)", false, nil
		}
		left := m.opts.Stream - now.Sub(streamingAt)
		if left <= 0 {
			return "", true, nil
		}
		return fmt.Sprintf("streaming: the writer keeps writing, the lag below is live; verify in %s", left.Round(time.Second)), false, nil
	})
	if err == nil {
		m.note("snapshot done in %s; streamed for %s", dur(m.rep.SnapshotTime), dur(time.Since(streamingAt)))
	}
	return streamingAt, err
}

// verifyOnline runs migrated's verify while the writer writes, and waits for its result.
func (m *migration) verifyOnline(ctx context.Context) error {
	t0 := time.Now()
	if _, err := m.actions["verify"](ctx, server.ActionRequest{}); err != nil {
		return fmt.Errorf("start the verify: %w", err)
	}
	var v server.VerifyState
	err := m.follow(ctx, "verify", func(st server.Status, _ time.Time) (string, bool, error) {
		// The demo's target is fresh, so the first verify state shown is this run's.
		if s := st.Verify; s != nil {
			v = *s
			if !s.Running && (!s.FinishedAt.IsZero() || s.Error != "") {
				return "", true, nil
			}
		}
		step := fmt.Sprintf("verify: migrated compares both sides chunk by chunk while the writer writes: %d/%d tables, %s chunks",
			v.TablesDone, v.Tables, count(v.Chunks))
		if v.Mismatched > 0 {
			step += fmt.Sprintf(", %s mismatched", count(v.Mismatched))
		}
		return step, false, nil
	})
	if err != nil {
		return err
	}
	m.rep.Verify = VerifyResult{Ran: true, Clean: v.Clean && v.Error == "", Tables: v.Tables, Chunks: v.Chunks,
		Mismatched: v.Mismatched, Samples: v.Samples, Error: v.Error, Time: time.Since(t0)}
	if !m.rep.Verify.Clean {
		m.con.printf("the verify found differences, so the demo does not cut over: %s\n", m.rep.Verify.problem())
		return nil
	}
	m.note("verify clean: %d tables, %s chunks, in %s", v.Tables, count(v.Chunks), dur(m.rep.Verify.Time))
	return nil
}

// problem says what a verify that is not clean found.
func (v VerifyResult) problem() string {
	if v.Error != "" {
		return v.Error
	}
	return fmt.Sprintf("%s of %s chunks mismatched: %s", count(v.Mismatched), count(v.Chunks), mismatches(v.Samples))
}

// switches cuts over, writes to the target for opts.DualWrite, and rolls back. A cutover that
// is refused or aborted leaves the migration streaming: the report says so, and the demo goes
// on to its checks.
func (m *migration) switches(ctx context.Context) error {
	if err := m.cutover(ctx); err != nil || !m.rep.Cutover.Done() {
		return err
	}
	if err := m.dualWrite(ctx); err != nil {
		return err
	}
	return m.rollback(ctx)
}

// cutover waits for a small lag, as an operator would, and cuts over.
func (m *migration) cutover(ctx context.Context) error {
	t0 := time.Now()
	err := m.follow(ctx, "cutover", func(st server.Status, now time.Time) (string, bool, error) {
		if st.Stream.Connected && st.Stream.LagSeconds <= cutoverLag.Seconds() || now.Sub(t0) > catchUpLimit {
			return "", true, nil // past the limit, the cutover's own checks decide
		}
		return fmt.Sprintf("waiting for the stream to be connected with a lag (now %s) under %s before the cutover",
			seconds(st.Stream.LagSeconds), cutoverLag), false, nil
	})
	if err != nil {
		return err
	}
	// The demo has no maintenance window to wait for: Force stands for the operator's --force.
	res, err := m.switchWrites(ctx, "cutover", m.actions["cutover"], server.ActionRequest{Confirm: "demo", Force: true}, SideTarget)
	m.rep.Cutover = res
	if err != nil {
		return err
	}
	if !res.Done() {
		if p := m.d.Status().Phase; p != "streaming" {
			return fmt.Errorf("the cutover was %s and left the migration %s: %s", res.Outcome, p, res.Error)
		}
		m.con.printf("the cutover was %s, so the demo does not go on to the dual-write phase: %s\n", res.Outcome, res.Error)
		return nil
	}
	m.note("cutover: writes unavailable %s (migrated), longest wait between two acknowledged writes %s (writer)",
		dur(res.WriteUnavailable), dur(res.LongestGap))
	return nil
}

// dualWrite lets the writer write to the target for opts.DualWrite while the reverse stream
// carries its writes back to the source. It ends once the reverse stream is connected too, as
// the rollback needs it to drain the target's last writes.
func (m *migration) dualWrite(ctx context.Context) error {
	t0 := time.Now()
	err := m.follow(ctx, "dual-write", func(st server.Status, now time.Time) (string, bool, error) {
		m.reverse(st)
		left := m.opts.DualWrite - now.Sub(t0)
		switch connected := st.Reverse != nil && st.Reverse.Connected; {
		case left > 0:
			return fmt.Sprintf("dual-write: the writer writes to the target, the reverse stream carries its writes back to the source; rollback in %s",
				left.Round(time.Second)), false, nil
		case connected || now.Sub(t0) > catchUpLimit:
			return "", true, nil // past the limit, the rollback's own checks decide
		}
		return "dual-write: waiting for the reverse stream to connect before the rollback", false, nil
	})
	m.rep.DualWriteTime = time.Since(t0)
	if err == nil {
		m.note("dual-write for %s: %s writes on the target, reverse lag at most %s", dur(m.rep.DualWriteTime),
			count(m.ledger.Acked(SideTarget)), seconds(m.rep.ReverseMaxLagSeconds))
	}
	return err
}

// reverse records the reverse stream's figures.
func (m *migration) reverse(st server.Status) {
	if r := st.Reverse; r != nil {
		m.rep.ReverseMaxLagSeconds = max(m.rep.ReverseMaxLagSeconds, r.LagSeconds)
		m.rep.ReverseChanges = max(m.rep.ReverseChanges, r.ChangesApplied)
	}
}

// rollback moves the writes back to the source. The demo cannot check a migration that a
// rollback left half-way, so anything but done is an error.
func (m *migration) rollback(ctx context.Context) error {
	res, err := m.switchWrites(ctx, "rollback", m.actions["rollback"], server.ActionRequest{Confirm: "demo"}, SideSource)
	m.rep.Rollback = res
	if err != nil {
		return err
	}
	if !res.Done() {
		return fmt.Errorf("the rollback was %s: %s", res.Outcome, res.Error)
	}
	m.note("rollback: writes unavailable %s (migrated), longest wait between two acknowledged writes %s (writer)",
		dur(res.WriteUnavailable), dur(res.LongestGap))
	return nil
}

// switchWrites runs a cutover or rollback with the writer writing throughout, then waits for the
// writer's first acknowledged write on side, where the routing hook should have sent it. It
// measures the write pause both as migrated reports it and as the writer lived it. An error
// means the demo cannot go on; a switch that did not complete is in the result.
func (m *migration) switchWrites(ctx context.Context, op string, action server.ActionFunc, req server.ActionRequest, side string) (SwitchResult, error) {
	refused, acked := m.w.Refused(), m.ledger.Acked(side)
	m.w.gaps.restart()
	t0 := time.Now()
	type answer struct {
		res any
		err error
	}
	// The daemon finishes an operation it started even if the caller goes away, so on Ctrl-C
	// this goroutine outlives the wait below until the operation ends.
	answered := make(chan answer, 1)
	go func() {
		res, err := action(ctx, req)
		answered <- answer{res, err}
	}()
	var ans answer
	err := m.follow(ctx, op, func(st server.Status, _ time.Time) (string, bool, error) {
		m.reverse(st)
		select {
		case ans = <-answered:
			return "", true, nil
		default:
		}
		step := op + " under way"
		if o := st.Operation; o != nil && o.Op == op && o.Step != "" {
			step += ": " + o.Step
		}
		return step + fmt.Sprintf("; the writer writes to the %s, %d writes refused by the fence and retried",
			m.w.Side(), m.w.Refused()-refused), false, nil
	})
	if err != nil {
		return SwitchResult{}, err
	}
	res := SwitchResult{Outcome: "refused", Took: time.Since(t0)}
	if plan, ok := ans.res.(server.CutoverPlan); ok && plan.Result != nil {
		r := plan.Result
		res.Outcome, res.Error, res.FencePosition = r.Outcome, r.Error, r.FencePosition
		res.WriteUnavailable = time.Duration(r.WriteUnavailableSeconds * float64(time.Second))
		if r.HookError != "" {
			return res, fmt.Errorf("the %s's routing hook failed, so the writer cannot follow it: %s", op, r.HookError)
		}
	}
	if ans.err != nil {
		res.Error = ans.err.Error()
		if res.Outcome == "done" {
			res.Outcome = "failed"
		}
	}
	if !res.Done() {
		res.Refused = m.w.Refused() - refused
		return res, nil
	}
	done := time.Now()
	err = m.follow(ctx, op, func(_ server.Status, now time.Time) (string, bool, error) {
		if m.ledger.Acked(side) > acked {
			return "", true, nil
		}
		if now.Sub(done) > routeLimit {
			return "", false, fmt.Errorf("the writer acknowledged no write on the %s within %s of the %s; it writes to the %s (routes received: %v)",
				side, routeLimit, op, m.w.Side(), m.router.Routes())
		}
		return fmt.Sprintf("%s done; waiting for the writer's first write on the %s", op, side), false, nil
	})
	res.LongestGap = m.w.gaps.longest(time.Now())
	res.Refused = m.w.Refused() - refused
	return res, err
}

// catchUp stops the writer, then waits until the target's checkpoint passes the source's
// position taken then.
func (m *migration) catchUp(ctx context.Context, streamingAt time.Time, stopWriter func(), writerDone <-chan struct{}) error {
	stopWriter()
	select {
	case <-writerDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	m.rep.StreamTime = time.Since(streamingAt)
	// Read only now: a fence ends every session but migrated's own, the demo's included.
	stopPos, err := m.eng.position(ctx)
	if err != nil {
		return err
	}
	stoppedAt := time.Now()
	err = m.follow(ctx, "catch-up", func(_ server.Status, now time.Time) (string, bool, error) {
		reached, err := m.eng.reached(ctx, stopPos)
		if err != nil {
			return "", false, err
		}
		if reached {
			m.rep.CatchUpTime = now.Sub(stoppedAt)
			return "", true, nil
		}
		if now.Sub(stoppedAt) > catchUpLimit {
			return "", false, fmt.Errorf("the target did not reach the source's position %s within %s after the writer stopped", stopPos, catchUpLimit)
		}
		return fmt.Sprintf("writer stopped at source %s %s; waiting for the target's checkpoint to pass it", m.con.words.pos, stopPos), false, nil
	})
	if err != nil {
		return err
	}
	// One more heartbeat, so the lag shown is measured after the catch-up.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
	}
	return nil
}
