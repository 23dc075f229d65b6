// Command writ is Writ's one binary: `writ server` and `writ dev` run a node;
// every other subcommand is a Connect client of a node's API, for admins
// (identities, roles, policies, leases, membership) and for workloads
// (issue, authorize, verify, renew, revoke).
//
// Exit codes: 0 success; 1 the call failed; 2 bad command line or input;
// 3 the call worked and the answer is no (denied, inactive).
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return runWithClock(ctx, args, stdin, stdout, stderr, getenv, time.Now)
}

// runWithClock is run with the clock used for relative times ("in 14m").
func runWithClock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, now func() time.Time) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, now: now}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	reportError(stderr, err)
	return exitCode(err)
}

// app holds the global flags and the process's stdio; commands close over it.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time

	addr, token, output, protocol string
	timeout                       time.Duration
	caCert, clientCert, clientKey string

	// resolved lazily by client(), so server commands never trip over a
	// bad WRIT_ADDR.
	clients *clients
	printer *printer
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "writ",
		Short: "Writ: a clustered policy decision point for machine identities",
		Long: `Writ issues short-lived, policy-checked credentials to machine identities
and answers "is this credential allowed to do this, now?" on every request.

Run a node with 'writ server' (or 'writ dev' to try it), then manage it and
call it with the other commands.

Exit codes: 0 ok, 1 call failed, 2 usage error, 3 denied / not active.`,
		Version:           version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", "", "node API address, http(s)://host:port or host:port (env "+envAddr+", default "+defaultAddr+")")
	pf.StringVar(&a.token, "token", "", "bearer token sent on every call (env "+envToken+")")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text, json, or field=PATH (e.g. field=lease.id)")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "deadline for the whole command's calls (0 for none)")
	pf.StringVar(&a.protocol, "protocol", "connect", "wire protocol: connect, grpc or grpcweb")
	pf.StringVar(&a.caCert, "ca-cert", "", "PEM CA bundle that verifies an https node (env "+envCACert+"; default: the system roots)")
	pf.StringVar(&a.clientCert, "client-cert", "", "PEM client certificate presented over https, for mTLS logins (env "+envClientCert+")")
	pf.StringVar(&a.clientKey, "client-key", "", "PEM private key of --client-cert (env "+envClientKey+")")

	root.AddGroup(
		&cobra.Group{ID: "workload", Title: "Workload commands:"},
		&cobra.Group{ID: "admin", Title: "Admin commands:"},
		&cobra.Group{ID: "node", Title: "Running a node:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("workload", a.issueCmd(), a.authorizeCmd(), a.batchAuthorizeCmd(), a.verifyCmd(), a.renewCmd(), a.revokeCmd(), a.delegateCmd(), a.watchCmd())
	add("admin", a.identityCmd(), a.roleCmd(), a.secretIDCmd(), a.authConfigCmd(), a.policyCmd(), a.leaseCmd(), a.keyCmd(),
		a.statusCmd(), a.joinCmd(), a.leaveCmd(), a.snapshotCmd(), a.keygenCmd(), a.auditCmd())
	add("node", a.serverCmd(), a.devCmd(), a.benchCmd())
	return root
}

// client resolves the global flags (and their environment variables) once.
func (a *app) client() (*clients, error) {
	if a.clients != nil {
		return a.clients, nil
	}
	addr := a.addr
	if addr == "" {
		addr = a.getenv(envAddr)
	}
	if addr == "" {
		addr = defaultAddr
	}
	base, err := normalizeAddr(addr)
	if err != nil {
		return nil, usagef("--addr: %v", err)
	}
	token := a.token
	if token == "" {
		token = a.getenv(envToken)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return nil, usagef("--token contains white space")
	}
	p, err := parseProtocol(a.protocol)
	if err != nil {
		return nil, usagef("--protocol: %v", err)
	}
	tlsCfg, err := clientTLS(a.flagOrEnv(a.caCert, envCACert), a.flagOrEnv(a.clientCert, envClientCert), a.flagOrEnv(a.clientKey, envClientKey))
	if err != nil {
		return nil, usagef("%v", err)
	}
	a.clients = newClients(clientConfig{BaseURL: base, Token: token, Protocol: p, TLS: tlsCfg})
	return a.clients, nil
}

// flagOrEnv is the flag's value, else the environment variable's.
func (a *app) flagOrEnv(flag, env string) string {
	if flag != "" {
		return flag
	}
	return a.getenv(env)
}

// out returns the printer for -o.
func (a *app) out() (*printer, error) {
	if a.printer != nil {
		return a.printer, nil
	}
	f, err := parseOutput(a.output)
	if err != nil {
		return nil, usagef("-o: %v", err)
	}
	a.printer = &printer{w: a.stdout, format: f, now: a.now}
	return a.printer, nil
}

// clientCall is the body of a client command: it gets connected clients, a
// context bounded by --timeout and the printer.
type clientCall func(ctx context.Context, c *clients, p *printer, args []string) error

// call adapts a clientCall to cobra: it resolves globals, applies the
// timeout and marks the errors the body returns as run errors (exit 1)
// unless they already say otherwise.
func (a *app) call(fn clientCall) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		p, err := a.out()
		if err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		ctx, cancel := withTimeout(cmd.Context(), a.timeout)
		defer cancel()
		return markRun(fn(ctx, c, p, args))
	}
}

// markRun wraps err as a runError unless it is already classified.
func markRun(err error) error {
	var ue *usageError
	var re *runError
	if err == nil || errors.Is(err, errNegative) || errors.As(err, &ue) || errors.As(err, &re) {
		return err
	}
	return &runError{err: err}
}

// group returns a parent command that only holds subcommands. Unlike
// cobra's default it fails on an unknown subcommand instead of printing help
// and exiting 0.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	c.AddCommand(subs...)
	return c
}

// exactArgs is cobra.ExactArgs with names in the message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s takes %d argument(s) (%s), got %d", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))
		}
		for i, a := range args {
			if strings.TrimSpace(a) == "" {
				return usagef("%s: %s is empty", cmd.CommandPath(), names[i])
			}
		}
		return nil
	}
}

// noArgs rejects positional arguments with a clear message.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

// errf makes a usage error for a flag.
func flagErr(name string, err error) error {
	return usagef("--%s: %v", name, err)
}
