package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// newTestServer builds a Server on a free loopback port without running it; tests drive its
// handler through httptest.
func newTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Status == nil {
		opts.Status = func() Status { return Status{} }
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func serve(s *Server, method, path, token, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(w, r)
	return w
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body.String(), err)
	}
	return eb.Error
}

func TestNewListen(t *testing.T) {
	tests := []struct {
		listen, token string
		wantErr       string // substring; "" means New succeeds
	}{
		{"127.0.0.1:0", "", ""},
		{"localhost:0", "", ""},
		{"[::1]:0", "", ""},
		{"0.0.0.0:0", "", "api.listen 0.0.0.0:0 is not a loopback address; set api.token"},
		{":0", "", "api.listen :0 is not a loopback address; set api.token"},
		{"example.com:7654", "", "is not a loopback address"},
		{"0.0.0.0:0", "s3cret", ""},
		{"127.0.0.1", "", "want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.listen+"/"+tt.token, func(t *testing.T) {
			s, err := New(Options{Listen: tt.listen, Token: tt.token, Status: func() Status { return Status{} }})
			if err == nil {
				defer s.Close()
			}
			if tt.wantErr == "" {
				if err != nil {
					if strings.Contains(tt.listen, "::1") {
						t.Skipf("no IPv6 loopback: %v", err)
					}
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q leaks the token", err)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Options{Listen: "127.0.0.1:0"}); err == nil {
		t.Error("New without Status succeeded")
	}
	_, err := New(Options{
		Listen:  "127.0.0.1:0",
		Status:  func() Status { return Status{} },
		Actions: map[string]ActionFunc{"cut-over": nil},
	})
	if err == nil || !strings.Contains(err.Error(), `"cut-over"`) {
		t.Errorf("New with unknown action: err = %v", err)
	}
}

func TestProbes(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		ready    func() error
		wantCode int
		wantBody string // substring
	}{
		{"healthz", "/healthz", nil, 200, "ok"},
		{"readyz nil", "/readyz", nil, 200, "ok"},
		{"readyz ready", "/readyz", func() error { return nil }, 200, "ok"},
		{"readyz not ready", "/readyz", func() error { return errors.New("source not connected") }, 503, "source not connected"},
		{"unknown path", "/nope", nil, 404, "no such endpoint /nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Options{Ready: tt.ready})
			w := serve(s, http.MethodGet, tt.path, "", "")
			if got, want := w.Code, tt.wantCode; got != want {
				t.Errorf("code = %d, want %d", got, want)
			}
			if got := w.Body.String(); !strings.Contains(got, tt.wantBody) {
				t.Errorf("body = %q, want it to contain %q", got, tt.wantBody)
			}
		})
	}
}

func sampleStatus() Status {
	return Status{
		Migration: "orders-to-pg16",
		Phase:     "streaming",
		Since:     time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Source:    Endpoint{Engine: "postgres", DSN: "postgres://app@db1:5432/shop"},
		Target:    Endpoint{Engine: "postgres", DSN: "postgres://app@db2:5432/shop"},
		Snapshot: SnapshotState{TablesTotal: 2, TablesDone: 2, RowsCopied: 30, RowsEstimate: 30, Tables: []TableState{
			{Table: "public.orders", State: "done", RowsCopied: 20, RowsEstimate: 20, ChunksTotal: 2, ChunksDone: 2},
			{Table: "public.items", State: "done", RowsCopied: 10, RowsEstimate: 10, ChunksTotal: 1, ChunksDone: 1},
		}},
		Stream: StreamState{
			SourcePosition: "0/16B3748", AppliedPosition: "0/16B3700",
			LastCommitTime: time.Date(2025, 3, 1, 12, 5, 0, 0, time.UTC),
			LagSeconds:     0.25, LagBytes: 72, ChangesApplied: 1000, TxnsApplied: 100, Connected: true,
		},
	}
}

func TestStatusRoundTrip(t *testing.T) {
	want := sampleStatus()
	s := newTestServer(t, Options{Status: func() Status { return want }})
	w := serve(s, http.MethodGet, "/v1/status", "", "")
	if got, want := w.Code, 200; got != want {
		t.Fatalf("code = %d, want %d", got, want)
	}
	if got, want := w.Header().Get("Content-Type"), "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	var got Status
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("status round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "migrated_test_gauge", Help: "Test."})
	g.Set(42)
	reg.MustRegister(g)
	s := newTestServer(t, Options{Gatherer: reg})
	w := serve(s, http.MethodGet, "/metrics", "", "")
	if got, want := w.Code, 200; got != want {
		t.Fatalf("code = %d, want %d", got, want)
	}
	if got, want := w.Body.String(), "migrated_test_gauge 42"; !strings.Contains(got, want) {
		t.Errorf("body = %q, want it to contain %q", got, want)
	}
}

func TestActions(t *testing.T) {
	const token = "s3cret"
	var gotReq ActionRequest
	actions := map[string]ActionFunc{
		"pause": func(ctx context.Context, req ActionRequest) (any, error) {
			gotReq = req
			return map[string]bool{"paused": true}, nil
		},
		"resume": func(ctx context.Context, req ActionRequest) (any, error) { return nil, nil },
		"cutover": func(ctx context.Context, req ActionRequest) (any, error) {
			return nil, &ActionError{Code: http.StatusConflict, Msg: "lag is 40s; wait until it is under 1s"}
		},
		"verify": func(ctx context.Context, req ActionRequest) (any, error) {
			return nil, errors.New("target unreachable")
		},
	}
	tests := []struct {
		name     string
		method   string
		path     string
		token    string
		body     string
		wantCode int
		wantBody string // substring
	}{
		{"no token", "POST", "/v1/pause", "", "", 401, `"error": "missing or wrong bearer token`},
		{"wrong token", "POST", "/v1/pause", "s3cre", "", 401, "bearer token"},
		{"ok", "POST", "/v1/pause", token, `{"dry_run":true,"force":true,"confirm":"m"}`, 200, `"paused": true`},
		{"nil result", "POST", "/v1/resume", token, "", 200, "{}"},
		{"action error", "POST", "/v1/cutover", token, "", 409, "lag is 40s"},
		{"other error", "POST", "/v1/verify", token, "", 500, "target unreachable"},
		{"missing action", "POST", "/v1/rollback", token, "", 501, "rollback is not available in this version"},
		{"unknown action", "POST", "/v1/explode", token, "", 404, `unknown action \"explode\"`},
		{"bad body", "POST", "/v1/pause", token, `{"dryrun":true}`, 400, "unknown field"},
		{"GET action", "GET", "/v1/pause", token, "", 405, "needs POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Options{Token: token, Actions: actions})
			w := serve(s, tt.method, tt.path, tt.token, tt.body)
			if got, want := w.Code, tt.wantCode; got != want {
				t.Errorf("code = %d, want %d (body %q)", got, want, w.Body.String())
			}
			if got := w.Body.String(); !strings.Contains(got, tt.wantBody) {
				t.Errorf("body = %q, want it to contain %q", got, tt.wantBody)
			}
			if tt.wantCode >= 400 && errorOf(t, w) == "" {
				t.Errorf("error body %q has no error", w.Body.String())
			}
		})
	}
	if got, want := gotReq, (ActionRequest{Confirm: "m", DryRun: true, Force: true}); got != want {
		t.Errorf("pause got request %+v, want %+v", got, want)
	}
}

func TestActionsNoToken(t *testing.T) {
	called := false
	s := newTestServer(t, Options{Actions: map[string]ActionFunc{
		"pause": func(ctx context.Context, req ActionRequest) (any, error) { called = true; return nil, nil },
	}})
	w := serve(s, http.MethodPost, "/v1/pause", "", "")
	if got, want := w.Code, 200; got != want {
		t.Errorf("code = %d, want %d", got, want)
	}
	if !called {
		t.Error("pause not called")
	}
}

// TestRun serves on a real socket, then checks that cancelling the context shuts down cleanly.
func TestRun(t *testing.T) {
	s := newTestServer(t, Options{Status: func() Status { return Status{Phase: "streaming"} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), "ok\n"; got != want {
		t.Errorf("healthz = %q, want %q", got, want)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
	if _, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}
