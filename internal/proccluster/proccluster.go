// Package proccluster starts a Writ cluster of real `writ server` processes on
// 127.0.0.1: the multi-process e2e tests and `writ bench --local N` share it.
//
// A Cluster is not safe for concurrent use except Output, which may be
// called at any time. Every process it starts is ended by Stop (or Kill).
package proccluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("proccluster: bad config")

// Config describes the cluster to start.
type Config struct {
	// Binary is the writ executable. Required.
	Binary string
	// Nodes is the number of processes (≥ 1). Node 1 bootstraps, the others
	// join it.
	Nodes int
	// Dir holds one data dir per node (n1, n2, ...). Required.
	Dir string
	// AdminToken is passed as WRIT_ADMIN_TOKEN. Required.
	AdminToken string
	// ExtraArgs are appended to every `writ server` command line.
	ExtraArgs []string
	// LogToFile writes each node's output to DIR/nN.log instead of memory.
	LogToFile bool
	// Formation, when set, gives node i's cluster-forming flags at first
	// start instead of the default (node 1 --bootstrap, the others --join
	// node 1's API); nodes holds every node's addresses. The gossip e2e test
	// forms its cluster with --bootstrap-expect and gossip joins through it.
	Formation func(i int, nodes []*Node) []string
}

// Node is one process.
type Node struct {
	ID, DataDir, API, Raft string
	// Gossip is the node's --gossip-addr: a port of its own, since the
	// server's default (the Raft port + 1) may be any other process's port
	// when the ports are picked at random.
	Gossip string
	// Args is the command line of the last start.
	Args []string

	cmd  *exec.Cmd
	out  *lockedBuffer
	file *os.File
	done chan struct{}
}

// Cluster is a set of writ server processes.
type Cluster struct {
	Nodes []*Node
	cfg   Config
}

// FreePort returns a 127.0.0.1 address with a port that was free a moment
// ago, outside the kernel's ephemeral range. A port the kernel hands out
// for "127.0.0.1:0" is an ephemeral one: between the pick and the server's
// bind, any outgoing connection on the machine (a node that has already
// started dialling its peers) may be given the same port as its local end,
// and the server then fails with "address already in use". Below the
// ephemeral range only another listener can take it.
func FreePort() (string, error) {
	lo, _ := ephemeralRange()
	const floor = 10000
	if lo-floor >= 1000 {
		for range 64 {
			port := floor + rand.IntN(lo-floor)
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue // taken: try another
			}
			addr := ln.Addr().String()
			_ = ln.Close()
			return addr, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ephemeralRange is Linux's net.ipv4.ip_local_port_range, or the IANA
// default (49152-65535) where it cannot be read.
func ephemeralRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l > 0 && l <= h {
				return l, h
			}
		}
	}
	return 49152, 65535
}

// Start launches cfg.Nodes processes and returns at once; call WaitReady.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Binary == "" || cfg.Dir == "" || cfg.AdminToken == "" || cfg.Nodes < 1 {
		return nil, fmt.Errorf("%w: binary, dir, admin token and at least one node are required", ErrConfig)
	}
	c := &Cluster{cfg: cfg}
	for i := range cfg.Nodes {
		api, err := FreePort()
		if err != nil {
			return nil, err
		}
		raft, err := FreePort()
		if err != nil {
			return nil, err
		}
		gossip, err := FreePort()
		if err != nil {
			return nil, err
		}
		id := fmt.Sprintf("n%d", i+1)
		c.Nodes = append(c.Nodes, &Node{ID: id, DataDir: filepath.Join(cfg.Dir, id), API: api, Raft: raft, Gossip: gossip})
	}
	for i, n := range c.Nodes {
		var extra []string
		switch {
		case cfg.Formation != nil:
			extra = cfg.Formation(i, c.Nodes)
		case i == 0:
			extra = []string{"--bootstrap"}
		default:
			extra = []string{"--join", c.Nodes[0].API}
		}
		if err := c.start(n, extra); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) baseArgs(n *Node) []string {
	args := []string{"server", "--node-id", n.ID, "--data-dir", n.DataDir, "--api-addr", n.API, "--raft-addr", n.Raft, "--gossip-addr", n.Gossip}
	return append(args, c.cfg.ExtraArgs...)
}

