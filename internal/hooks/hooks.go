// Package hooks runs the routing hooks of a cutover or rollback: the operator's command and
// webhook that send the application's writes to the side that now takes them.
//
// A hook runs after the commit, so its failure does not undo anything. Run's error says so and
// names where the application must be pointed by hand.
package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/migrated/migrated/internal/config"
)

// Facts are what a routing hook is told. No password ever: Run redacts both DSNs again in case
// the caller did not.
type Facts struct {
	Migration string `json:"migration"`
	Op        string `json:"op"`       // "cutover" or "rollback"
	Writable  string `json:"writable"` // "target" or "source": the side that now takes writes
	// WritableEngine is "postgres" or "mysql".
	WritableEngine string `json:"writable_engine"`
	WritableDSN    string `json:"writable_dsn"` // redacted DSN of the writable side
	FencedDSN      string `json:"fenced_dsn"`   // redacted DSN of the side that is now read-only
	// FencePosition is the old side's position (LSN, binlog position) when it was fenced.
	FencePosition           string    `json:"fence_position"`
	WriteUnavailableSeconds float64   `json:"write_unavailable_seconds"`
	At                      time.Time `json:"at"` // when the new side became writable
}

// RoutingError is the failure of one or both hooks. The switch itself is done; the application
// has to be pointed at the writable side by hand.
type RoutingError struct {
	Op          string  // "cutover" or "rollback"
	Writable    string  // "target" or "source"
	WritableDSN string  // redacted
	Errs        []error // one per failed hook, exec first
}

// Error lists each hook's failure, then what to do.
func (e *RoutingError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	op := e.Op
	if op == "" {
		op = "switch"
	}
	return fmt.Sprintf("%s; the %s is done and the %s takes writes: point the application at %s by hand",
		strings.Join(msgs, "; "), op, e.Writable, e.WritableDSN)
}

// Unwrap returns the failures of the hooks.
func (e *RoutingError) Unwrap() []error { return e.Errs }

// Run runs the hooks h with the facts f: the exec hook first, then the webhook, each bounded by
// h.Timeout (config.DefaultHookTimeout when unset). The webhook runs even when the exec hook
// failed, since either may be enough to route the application. It returns nil when no hook is
// set or every hook succeeded, else a *RoutingError.
func Run(ctx context.Context, h config.Hooks, f Facts) error {
	if len(h.Exec) == 0 && h.Webhook == "" {
		return nil
	}
	f.WritableDSN = config.Redact(f.WritableDSN)
	f.FencedDSN = config.Redact(f.FencedDSN)
	if f.At.IsZero() {
		f.At = time.Now().UTC()
	}
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode hook facts: %w", err)
	}
	timeout := h.Timeout.Duration()
	if timeout <= 0 {
		timeout = config.DefaultHookTimeout
	}
	var errs []error
	if len(h.Exec) > 0 {
		if err := runExec(ctx, h.Exec, timeout, f, body); err != nil {
			errs = append(errs, err)
		}
	}
	if h.Webhook != "" {
		if err := postWebhook(ctx, h, timeout, body); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &RoutingError{Op: f.Op, Writable: f.Writable, WritableDSN: f.WritableDSN, Errs: errs}
}
