package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/state"
)

const (
	forward = "forward"
	reverse = "reverse"
)

// errStopped is what a phase's work returns when an operator action stopped it.
var errStopped = errors.New("stopped by an operator action")

// work is the running work of a phase, which an operator action can stop.
type work struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done closes
}

// runWork runs fn as the phase's work until it returns or an action stops it. It refuses to start
// while an action holds the daemon or the migration is paused.
func (d *Daemon) runWork(ctx context.Context, fn func(context.Context) error) error {
	wctx, cancel := context.WithCancel(ctx)
	w := &work{cancel: cancel, done: make(chan struct{})}
	d.mu.Lock()
	if d.op != "" || d.paused {
		d.mu.Unlock()
		cancel()
		return errStopped
	}
	d.work = w
	d.mu.Unlock()

	err := fn(wctx)
	stopped := wctx.Err() != nil && ctx.Err() == nil
	cancel()
	d.mu.Lock()
	d.work = nil
	d.mu.Unlock()
	if stopped {
		err = errStopped
	}
	w.err = err
	close(w.done)
	return err
}

// currentWork returns the running work, or nil.
func (d *Daemon) currentWork() *work {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.work
}

// stopWork stops the running work and waits for it to return.
func (d *Daemon) stopWork(ctx context.Context) error {
	w := d.currentWork()
	if w == nil {
		return nil
	}
	w.cancel()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the running work did not stop: %w", ctx.Err())
	}
}

// waitTurn blocks while an action holds the daemon or the migration is paused.
func (d *Daemon) waitTurn(ctx context.Context) error {
	for {
		d.mu.Lock()
		blocked, wake := d.op != "" || d.paused, d.wake
		d.mu.Unlock()
		if !blocked {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notify wakes waitTurn. Call with d.mu held.
func (d *Daemon) notify() {
	close(d.wake)
	d.wake = make(chan struct{})
}

// acquire takes the daemon for one operator action at a time.
func (d *Daemon) acquire(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.store == nil && !d.actionable {
		return &server.ActionError{Code: http.StatusServiceUnavailable, Msg: "the daemon is still starting (preflight); try again in a moment"}
	}
	if d.op != "" {
		return &server.ActionError{Code: http.StatusConflict, Msg: fmt.Sprintf("%s refused: %s is running; wait for it to finish (migrated status)", name, d.op)}
	}
	d.op = name
	return nil
}

// release ends the action taken by acquire, letting the phase's work start again.
func (d *Daemon) release() {
	d.mu.Lock()
	d.op = ""
	d.notify()
	d.mu.Unlock()
}

// sourceStore opens the migration state on the old source, where the reverse stream keeps its
// checkpoint. It is created at the cutover.
func (d *Daemon) sourceStore(ctx context.Context) (*state.Store, error) {
	d.mu.Lock()
	s := d.srcStore
	d.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := state.Open(ctx, d.source, d.cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("on the source: %w", err)
	}
	d.mu.Lock()
	d.srcStore = s
	d.mu.Unlock()
	return s, nil
}

// phase returns the phase shown now.
func (d *Daemon) phase() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status.Phase
}