func (c *Cluster) start(n *Node, extra []string) error {
	n.Args = append(c.baseArgs(n), extra...)
	n.cmd = exec.Command(c.cfg.Binary, n.Args...)
	n.cmd.Env = append(os.Environ(), "WRIT_ADMIN_TOKEN="+c.cfg.AdminToken)
	if n.out == nil {
		n.out = &lockedBuffer{}
	}
	var w io.Writer = n.out
	if c.cfg.LogToFile {
		if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(c.cfg.Dir, n.ID+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		n.file = f
		w = f
	}
	n.cmd.Stdout, n.cmd.Stderr = w, w
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	n.done = make(chan struct{})
	cmd, done := n.cmd, n.done
	go func() { _ = cmd.Wait(); close(done) }()
	return nil
}

// Restart starts node i again from its data dir (no --bootstrap, no --join).
func (c *Cluster) Restart(i int) error {
	if n := c.Nodes[i]; n.cmd != nil {
		return fmt.Errorf("%s is running", n.ID)
	}
	return c.start(c.Nodes[i], nil)
}

// Kill sends SIGKILL to node i and waits for it to exit.
func (c *Cluster) Kill(i int) { c.Nodes[i].signal(syscall.SIGKILL, 0) }

// Stop ends every process: SIGTERM, then SIGKILL after 10 s.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.signal(syscall.SIGTERM, 10*time.Second) }()
	}
	wg.Wait()
}

func (n *Node) signal(sig syscall.Signal, grace time.Duration) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-n.done:
		case <-time.After(grace):
			_ = n.cmd.Process.Kill()
		}
	}
	<-n.done
	if n.file != nil {
		_ = n.file.Close()
		n.file = nil
	}
	n.cmd = nil
}

// Exited is closed when node i's current process exits (nil if it was
// never started).
func (c *Cluster) Exited(i int) <-chan struct{} { return c.Nodes[i].done }

// ExitCode is node i's exit code once Exited is closed, -1 before or after
// Kill/Stop collected it.
func (c *Cluster) ExitCode(i int) int {
	n := c.Nodes[i]
	if n.cmd == nil || n.cmd.ProcessState == nil {
		return -1
	}
	return n.cmd.ProcessState.ExitCode()
}

// Output returns what node i printed (kept in memory unless LogToFile).
func (c *Cluster) Output(i int) string {
	n := c.Nodes[i]
	if c.cfg.LogToFile {
		b, _ := os.ReadFile(filepath.Join(c.cfg.Dir, n.ID+".log"))
		return string(b)
	}
	if n.out == nil {
		return ""
	}
	return n.out.String()
}

// URLs returns each node's API base URL.
// PIDs are the running nodes' process ids.
func (c *Cluster) PIDs() []int {
	var out []int
	for _, n := range c.Nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			out = append(out, n.cmd.Process.Pid)
		}
	}
	return out
}

func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = "http://" + n.API
	}
	return out
}

// Leader polls the given nodes (all when none are named) until one reports
// leadership with want voters, and returns its index.
func (c *Cluster) Leader(ctx context.Context, want int, nodes ...int) (int, error) {
	if len(nodes) == 0 {
		for i := range c.Nodes {
			nodes = append(nodes, i)
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	leader := -1
	err := Poll(ctx, func() error {
		var last error
		for _, i := range nodes {
			st, err := writv1connect.NewClusterServiceClient(hc, "http://"+c.Nodes[i].API).Status(ctx, connect.NewRequest(&writv1.StatusRequest{}))
			if err != nil {
				last = err
				continue
			}
			if st.Msg.GetState() == "leader" && (want == 0 || len(st.Msg.GetMembers()) == want) {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("no leader with %d voters among %v (last error: %v)", want, nodes, last)
	})
	return leader, err
}

// WaitReady waits for a leader with every node a voter and every /readyz ok.
func (c *Cluster) WaitReady(ctx context.Context) error {
	if _, err := c.Leader(ctx, len(c.Nodes)); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	return Poll(ctx, func() error {
		for _, n := range c.Nodes {
			resp, err := hc.Get("http://" + n.API + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s readyz %d", n.ID, resp.StatusCode)
			}
		}
		return nil
	})
}

// Poll calls cond every 20 ms until it returns nil or ctx ends; then it
// returns ctx's error wrapped with cond's last error.
func Poll(ctx context.Context, cond func() error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the process's writes and our reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
