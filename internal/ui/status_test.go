package ui

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/server"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var now = time.Date(2025, 3, 1, 13, 2, 3, 0, time.UTC)

func endpoints(s server.Status) server.Status {
	s.Migration = "orders-to-pg16"
	s.Source = server.Endpoint{Engine: "postgres", DSN: "postgres://app@db1.internal:5432/shop?sslmode=require"}
	s.Target = server.Endpoint{Engine: "postgres", DSN: "postgres://app@db2.internal:5432/shop"}
	return s
}

func snapshotting() server.Status {
	return endpoints(server.Status{
		Phase: "snapshotting",
		Since: now.Add(-62 * time.Minute),
		Snapshot: server.SnapshotState{
			TablesTotal: 4, TablesDone: 1, RowsCopied: 1_334_567, RowsEstimate: 2_410_000, ETASeconds: 750,
			Tables: []server.TableState{
				{Table: "public.customers", State: "done", RowsCopied: 100_000, RowsEstimate: 98_000, ChunksTotal: 1, ChunksDone: 1},
				{Table: "public.orders", State: "copying", RowsCopied: 1_234_567, RowsEstimate: 2_000_000, ChunksTotal: 5, ChunksDone: 3},
				{Table: "public.order_items", State: "pending", RowsEstimate: 312_000, ChunksTotal: 12},
				{Table: "audit.events", State: "copying", RowsCopied: 0},
			},
		},
	})
}

func streaming() server.Status {
	return endpoints(server.Status{
		Phase: "streaming",
		Since: now.Add(-3*time.Hour - 4*time.Minute),
		Snapshot: server.SnapshotState{
			TablesTotal: 4, TablesDone: 4, RowsCopied: 2_412_345, RowsEstimate: 2_410_000,
			Tables: []server.TableState{{Table: "public.orders", State: "done", RowsCopied: 2_000_000}},
		},
		Stream: server.StreamState{
			SourcePosition: "3/7A1B2C40", AppliedPosition: "3/7A000000",
			LastCommitTime: now.Add(-1500 * time.Millisecond),
			LagSeconds:     1.234, LagBytes: 12_897_345,
			ChangesApplied: 9_876_543, TxnsApplied: 123_456, Connected: true,
		},
	})
}

func failed() server.Status {
	s := streaming()
	s.Phase = "failed"
	s.Since = now.Add(-45 * time.Second)
	s.Stream.Connected = false
	s.Error = "replication slot migrated_orders was dropped on the source; the change stream cannot resume. " +
		"Run `migrated cancel` and start a new migration."
	return s
}

func manyTables() server.Status {
	s := snapshotting()
	s.Snapshot.Tables = nil
	for i := range 25 {
		state := "pending"
		switch {
		case i < 10:
			state = "done"
		case i == 10 || i == 11:
			state = "copying"
		}
		t := server.TableState{Table: fmt.Sprintf("public.t%02d", i), State: state, RowsEstimate: 1000, ChunksTotal: 2}
		if state == "done" {
			t.RowsCopied, t.ChunksDone = 1000, 2
		}
		if state == "copying" {
			t.RowsCopied, t.ChunksDone = 500, 1
		}
		s.Snapshot.Tables = append(s.Snapshot.Tables, t)
	}
	s.Snapshot.TablesTotal, s.Snapshot.TablesDone = 25, 10
	return s
}

func TestRenderStatus(t *testing.T) {
	paused := streaming()
	paused.Paused = true
	tests := []struct {
		name   string
		status server.Status
		opts   RenderOptions
	}{
		{"snapshotting", snapshotting(), RenderOptions{Width: 100}},
		{"snapshotting_narrow", snapshotting(), RenderOptions{Width: 60}},
		{"snapshotting_color", snapshotting(), RenderOptions{Width: 100, Color: true}},
		{"streaming", streaming(), RenderOptions{}},
		{"paused", paused, RenderOptions{Width: 100}},
		{"failed", failed(), RenderOptions{Width: 80}},
		{"failed_color", failed(), RenderOptions{Width: 80, Color: true}},
		{"many_tables", manyTables(), RenderOptions{Width: 90}},
		{"empty", server.Status{}, RenderOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = now
			var buf bytes.Buffer
			RenderStatus(&buf, tt.status, tt.opts)
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("output differs from %s (run go test -update to accept):\n got:\n%s\nwant:\n%s", golden, got, want)
			}
			if !tt.opts.Color && strings.Contains(buf.String(), "\x1b[") {
				t.Error("colour codes without Color")
			}
		})
	}
}

// TestRenderWidth checks that no plain line is wider than asked, down to a narrow terminal.
func TestRenderWidth(t *testing.T) {
	for _, width := range []int{60, 80, 120} {
		var buf bytes.Buffer
		RenderStatus(&buf, snapshotting(), RenderOptions{Width: width, Now: now})
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.HasPrefix(l, "  ") && len([]rune(l)) > width {
				t.Errorf("width %d: table line is %d wide: %q", width, len([]rune(l)), l)
			}
		}
	}
}
