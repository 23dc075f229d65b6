package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-dev/writ/bench"
	"github.com/writ-dev/writ/internal/proccluster"
)

type benchFlags struct {
	local         int
	scenarios     []string
	duration      time.Duration
	warmup        time.Duration
	scaleDuration time.Duration
	concurrency   int
	rate          float64
	runs          int
	policies      int
	batchSize     int
	policyLevels  []int
	leaseLevels   []int
	json          bool
	report        string
	peers         []string
	etcdBinary    string
	h2c           bool
	keep          bool
	conditions    string
	serverArgs    []string
}

func (a *app) benchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench (--local N | --addr URL,URL,...) [--scenario NAME ...]",
		Short: "Load-test a Writ cluster: scenarios, ceilings and peers, JSON and an HTML report",
		Long: `Drive a Writ cluster with one or more scenarios and report throughput and
latency percentiles (HdrHistogram).

Target: --local N starts an N-node cluster of real 'writ server' processes on
127.0.0.1 (fsync on) and stops it afterwards; or --addr lists the API
addresses of a running cluster (comma separated; --token or WRIT_TOKEN is its
admin token).

Load: a closed loop of --concurrency callers (peak throughput), or with
--rate an open loop: calls are due at fixed intervals whatever the answers,
and latency is measured from when each call was due (no coordinated
omission); --concurrency then caps the calls in flight.

Scenarios: ` + strings.Join(bench.Scenarios, ", ") + ` (or "all").

--peers also measures, with the same load: a bare Connect ping (the RPC
ceiling), raw hashicorp/raft applies with fsync (the storage ceiling) and a
3-member etcd (Debian's etcd-server; skipped with a message when missing),
and reports Writ's figures as ratios to them.`,
		Example: `  writ bench --local 3 --scenario mixed --duration 30s --json
  writ bench --local 3 --scenario authorize --scenario issue --peers --runs 3 --report /tmp/report
  writ bench --addr http://10.0.0.1:7400,http://10.0.0.2:7400 --token "$WRIT_ADMIN_TOKEN" --rate 2000 --scenario authorize`,
		Args: noArgs,
	}
	fl := cmd.Flags()
	fl.IntVar(&f.local, "local", 0, "start an N-node cluster of writ server processes on 127.0.0.1")
	fl.StringSliceVar(&f.scenarios, "scenario", []string{"authorize"}, "scenario to run (repeatable, or \"all\")")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "measured time per scenario (and per run)")
	fl.DurationVar(&f.warmup, "warmup", 2*time.Second, "load before measuring, not recorded")
	fl.DurationVar(&f.scaleDuration, "scale-duration", 0, "measured time per step of policy-scale and lease-scale (default duration/4, at least 3s)")
	fl.IntVar(&f.concurrency, "concurrency", 64, "closed loop: callers; open loop: most calls in flight")
	fl.Float64Var(&f.rate, "rate", 0, "open loop at this many calls per second (0: closed loop)")
	fl.IntVar(&f.runs, "runs", 1, "repeat each measurement; figures are medians")
	fl.IntVar(&f.policies, "policies", 100, "generated policies in the bench policy set")
	fl.IntVar(&f.batchSize, "batch-size", 100, "decisions per BatchAuthorize call")
	fl.IntSliceVar(&f.policyLevels, "policy-levels", []int{10, 100, 1000, 10000}, "policy-scale steps")
	fl.IntSliceVar(&f.leaseLevels, "lease-levels", []int{1000, 10000, 100000, 1000000}, "lease-scale steps (live leases)")
	fl.BoolVar(&f.json, "json", false, "print one JSON object per scenario on stdout")
	fl.StringVar(&f.report, "report", "", "write an HTML report with SVG plots to this directory")
	fl.StringSliceVar(&f.peers, "peers", nil, "also measure ceilings and peers and report ratios: ping, raft, etcd (--peers alone: all three)")
	fl.Lookup("peers").NoOptDefVal = "ping,raft,etcd"
	fl.StringVar(&f.etcdBinary, "etcd-binary", "etcd", "etcd executable for --peers")
	fl.BoolVar(&f.h2c, "h2c", false, "Connect over HTTP/2 without TLS instead of HTTP/1.1 (--protocol grpc always uses h2c)")
	fl.BoolVar(&f.keep, "keep", false, "keep the --local cluster's data dirs and logs")
	fl.StringArrayVar(&f.serverArgs, "server-arg", nil, "with --local: one more argument for every writ server command line (repeatable), e.g. --server-arg=--revocation-holder-wait=-1ns for an A/B run")
	fl.StringVar(&f.conditions, "conditions", "", "free text for the report: what else the machine was doing")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return a.runBench(cmd.Context(), f, cmd.Flags().Changed("addr"))
	}
	cmd.AddCommand(a.benchPingCmd())
	return cmd
}

// benchPingCmd is the ping ceiling's server process (started by --peers).
func (a *app) benchPingCmd() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:    "ping-server",
		Short:  "Serve the bare Connect ping writ bench --peers measures (prints its address)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The ceiling runs with the server's GC setting, so the ratio
			// compares the work, not the runtime tuning.
			setGCPercent(a.getenv, defaultGCPercent)
			return markRun(bench.ServePing(cmd.Context(), listen, func(addr string) {
				fmt.Fprintf(a.stdout, "listening %s\n", addr)
			}))
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "listen address")
	return cmd
}

