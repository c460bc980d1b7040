package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client calls a running daemon's control API. It is what the CLI subcommands use.
type Client struct {
	// BaseURL is the daemon's API, e.g. "http://127.0.0.1:7654".
	BaseURL string
	// Token is sent as a bearer token on actions when not empty.
	Token string
	// HTTP is the client to use, default http.DefaultClient. Actions such as cutover can take
	// a while, so bound calls with the context rather than a client timeout.
	HTTP *http.Client
}

// UnreachableError means the daemon did not answer at all, which most often means it is not
// running or listens elsewhere.
type UnreachableError struct {
	BaseURL string
	Err     error
}

// Error tells the operator to check that the daemon is running.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach migrated at %s: is `migrated run` running? (%v)", e.BaseURL, e.Err)
}

// Unwrap returns the transport error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// APIError is an error response from the daemon.
type APIError struct {
	Op         string // "status" or the action name
	StatusCode int
	Msg        string // the daemon's message
}

// Error gives the daemon's message, with what to do for the common refusals.
func (e *APIError) Error() string {
	switch e.StatusCode {
	case http.StatusUnauthorized:
		// The daemon's message is about HTTP headers; the operator needs the config key.
		return fmt.Sprintf("%s: migrated refused the token (HTTP 401); set api.token in the config to the daemon's api.token", e.Op)
	case http.StatusNotImplemented:
		return fmt.Sprintf("%s: not available in this version of migrated; upgrade the daemon (%s)", e.Op, e.Msg)
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Op, e.Msg, e.StatusCode)
}

// Status fetches GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	body, err := c.do(ctx, "status", http.MethodGet, "/v1/status", nil)
	if err != nil {
		return Status{}, err
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return Status{}, fmt.Errorf("status: decode response from %s: %w", c.BaseURL, err)
	}
	return st, nil
}

// Action calls POST /v1/{name} and returns the action's JSON result.
func (c *Client) Action(ctx context.Context, name string, req ActionRequest) (json.RawMessage, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%s: encode request: %w", name, err)
	}
	body, err := c.do(ctx, name, http.MethodPost, "/v1/"+url.PathEscape(name), b)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(body), nil
}

// do sends one request and returns the body of a 2xx response.
func (c *Client) do(ctx context.Context, op, method, path string, reqBody []byte) ([]byte, error) {
	u, err := url.JoinPath(c.BaseURL, path)
	if err != nil {
		return nil, fmt.Errorf("%s: api url %q: %w", op, c.BaseURL, err)
	}
	var rd io.Reader
	if reqBody != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		// url.Error repeats the method and URL, which the message already names.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &UnreachableError{BaseURL: c.BaseURL, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: read response from %s: %w", op, c.BaseURL, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &APIError{Op: op, StatusCode: resp.StatusCode, Msg: errorMessage(resp, body)}
	}
	return body, nil
}

// errorMessage extracts the daemon's {"error": ...}, or falls back to the raw body for a proxy
// or another server on the port.
func errorMessage(resp *http.Response, body []byte) string {
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error != "" {
		return eb.Error
	}
	if msg := strings.TrimSpace(string(body)); msg != "" && len(msg) < 200 {
		return msg
	}
	return resp.Status
}
