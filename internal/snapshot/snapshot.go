// Package snapshot copies the source tables into the target in parallel chunks. It knows no
// engine: an engine supplies sessions that copy one chunk each, and marks each chunk done in the
// same target transaction that wrote it, so a restart never re-copies finished work.
package snapshot

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Chunk is one unit of copy work.
type Chunk struct {
	Table         string
	Index, Count  int
	EstimatedRows int64
	// Ref is the engine's own description of the chunk.
	Ref any
}

// Session is one worker's pair of connections. Copy writes one chunk and records it done.
// rows is advanced while the copy runs, for live progress.
type Session interface {
	Copy(ctx context.Context, c Chunk, rows *atomic.Int64) (int64, error)
	Close(ctx context.Context)
}

// Opener opens a worker Session.
type Opener func(ctx context.Context) (Session, error)

// Copier runs chunks on a pool of sessions.
type Copier struct {
	Workers int
	Open    Opener
	// Done is called after each chunk commits.
	Done func(c Chunk, rows int64)
	Log  *zap.Logger

	mu   sync.Mutex
	live map[string]*atomic.Int64
}

// Live returns the rows copied so far for a table by chunks in flight and done in this run.
func (c *Copier) Live(table string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.live[table]; ok {
		return n.Load()
	}
	return 0
}

func (c *Copier) counter(table string) *atomic.Int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live == nil {
		c.live = map[string]*atomic.Int64{}
	}
	n, ok := c.live[table]
	if !ok {
		n = &atomic.Int64{}
		c.live[table] = n
	}
	return n
}

// Run copies every chunk, biggest first so the longest copies overlap the rest. It stops at the
// first error; chunks already committed stay done.
func (c *Copier) Run(ctx context.Context, chunks []Chunk) error {
	if len(chunks) == 0 {
		return nil
	}
	sorted := append([]Chunk(nil), chunks...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].EstimatedRows > sorted[j].EstimatedRows })
	workers := c.Workers
	if workers < 1 {
		workers = 1
	}
	if workers > len(sorted) {
		workers = len(sorted)
	}
	work := make(chan Chunk)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		for _, ch := range sorted {
			select {
			case work <- ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for i := 0; i < workers; i++ {
		g.Go(func() error {
			s, err := c.Open(ctx)
			if err != nil {
				return err
			}
			defer s.Close(context.WithoutCancel(ctx))
			for ch := range work {
				n, err := s.Copy(ctx, ch, c.counter(ch.Table))
				if err != nil {
					return fmt.Errorf("snapshot: %w", err)
				}
				if c.Log != nil {
					c.Log.Info("chunk copied", zap.String("table", ch.Table), zap.Int("chunk", ch.Index+1), zap.Int("of", ch.Count), zap.Int64("rows", n))
				}
				if c.Done != nil {
					c.Done(ch, n)
				}
			}
			return nil
		})
	}
	return g.Wait()
}
