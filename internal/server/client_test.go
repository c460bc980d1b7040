package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// startClientServer serves a real Server over httptest and returns a Client for it.
func startClientServer(t *testing.T, opts Options, token string) *Client {
	t.Helper()
	s := newTestServer(t, opts)
	ts := httptest.NewServer(s.srv.Handler)
	t.Cleanup(ts.Close)
	return &Client{BaseURL: ts.URL, Token: token, HTTP: ts.Client()}
}

func TestClientStatus(t *testing.T) {
	want := sampleStatus()
	c := startClientServer(t, Options{Status: func() Status { return want }}, "")
	got, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Status:\n got %+v\nwant %+v", got, want)
	}
}

func TestClientAction(t *testing.T) {
	const token = "s3cret"
	opts := Options{Token: token, Actions: map[string]ActionFunc{
		"verify": func(ctx context.Context, req ActionRequest) (any, error) {
			return map[string]any{"dry_run": req.DryRun, "mismatched_chunks": 0}, nil
		},
		"cutover": func(ctx context.Context, req ActionRequest) (any, error) {
			return nil, &ActionError{Code: http.StatusConflict, Msg: "phase is snapshotting; wait for streaming"}
		},
	}}
	tests := []struct {
		name     string
		action   string
		token    string
		want     string // JSON result, compacted
		wantCode int    // APIError.StatusCode when the call fails
		wantErr  string // substring of the error
	}{
		{"ok", "verify", token, `{"dry_run":true,"mismatched_chunks":0}`, 0, ""},
		{"refused", "cutover", token, "", 409, "cutover: phase is snapshotting; wait for streaming (HTTP 409)"},
		{"bad token", "verify", "xyzzy", "", 401, "set api.token in the config"},
		{"missing", "rollback", token, "", 501, "rollback: not available in this version of migrated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startClientServer(t, opts, tt.token)
			got, err := c.Action(context.Background(), tt.action, ActionRequest{DryRun: true})
			if tt.wantErr != "" {
				var ae *APIError
				if !errors.As(err, &ae) {
					t.Fatalf("err = %v, want *APIError", err)
				}
				if got, want := ae.StatusCode, tt.wantCode; got != want {
					t.Errorf("StatusCode = %d, want %d", got, want)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), tt.token) && tt.token != "" {
					t.Errorf("err %q leaks the token", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, got); err != nil {
				t.Fatal(err)
			}
			if got, want := buf.String(), tt.want; got != want {
				t.Errorf("result = %s, want %s", got, want)
			}
		})
	}
}

func TestClientUnreachable(t *testing.T) {
	// Bind and close a port so that nothing listens on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ln.Close()

	c := &Client{BaseURL: base}
	_, err = c.Status(context.Background())
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *UnreachableError", err)
	}
	msg := err.Error()
	for _, want := range []string{"cannot reach migrated at " + base, "is `migrated run` running?", "connection refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("err = %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "Get ") {
		t.Errorf("err = %q repeats the url.Error prefix", msg)
	}
}

func TestClientCancelled(t *testing.T) {
	c := startClientServer(t, Options{}, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Status(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestClientNotMigrated(t *testing.T) {
	// Some other server on the port: the error should carry its body, not a JSON decode error.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	defer ts.Close()
	c := &Client{BaseURL: ts.URL}
	_, err := c.Status(context.Background())
	if got, want := err.Error(), "status: 404 page not found (HTTP 404)"; got != want {
		t.Errorf("err = %q, want %q", got, want)
	}
}
