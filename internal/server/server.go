// Package server is migrated's HTTP control API: health and readiness probes, the status
// document, Prometheus metrics, and the operator actions that the CLI calls.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// DefaultListen is the address the API binds when Options.Listen is empty. It is loopback so that
// an unconfigured daemon cannot be driven from another host.
const DefaultListen = "127.0.0.1:7654"

// shutdownTimeout bounds how long Run waits for in-flight requests once its context is done.
const shutdownTimeout = 5 * time.Second

// maxBodyBytes bounds an action's request body; ActionRequest is a few bytes.
const maxBodyBytes = 64 << 10

// ActionNames are the operator actions served at POST /v1/{name}, in the order an operator
// meets them.
var ActionNames = []string{"pause", "resume", "verify", "cutover", "rollback", "complete", "cancel"}

// ActionFunc carries out one operator action. ctx is cancelled when the caller disconnects or
// the server is forced to close, so an action that must not stop half way should detach with
// context.WithoutCancel. The result is returned to the caller as JSON. It is an alias so that a
// plain func literal fits Options.Actions.
type ActionFunc = func(ctx context.Context, req ActionRequest) (any, error)

// ActionRequest is the JSON body of POST /v1/{action}. Every field is optional.
type ActionRequest struct {
	// Confirm is the migration name, for actions that ask the operator to type it.
	Confirm string `json:"confirm"`
	// DryRun asks the action to check its preconditions and report, without acting.
	DryRun bool `json:"dry_run"`
	// Force skips the action's safety checks.
	Force bool `json:"force"`
}

// ActionError is an action failure that the caller should see with a specific HTTP status,
// such as 409 for an action the current phase does not allow. Other errors become 500.
type ActionError struct {
	Code int    // HTTP status code
	Msg  string // what went wrong and what to do next
}

// Error returns Msg.
func (e *ActionError) Error() string { return e.Msg }

// Options configures a Server. Only Status is required.
type Options struct {
	// Listen is the TCP address to bind, default DefaultListen. Port 0 picks a free port; see
	// Server.Addr.
	Listen string
	// Token is the bearer token that mutating calls must present. Empty means none, which is
	// allowed only on a loopback address.
	Token string
	// Gatherer is served at /metrics. Nil serves no metrics.
	Gatherer prometheus.Gatherer
	// Status returns a snapshot of the migration. It is called concurrently, once per request.
	Status func() Status
	// Ready returns nil when the daemon is ready, else the reason it is not. Nil means always.
	Ready func() error
	// Actions maps names from ActionNames to their implementations. A missing name answers 501,
	// so the API is the same whatever this build supports.
	Actions map[string]ActionFunc
	// Logger receives one line per mutating call and per failure. Default: no logging.
	Logger *zap.Logger
}

// Server is the control API. New binds its socket; Run serves it.
type Server struct {
	opts      Options
	tokenHash [sha256.Size]byte
	ln        net.Listener
	srv       *http.Server
	log       *zap.Logger

	runOnce sync.Once
}

// New checks opts, fills in defaults and binds the listening socket, so that Addr is valid and
// clients can connect as soon as New returns. It refuses a non-loopback address without a token,
// since anyone who can reach the port could otherwise cut over or cancel the migration. Call Run
// to serve, or Close to release the socket without serving.
func New(opts Options) (*Server, error) {
	if opts.Status == nil {
		return nil, errors.New("server: Options.Status is required")
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	for name := range opts.Actions {
		if !slices.Contains(ActionNames, name) {
			return nil, fmt.Errorf("server: unknown action %q; want one of %s", name, strings.Join(ActionNames, ", "))
		}
	}
	loopback, err := isLoopback(opts.Listen)
	if err != nil {
		return nil, err
	}
	if !loopback && opts.Token == "" {
		return nil, fmt.Errorf("api.listen %s is not a loopback address; set api.token", opts.Listen)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("api.listen %s: %w", opts.Listen, err)
	}
	s := &Server{
		opts:      opts,
		tokenHash: sha256.Sum256([]byte(opts.Token)),
		ln:        ln,
		log:       opts.Logger.Named("api"),
	}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	return s, nil
}

// isLoopback reports whether listen, a host:port, binds only loopback interfaces. An empty host
// binds every interface, and a host name other than localhost may resolve anywhere, so neither
// counts.
func isLoopback(listen string) (bool, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, fmt.Errorf("api.listen %q: want host:port, e.g. %s: %w", listen, DefaultListen, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	host, _, _ = strings.Cut(host, "%") // IPv6 zone
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// Addr returns the bound address, with the real port when Options.Listen asked for port 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is done, then stops accepting connections and gives in-flight requests
// up to 5s to finish before closing them. It returns nil after a clean shutdown. Run may be
// called once.
func (s *Server) Run(ctx context.Context) error {
	started := false
	s.runOnce.Do(func() { started = true })
	if !started {
		return errors.New("server: Run called twice")
	}
	s.log.Info("serving", zap.String("addr", s.Addr()), zap.Bool("token", s.opts.Token != ""))

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.srv.Serve(s.ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve api on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		_ = s.srv.Close() // cancels the requests still running
		return fmt.Errorf("shut down api: requests still running after %s: %w", shutdownTimeout, err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve api on %s: %w", s.Addr(), err)
	}
	return nil
}

// Close releases the socket of a Server whose Run was never called, and stops a running one
// without waiting for requests.
func (s *Server) Close() error {
	if err := s.srv.Close(); err != nil {
		return err
	}
	// Serve closes the listener itself; before Serve it is ours to close.
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.opts.Status())
	})
	if s.opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog: zap.NewStdLog(s.log.Named("metrics")),
		}))
	}
	mux.HandleFunc("POST /v1/{action}", s.handleAction)
	mux.HandleFunc("/v1/{action}", func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(ActionNames, r.PathValue("action")) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s", r.URL.Path))
			return
		}
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s needs POST", r.URL.Path))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s", r.URL.Path))
	})
	return mux
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) handleAction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("action")
	log := s.log.With(zap.String("action", name), zap.String("remote", r.RemoteAddr))
	if !slices.Contains(ActionNames, name) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q; want one of %s", name, strings.Join(ActionNames, ", ")))
		return
	}
	if !s.authorized(r) {
		log.Warn("unauthorized action refused")
		w.Header().Set("WWW-Authenticate", `Bearer realm="migrated"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token; send the daemon's api.token as \"Authorization: Bearer <token>\"")
		return
	}
	action, ok := s.opts.Actions[name]
	if !ok {
		writeError(w, http.StatusNotImplemented, name+" is not available in this version")
		return
	}
	var req ActionRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad %s request body: %v", name, err))
		return
	}
	log = log.With(zap.Bool("dry_run", req.DryRun), zap.Bool("force", req.Force))
	log.Info("action requested")

	result, err := action(r.Context(), req)
	if err != nil {
		if ae, ok := errors.AsType[*ActionError](err); ok {
			log.Info("action refused", zap.Int("code", ae.Code), zap.String("reason", ae.Msg))
			writeError(w, ae.Code, ae.Msg)
			return
		}
		log.Error("action failed", zap.Error(err))
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	log.Info("action done")
	if result == nil {
		result = struct{}{}
	}
	writeJSON(w, http.StatusOK, result)
}

// authorized reports whether r carries the configured bearer token. Both sides are hashed first
// so that the comparison takes the same time whatever the length of the guess.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// decodeBody reads an optional JSON body into v. An empty body leaves v as it is, so
// `curl -X POST .../v1/pause` works.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
