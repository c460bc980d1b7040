package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSetPhase(t *testing.T) {
	tests := []struct {
		name   string
		phases []string // SetPhase calls, in order
		want   string   // the only phase at 1
	}{
		{"first", []string{"snapshotting"}, "snapshotting"},
		{"advance", []string{"snapshotting", "streaming"}, "streaming"},
		{"repeat", []string{"streaming", "streaming"}, "streaming"},
		{"terminal", []string{"snapshotting", "streaming", "cutting-over", "failed"}, "failed"},
		{"unknown then known", []string{"paused-forever", "completed"}, "completed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(prometheus.NewRegistry())
			for _, p := range tt.phases {
				m.SetPhase(p)
			}
			for _, p := range Phases {
				want := 0.0
				if p == tt.want {
					want = 1
				}
				if got := testutil.ToFloat64(m.Phase.WithLabelValues(p)); got != want {
					t.Errorf("migrated_phase{phase=%q} = %v, want %v", p, got, want)
				}
			}
			if got, want := testutil.CollectAndCount(m.Phase), len(Phases); got != want {
				t.Errorf("migrated_phase series = %d, want %d", got, want)
			}
		})
	}
}

func TestSetPhaseUnknown(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.SetPhase("rewinding")
	if got, want := testutil.ToFloat64(m.Phase.WithLabelValues("rewinding")), 1.0; got != want {
		t.Errorf("unknown phase = %v, want %v", got, want)
	}
	if got, want := testutil.CollectAndCount(m.Phase), len(Phases)+1; got != want {
		t.Errorf("migrated_phase series = %d, want %d", got, want)
	}
}

func TestNewBeforeSetPhase(t *testing.T) {
	m := New(prometheus.NewRegistry())
	for _, p := range Phases {
		if got, want := testutil.ToFloat64(m.Phase.WithLabelValues(p)), 0.0; got != want {
			t.Errorf("migrated_phase{phase=%q} = %v, want %v", p, got, want)
		}
	}
	if got, want := testutil.CollectAndCount(m.BuildInfo, "migrated_build_info"), 1; got != want {
		t.Errorf("migrated_build_info series = %d, want %d", got, want)
	}
}

// TestLint touches every vector so that each family has a series, then runs the Prometheus
// naming lint over everything registered.
func TestLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	m.SetPhase("streaming")
	m.LagSeconds.WithLabelValues("forward").Set(1.5)
	m.LagBytes.WithLabelValues("forward").Set(4096)
	m.SnapshotRowsCopied.WithLabelValues("public.orders").Add(10)
	m.SnapshotRowsEstimated.WithLabelValues("public.orders").Set(100)
	m.ChangesReceived.WithLabelValues("forward").Inc()
	m.ChangesApplied.WithLabelValues("forward", "insert").Inc()
	m.TransactionsApplied.WithLabelValues("forward").Inc()
	m.ApplyBatchDuration.Observe(0.02)
	m.ApplyBatchChanges.Observe(12)
	m.StreamConnected.WithLabelValues("reverse").Set(1)
	m.StreamReconnects.WithLabelValues("reverse").Inc()
	m.LastApplyTimestamp.WithLabelValues("forward").SetToCurrentTime()
	m.Errors.WithLabelValues("cdc").Inc()
	m.CutoverPhaseDuration.WithLabelValues("drain").Set(0.3)

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(families), len(m.collectors()); got != want {
		t.Errorf("metric families = %d, want %d", got, want)
	}
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "migrated_") {
			t.Errorf("%s: missing migrated_ prefix", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
	}
}

func TestCounterValues(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.ChangesApplied.WithLabelValues("forward", "update").Add(3)
	m.ChangesApplied.WithLabelValues("forward", "delete").Inc()
	want := `
# HELP migrated_changes_applied_total Row changes applied to the destination, by operation.
# TYPE migrated_changes_applied_total counter
migrated_changes_applied_total{direction="forward",op="delete"} 1
migrated_changes_applied_total{direction="forward",op="update"} 3
`
	if err := testutil.CollectAndCompare(m.ChangesApplied, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	defer func() {
		if recover() == nil {
			t.Error("second New on the same registry did not panic")
		}
	}()
	New(reg)
}