func (a *app) runBench(ctx context.Context, f benchFlags, addrSet bool) error {
	if f.local < 0 || (f.local == 0 && !addrSet && a.getenv(envAddr) == "") {
		return usagef("say where: --local N or --addr URL,URL,...")
	}
	if f.local > 0 && addrSet {
		return usagef("--local and --addr are exclusive")
	}
	if len(f.serverArgs) > 0 && f.local == 0 {
		return usagef("--server-arg needs --local: it is passed to the servers the bench starts")
	}
	if f.runs < 1 || f.concurrency < 1 || f.rate < 0 || f.duration <= 0 {
		return usagef("--runs and --concurrency must be at least 1, --duration positive, --rate not negative")
	}
	scenarios := f.scenarios
	if len(scenarios) == 1 && scenarios[0] == "all" {
		scenarios = bench.Scenarios
	}
	proto := bench.ProtoConnect
	switch p, err := parseProtocol(a.protocol); {
	case err != nil:
		return usagef("--protocol: %v", err)
	case p == protoGRPC:
		proto = bench.ProtoGRPC
	case p == protoGRPCWeb:
		return usagef("--protocol grpcweb is not benchmarked: use connect or grpc")
	case f.h2c:
		proto = bench.ProtoConnectH2C
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	self, err := os.Executable()
	if err != nil {
		return markRun(err)
	}
	scratch, err := os.MkdirTemp("", "writ-bench-")
	if err != nil {
		return markRun(err)
	}
	defer func() {
		if f.keep {
			fmt.Fprintf(a.stderr, "kept %s\n", scratch)
			return
		}
		_ = os.RemoveAll(scratch)
	}()

	var urls []string
	var pids []int // the --local servers, for CPU per operation
	token := a.token
	if token == "" {
		token = a.getenv(envToken)
	}
	if f.local > 0 {
		if token, err = newAdminToken(nil); err != nil {
			return markRun(err)
		}
		log.Info("starting local cluster", "nodes", f.local, "dir", scratch)
		pc, err := proccluster.Start(proccluster.Config{Binary: self, Nodes: f.local, Dir: scratch, AdminToken: token, LogToFile: true,
			ExtraArgs: append([]string{"--environments", bench.Environments}, f.serverArgs...)})
		if err != nil {
			return markRun(err)
		}
		defer pc.Stop()
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err = pc.WaitReady(wctx)
		cancel()
		if err != nil {
			return markRun(fmt.Errorf("local cluster not ready (logs in %s, kept with --keep): %w", scratch, err))
		}
		urls = pc.URLs()
		pids = pc.PIDs()
	} else {
		raw := a.addr
		if raw == "" {
			raw = a.getenv(envAddr)
		}
		for _, s := range strings.Split(raw, ",") {
			u, err := normalizeAddr(s)
			if err != nil {
				return usagef("--addr: %v", err)
			}
			urls = append(urls, u)
		}
		if token == "" {
			return usagef("--addr needs the cluster's admin token (--token or %s)", envToken)
		}
	}
	target, err := bench.NewTarget(urls, token, proto, f.concurrency)
	if err != nil {
		return markRun(err)
	}
	cfg := bench.Config{
		Target: target, Scenarios: scenarios, Runs: f.runs, Policies: f.policies, BatchSize: f.batchSize,
		PolicyLevels: f.policyLevels, LeaseLevels: f.leaseLevels, ScaleDuration: f.scaleDuration, Logger: log,
		Load: bench.Load{Duration: f.duration, Warmup: f.warmup, Concurrency: f.concurrency, Rate: f.rate,
			CPU: bench.ProcessCPU(pids)},
	}
	if out, ok := a.stdout.(*os.File); ok && bench.IsTerminal(out) {
		cfg.Progress = bench.NewProgress(out)
	}
	if len(f.peers) > 0 {
		peers := &bench.Peers{Dir: scratch}
		for _, p := range f.peers {
			switch strings.TrimSpace(p) {
			case "ping":
				stop, url, pid, err := startPing(self)
				if err != nil {
					peers.PingSkip = err.Error()
				} else {
					defer stop()
					peers.PingURL, peers.PingPID = url, pid
				}
			case "raft":
				peers.Raft = true
			case "etcd":
				peers.EtcdBinary = f.etcdBinary
			default:
				return usagef("--peers: unknown peer %q: want ping, raft or etcd", p)
			}
		}
		cfg.Peers = peers
	}
	meta := bench.Meta{Command: "writ " + strings.Join(os.Args[1:], " "), Machine: machine(), Started: time.Now().UTC().Format(time.RFC3339), Conditions: conditions(f.conditions)}
	results, runErr := bench.RunScenarios(ctx, cfg)
	if f.json {
		if err := bench.WriteJSON(a.stdout, results); err != nil {
			return markRun(err)
		}
	} else {
		w := a.stdout
		for _, r := range results {
			fmt.Fprintln(w, r.String())
		}
	}
	if f.report != "" {
		if err := bench.WriteReport(f.report, meta, results); err != nil {
			return markRun(fmt.Errorf("report: %w", err))
		}
		fmt.Fprintf(a.stderr, "report: %s/index.html\n", strings.TrimRight(f.report, "/"))
	}
	if runErr != nil {
		return markRun(runErr)
	}
	return nil
}

// startPing runs `writ bench ping-server` as its own process (as the nodes
// are) and returns its base URL and process id.
func startPing(self string) (func(), string, int, error) {
	cmd := exec.Command(self, "bench", "ping-server", "--listen", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", 0, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, "", 0, fmt.Errorf("ping server: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		stop()
		return nil, "", 0, errors.Join(errors.New("ping server did not report its address"), err)
	}
	return stop, "http://" + addr, cmd.Process.Pid, nil
}

// machine describes this host for the report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d vCPU (%s), %s, %s/%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// conditions adds the load average at the start to what the user said.
func conditions(user string) string {
	parts := []string{}
	if user != "" {
		parts = append(parts, user)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			parts = append(parts, "load average at start "+strings.Join(f[:3], " "))
		}
	}
	return strings.Join(parts, "; ")
}
