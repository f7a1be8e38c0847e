// Package control is the unix socket through which `flowhouse token`
// reaches the token store of a running `flowhouse serve`: on the
// embedded engine, serve holds the database and no other process may
// open it. The socket serves token creation, listing and revocation
// only, to the user serve runs as (and root): the socket file is 0600,
// and the peer's credentials are checked on every connection, as
// docker.sock's file permissions are its authentication.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/token"
)

// Deps are what the server uses.
type Deps struct {
	Tokens token.Manager
	Logger *slog.Logger
}

// Server serves the control socket.
type Server struct {
	path   string
	tokens token.Manager
	log    *slog.Logger

	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
}

// New builds the server of the socket at path ("" : none); no I/O.
func New(path string, deps Deps) *Server {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{path: path, tokens: deps.Tokens, log: log}
}

// Path is the socket's path, "" when it is off.
func (s *Server) Path() string { return s.path }

// Start listens on the socket. A socket file left by a process that is
// gone is replaced; one that answers is another flowhouse's, and an
// error.
func (s *Server) Start(ctx context.Context) error {
	if s.path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return fmt.Errorf("tokens.control_socket: %w", err)
	}
	if err := clearStale(ctx, s.path); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", s.path)
	if err != nil {
		return fmt.Errorf("tokens.control_socket: listen on %s: %w", s.path, err)
	}
	// The file is made with the umask's mode; connections queued before
	// this chmod are still checked by peer credentials in accept.
	if err := os.Chmod(s.path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("tokens.control_socket: %w", err)
	}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.mu.Lock()
	s.srv, s.done = srv, make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.done)
		if err := srv.Serve(&peerChecked{Listener: ln, log: s.log}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("token control socket failed", "path", s.path, "err", err)
		}
	}()
	s.log.Info("token control socket listening", "path", s.path)
	return nil
}

// Stop closes the socket (removing its file) and waits for the requests
// in flight until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	<-done
	return err
}

// clearStale removes a socket file nothing answers on.
func clearStale(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tokens.control_socket: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("tokens.control_socket: %s exists and is not a socket; remove it or choose another path", path)
	}
	d := net.Dialer{Timeout: time.Second}
	if c, err := d.DialContext(ctx, "unix", path); err == nil {
		c.Close()
		return fmt.Errorf("tokens.control_socket: another flowhouse serves tokens at %s; give this one another tokens.control_socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tokens.control_socket: remove the stale %s: %w", path, err)
	}
	return nil
}

// peerChecked accepts connections of this process's user and root only.
type peerChecked struct {
	net.Listener
	log *slog.Logger
}

func (l *peerChecked) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == uint32(os.Getuid()) || uid == 0) {
			return c, nil
		}
		l.log.Warn("token control socket: connection refused", "peer_uid", uid, "err", err)
		c.Close()
	}
}

func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return cred.Uid, nil
}

// specJSON is a token.Spec on the wire.
type specJSON struct {
	Name           string   `json:"name"`
	Tenant         string   `json:"tenant"`
	AllTenants     bool     `json:"all_tenants"`
	Role           api.Role `json:"role"`
	ExpiresSeconds int64    `json:"expires_seconds"`
	CreatedBy      string   `json:"created_by"`
}

type created struct {
	Secret string     `json:"secret"`
	Token  token.Info `json:"token"`
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Field   string `json:"field,omitempty"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, map[string]bool{"ok": true}) })
	mux.HandleFunc("GET /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		sc := token.AllScope
		if t := r.URL.Query().Get("tenant"); t != "" {
			sc = token.Scope{Tenant: t}
		}
		list, err := s.tokens.List(r.Context(), sc)
		s.answer(w, list, err)
	})
	mux.HandleFunc("GET /v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		in, err := s.tokens.Get(r.Context(), token.AllScope, r.PathValue("id"))
		s.answer(w, in, err)
	})
	mux.HandleFunc("DELETE /v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		in, err := s.tokens.Revoke(r.Context(), token.AllScope, r.PathValue("id"), r.URL.Query().Get("by"))
		s.answer(w, in, err)
	})
	mux.HandleFunc("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var sp specJSON
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sp); err != nil {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, "", "request body: "+err.Error())
			return
		}
		sec, in, err := s.tokens.Create(r.Context(), token.Spec{Name: sp.Name, Tenant: sp.Tenant, AllTenants: sp.AllTenants,
			Role: sp.Role, Expires: time.Duration(sp.ExpiresSeconds) * time.Second, CreatedBy: sp.CreatedBy})
		if err == nil {
			w.Header().Set("Cache-Control", "no-store")
		}
		s.answer(w, created{Secret: sec, Token: in}, err)
	})
	return mux
}

// answer writes v, or err as the client will read it back. Store errors
// are shown: the socket's only callers are the deployment's admins.
func (s *Server) answer(w http.ResponseWriter, v any, err error) {
	var se *token.SpecError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.As(err, &se):
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, se.Field, se.Msg)
	case errors.Is(err, token.ErrNotFound):
		writeError(w, http.StatusNotFound, api.CodeNotFound, "", err.Error())
	default:
		s.log.Warn("token control socket: the store failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "", err.Error())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, field, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Field, b.Error.Message = code, field, msg
	writeJSON(w, status, b)
}
