package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/migrated/migrated/internal/hooks"
)

// router is the application's end of the routing hook: a web server on the loopback interface
// whose /route handler points the writer at the side the daemon's webhook names, as a connection
// pooler or service discovery would in production. It stands for the application, so it trusts
// nothing it is sent: an unknown side is refused and the writer stays where it is.
type router struct {
	w   *Writer
	ln  net.Listener
	srv *http.Server

	mu     sync.Mutex
	routes []string
}

// newRouter binds a free port on 127.0.0.1; from then on only Run releases it.
func newRouter(w *Writer) (*router, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the routing hook: %w", err)
	}
	r := &router{w: w, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /route", r.route)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return r, nil
}

// URL is what cutover.hooks.webhook is set to.
func (r *router) URL() string { return "http://" + r.ln.Addr().String() + "/route" }

// Run serves the hook until ctx ends.
func (r *router) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- r.srv.Serve(r.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("routing hook server: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := r.srv.Shutdown(shutCtx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Routes returns the sides the hook named, in order.
func (r *router) Routes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.routes...)
}

// route handles the webhook's POST of hooks.Facts.
func (r *router) route(rw http.ResponseWriter, req *http.Request) {
	var f hooks.Facts
	if err := json.NewDecoder(io.LimitReader(req.Body, 64<<10)).Decode(&f); err != nil {
		http.Error(rw, "read the routing facts: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := r.w.Route(f.Writable); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.routes = append(r.routes, f.Writable)
	r.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}
