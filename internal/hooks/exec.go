package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxOutput is how much of a failed command's output its error shows: the end, where the reason
// usually is.
const maxOutput = 2 << 10

// waitDelay bounds the wait for the command's output once it has exited or been killed, in case
// a process that left its group still holds the pipe.
const waitDelay = 2 * time.Second

// runExec runs argv without a shell, with the facts in its environment. On timeout the whole
// process group is killed, so a script's children do not outlive it.
func runExec(ctx context.Context, argv []string, timeout time.Duration, f Facts, facts []byte) error {
	name := "hook exec " + argv[0] // not the arguments: they may hold a token
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), environ(f, facts)...)
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = waitDelay
	killGroup(cmd)

	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: stopped before it finished: %w%s", name, ctx.Err(), out.suffix())
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s: killed after %s (cutover.hooks.timeout)%s", name, timeout, out.suffix())
	case errors.As(err, &ee):
		return fmt.Errorf("%s: %s%s", name, ee.ProcessState, out.suffix())
	}
	return fmt.Errorf("%s: %w", name, err)
}

// environ returns the MIGRATED_* variables. Appended after os.Environ, they win over any
// inherited variable of the same name.
func environ(f Facts, facts []byte) []string {
	return []string{
		"MIGRATED_MIGRATION=" + f.Migration,
		"MIGRATED_OP=" + f.Op,
		"MIGRATED_WRITABLE=" + f.Writable,
		"MIGRATED_WRITABLE_ENGINE=" + f.WritableEngine,
		"MIGRATED_WRITABLE_DSN=" + f.WritableDSN,
		"MIGRATED_FENCED_DSN=" + f.FencedDSN,
		"MIGRATED_FENCE_POSITION=" + f.FencePosition,
		"MIGRATED_WRITE_UNAVAILABLE_SECONDS=" + strconv.FormatFloat(f.WriteUnavailableSeconds, 'f', -1, 64),
		"MIGRATED_FACTS=" + string(facts),
	}
}

// tail keeps the last maxOutput bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= maxOutput {
		t.cut = t.cut || len(t.buf) > 0 || len(p) > maxOutput
		t.buf = append(t.buf[:0], p[len(p)-maxOutput:]...)
		return n, nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - maxOutput; over > 0 {
		t.cut = true
		t.buf = t.buf[:copy(t.buf, t.buf[over:])]
	}
	return n, nil
}

// suffix formats the output for an error: "; output: ...", or "; no output".
func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if t.cut {
		// Start on a whole character.
		for len(b) > 0 && b[0]&0xC0 == 0x80 {
			b = b[1:]
		}
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	switch {
	case s == "":
		return "; no output"
	case t.cut:
		return "; output ends:\n..." + s
	}
	return "; output:\n" + s
}
