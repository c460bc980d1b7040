package cutover

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func goodFacts() Facts {
	now := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	return Facts{Migration: "shop", Confirm: "shop", Phase: "streaming", InWindow: true,
		Lag: 300 * time.Millisecond, MaxLag: 5 * time.Second,
		VerifiedAt: now.Add(-10 * time.Minute), VerifyClean: true, VerifyAge: time.Hour, Now: now}
}

func TestPreconditions(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*Facts)
		failed string // names of failed checks, space separated
		detail string // part of the first failure's detail
	}{
		{"all good", func(*Facts) {}, "", ""},
		{"no confirm", func(f *Facts) { f.Confirm = "" }, "confirm", "pass --confirm shop"},
		{"wrong name", func(f *Facts) { f.Confirm = "orders" }, "confirm", "does not name this migration"},
		{"outside the window", func(f *Facts) { f.InWindow = false }, "window", "wait for it, or pass --force"},
		{"outside the window, forced", func(f *Facts) { f.InWindow, f.Force = false, true }, "", ""},
		{"window error", func(f *Facts) { f.WindowErr = errors.New("bad zone") }, "window", "bad zone"},
		{"lag too high", func(f *Facts) { f.Lag = 6 * time.Second }, "lag", "at most 5s"},
		{"not streaming", func(f *Facts) { f.Phase = "snapshotting" }, "phase", "only while streaming"},
		{"no verify", func(f *Facts) { f.VerifiedAt = time.Time{} }, "verify", "run `migrated verify` first"},
		{"dirty verify", func(f *Facts) { f.VerifyClean = false }, "verify", "mismatched chunks"},
		{"stale verify", func(f *Facts) { f.VerifiedAt = f.Now.Add(-2 * time.Hour) }, "verify", "older than 1h0m0s"},
		{"reverse path", func(f *Facts) { f.ReverseErr = errors.New("wal_level is replica on the target") }, "reverse", "wal_level is replica"},
		{"several at once", func(f *Facts) { f.Confirm, f.Lag, f.InWindow = "", time.Minute, false }, "confirm window lag", "pass --confirm"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := goodFacts()
			tt.change(&f)
			checks := Preconditions(f)
			if got, want := len(checks), 6; got != want {
				t.Fatalf("%d checks, want every one of %d", got, want)
			}
			err := Allowed(checks)
			var refused *RefusedError
			if tt.failed == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.As(err, &refused) {
				t.Fatalf("Allowed = %v, want a refusal", err)
			}
			var names []string
			for _, c := range refused.Failed {
				names = append(names, c.Name)
			}
			if got := strings.Join(names, " "); got != tt.failed {
				t.Errorf("failed checks = %q, want %q", got, tt.failed)
			}
			if !strings.Contains(refused.Failed[0].Detail, tt.detail) {
				t.Errorf("detail %q lacks %q", refused.Failed[0].Detail, tt.detail)
			}
			if !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("refusal does not say nothing changed: %v", err)
			}
		})
	}
}
