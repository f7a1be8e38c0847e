package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/internal/lifecycle"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/tenant"
	"github.com/flowhouse/flowhouse/token"
	"github.com/flowhouse/flowhouse/token/control"
	"github.com/flowhouse/flowhouse/token/tokenapi"
)

const tokenUsage = `usage: flowhouse [--config FILE] token create (--tenant T | --all-tenants) --role read|admin --name N [--expires 90d] [--json]
       flowhouse [--config FILE] token list [--tenant T] [--json]
       flowhouse [--config FILE] token revoke ID

API tokens. create prints the secret once: flowhouse keeps only its hash.
--expires takes days (90d) or a Go duration (720h); the default is
tokens.default_expiry, the most tokens.max_expiry.

On a ClickHouse server the command opens the database itself. On the
embedded engine, a running flowhouse serve holds the database: the command
goes through its control socket (tokens.control_socket), and opens the data
directory itself only when nothing answers there. Use the same
configuration as flowhouse serve.
`

// runToken is `flowhouse token`.
func runToken(configPath string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, tokenUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := args[0], args[1:]
	var run func(ctx context.Context, cfg *config.Config, m token.Manager, stdout, stderr io.Writer) int
	var err error
	switch cmd {
	case "create":
		run, err = parseCreate(rest, stderr)
	case "list":
		run, err = parseList(rest, stderr)
	case "revoke":
		run, err = parseRevoke(rest, stderr)
	default:
		err = fmt.Errorf("unknown subcommand %q", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowhouse token: %v\n\n%s", err, tokenUsage)
		return 2
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	m, closeFn, err := openTokens(ctx, cfg, cfg.Log.NewLogger(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "flowhouse token:", err)
		return 1
	}
	defer closeFn()
	return run(ctx, cfg, m, stdout, stderr)
}

// openTokens is the token store to use: serve's, through the control
// socket, when the embedded engine is configured and serve answers
// there; else one on the database, opened here.
func openTokens(ctx context.Context, cfg *config.Config, log *slog.Logger) (token.Manager, func(), error) {
	noSocket := "the control socket is off (tokens.control_socket)"
	if cfg.ClickHouse.Addr == "" {
		if path := cfg.Tokens.SocketPath(cfg.ClickHouse.Embedded.Path); path != "" {
			c, err := control.Dial(ctx, path)
			if err == nil {
				return c, c.Close, nil
			}
			noSocket = err.Error()
		}
		dir, err := filepath.Abs(cfg.ClickHouse.Embedded.Path)
		if err != nil {
			return nil, nil, err
		}
		if inUse, pid, err := store.EmbeddedDirInUse(dir); err != nil {
			return nil, nil, err
		} else if inUse {
			return nil, nil, fmt.Errorf("%s, and the embedded data directory %s is held by process %s: run flowhouse token with the configuration of that flowhouse serve, or turn its tokens.control_socket on", noSocket, dir, pid)
		}
	}
	scfg := cfg.ClickHouse
	scfg.Writers = 1
	db, err := store.Open(ctx, scfg, log)
	if err != nil {
		return nil, nil, err
	}
	if err := migrations.Ready(ctx, db); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("the database's schema is not up to date (%v): run flowhouse migrate, or start flowhouse serve once", err)
	}
	tenants, err := tenant.New(cfg.Enrich.Tenants())
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	s, err := token.New(cfg.Tokens, token.Deps{DB: db, Tenants: tenants, Secrets: cfg.Enrich.Secrets, Logger: log})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return s, func() { db.Close() }, nil
}

type tokenRun = func(ctx context.Context, cfg *config.Config, m token.Manager, stdout, stderr io.Writer) int

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("flowhouse token "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage) }
	return fs
}

func parseCreate(args []string, stderr io.Writer) (tokenRun, error) {
	fs := newFlags("create", stderr)
	tenantName := fs.String("tenant", "", "the tenant the token sees")
	all := fs.Bool("all-tenants", false, "the token sees every tenant")
	role := fs.String("role", "", "read or admin")
	name := fs.String("name", "", "what the token is for")
	expires := fs.String("expires", "", "lifetime: 90d or a Go duration (default tokens.default_expiry)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("create: unexpected arguments %q", fs.Args())
	}
	if *tenantName == "" && !*all {
		return nil, errors.New("create: give --tenant T or --all-tenants")
	}
	if !api.Role(*role).Valid() {
		return nil, fmt.Errorf("create: --role %q is not read or admin", *role)
	}
	sp := token.Spec{Name: *name, Tenant: *tenantName, AllTenants: *all, Role: api.Role(*role), CreatedBy: cliUser()}
	if *expires != "" {
		d, err := token.ParseDuration(*expires)
		if err != nil {
			return nil, fmt.Errorf("create: --expires: %w", err)
		}
		sp.Expires = d
	}
	return func(ctx context.Context, _ *config.Config, m token.Manager, stdout, stderr io.Writer) int {
		secret, in, err := m.Create(ctx, sp)
		if err != nil {
			return tokenFailed(stderr, err)
		}
		if *asJSON {
			writeJSONTo(stdout, tokenapi.Created{Secret: secret, Token: in})
		} else {
			fmt.Fprintf(stdout, "token:   %s\nid:      %s\nname:    %s\nscope:   %s\nrole:    %s\nexpires: %s (in %s)\n",
				secret, in.ID, in.Name, scopeText(in), in.Role, in.ExpiresAt.Format(time.RFC3339), token.FormatDuration(in.ExpiresAt.Sub(in.CreatedAt)))
			fmt.Fprintln(stdout, "The token is shown only once: store it now. flowhouse keeps only its hash.")
		}
		warnOtherKey(ctx, m, stderr)
		return 0
	}, nil
}

// warnOtherKey tells when tokens in the database were hashed with
// another key than the one this command used: the processes of the
// deployment do not share the key, and one of them refuses the other's
// tokens.
func warnOtherKey(ctx context.Context, m token.Manager, stderr io.Writer) {
	list, err := m.List(ctx, token.AllScope)
	if err != nil {
		return
	}
	n := 0
	for _, in := range list {
		if in.State == token.StateOtherKey {
			n++
		}
	}
	if n > 0 {
		fmt.Fprintf(stderr, "warning: %d active tokens in the database were hashed with another key than this command's: "+
			"every flowhouse process of a deployment must share tokens.hmac_key (or the secrets key); see README \"API tokens\"\n", n)
	}
}

func parseList(args []string, stderr io.Writer) (tokenRun, error) {
	fs := newFlags("list", stderr)
	tenantName := fs.String("tenant", "", "only this tenant's tokens")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("list: unexpected arguments %q", fs.Args())
	}
	sc := token.AllScope
	if *tenantName != "" {
		sc = token.Scope{Tenant: *tenantName}
	}
	return func(ctx context.Context, _ *config.Config, m token.Manager, stdout, stderr io.Writer) int {
		list, err := m.List(ctx, sc)
		if err != nil {
			return tokenFailed(stderr, err)
		}
		if *asJSON {
			if list == nil {
				list = []token.Info{}
			}
			writeJSONTo(stdout, list)
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tROLE\tCREATED\tEXPIRES\tLAST USED\tSTATE")
		for _, in := range list {
			last := "never"
			if in.LastUsedAt != nil {
				last = shortTime(*in.LastUsedAt)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Name, scopeText(in), in.Role,
				shortTime(in.CreatedAt), shortTime(in.ExpiresAt), last, in.State)
		}
		tw.Flush()
		return 0
	}, nil
}

func parseRevoke(args []string, stderr io.Writer) (tokenRun, error) {
	fs := newFlags("revoke", stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 1 {
		return nil, errors.New("revoke: give one token id (tok_...; flowhouse token list shows them)")
	}
	id := fs.Arg(0)
	return func(ctx context.Context, cfg *config.Config, m token.Manager, stdout, stderr io.Writer) int {
		in, err := m.Revoke(ctx, token.AllScope, id, cliUser())
		if err != nil {
			return tokenFailed(stderr, err)
		}
		fmt.Fprintf(stdout, "revoked %s (%s) at %s by %s; every flowhouse refuses it within tokens.cache_ttl (%s)\n",
			in.ID, in.Name, in.RevokedAt.Format(time.RFC3339), in.RevokedBy, cfg.Tokens.CacheTTL)
		return 0
	}, nil
}

func tokenFailed(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "flowhouse token:", err)
	var se *token.SpecError
	if errors.As(err, &se) {
		return 2
	}
	return 1
}

func scopeText(in token.Info) string {
	if in.AllTenants {
		return "all tenants"
	}
	return "tenant " + in.Tenant
}

func shortTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04Z") }

func writeJSONTo(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// cliUser is created_by and revoked_by of the command: cli:<os user>.
func cliUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli:uid " + strconv.Itoa(os.Getuid())
}

// tokenParts are the tokens of flowhouse serve: the store, which
// authenticates the API, and on the embedded engine the control socket
// of flowhouse token.
type tokenParts struct {
	store   *token.Store
	control *control.Server // nil on a ClickHouse server
	log     *slog.Logger
}

func newTokenParts(cfg *config.Config, db store.DB, tenants *tenant.Tenants, log *slog.Logger, reg prometheus.Registerer) (*tokenParts, error) {
	s, err := token.New(cfg.Tokens, token.Deps{DB: db, Tenants: tenants, Secrets: cfg.Enrich.Secrets, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	t := &tokenParts{store: s, log: log}
	if cfg.ClickHouse.Addr == "" {
		if path := cfg.Tokens.SocketPath(cfg.ClickHouse.Embedded.Path); path != "" {
			t.control = control.New(path, control.Deps{Tokens: s, Logger: log})
		}
	}
	return t, nil
}

// register adds the tokens API to the server.
func (t *tokenParts) register(s *api.Server) {
	s.AddSpec("tokens", tokenapi.Spec)
	s.Register(tokenapi.New(tokenapi.Deps{Tokens: t.store, Logger: t.log}).Register)
}

// component starts the store (its key, its last-use writer), then the
// socket; it stops them in reverse, after the HTTP server has stopped,
// so that the last requests' uses are written.
func (t *tokenParts) component() lifecycle.Component {
	return lifecycle.Component{Name: "tokens",
		Start: func(ctx context.Context) error {
			if err := t.store.Start(ctx); err != nil {
				return err
			}
			if t.control != nil {
				if err := t.control.Start(ctx); err != nil {
					return errors.Join(err, t.store.Stop(ctx))
				}
			}
			return nil
		},
		Stop: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var err error
			if t.control != nil {
				err = t.control.Stop(ctx)
			}
			return errors.Join(err, t.store.Stop(ctx))
		}}
}
