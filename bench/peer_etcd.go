package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/writ-dev/writ/internal/proccluster"
)

// etcdCluster is three etcd members on 127.0.0.1 (Debian's etcd-server),
// fsync on as etcd always does: the peer for lease grant and revoke.
type etcdCluster struct {
	procs   []*exec.Cmd
	done    []chan struct{}
	clients []*clientv3.Client
	version string
}

// startEtcd starts three members under dir with the etcd binary at bin.
func startEtcd(ctx context.Context, bin, dir string) (*etcdCluster, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %s not found (apt-get install -y etcd-server)", ErrPeerMissing, bin)
	}
	ver, _ := exec.Command(path, "--version").Output()
	e := &etcdCluster{version: strings.SplitN(strings.TrimSpace(string(ver)), "\n", 2)[0]}
	var peers, clients, initial []string
	for i := range 3 {
		p, err := proccluster.FreePort()
		if err != nil {
			return nil, err
		}
		c, err := proccluster.FreePort()
		if err != nil {
			return nil, err
		}
		peers, clients = append(peers, "http://"+p), append(clients, "http://"+c)
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, p))
	}
	for i := range 3 {
		cmd := exec.Command(path,
			"--name", fmt.Sprintf("e%d", i+1), "--data-dir", filepath.Join(dir, fmt.Sprintf("e%d", i+1)),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "writ-bench", "--logger", "zap", "--log-level", "error")
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("e%d.log", i+1)))
		if err != nil {
			e.close()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			e.close()
			return nil, err
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
		e.procs, e.done = append(e.procs, cmd), append(e.done, done)
	}
	for _, u := range clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{u}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			e.close()
			return nil, err
		}
		e.clients = append(e.clients, c)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = proccluster.Poll(wctx, func() error {
		for _, c := range e.clients {
			cctx, cancel := context.WithTimeout(wctx, 2*time.Second)
			_, err := c.Get(cctx, "health")
			cancel()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.close()
		return nil, fmt.Errorf("etcd cluster not ready (logs in %s): %w", dir, err)
	}
	return e, nil
}

func (e *etcdCluster) close() {
	for _, c := range e.clients {
		_ = c.Close()
	}
	for i, p := range e.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done[i]:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-e.done[i]
		}
	}
}

// grantOp grants a 10-minute lease through member w mod 3 (a follower
// forwards to the leader, as a Writ follower forwards issuance).
func (e *etcdCluster) grantOp() Op {
	return func(ctx context.Context, w int) (int, error) {
		_, err := e.clients[w%len(e.clients)].Grant(ctx, 600)
		return 1, err
	}
}

// propagation grants a lease with a key, waits until every member has the
// key, revokes the lease through member via and returns the time until every
// member's serializable (local) read no longer sees the key.
func (e *etcdCluster) propagation(ctx context.Context, via int, n int) (time.Duration, error) {
	lease, err := e.clients[via].Grant(ctx, 600)
	if err != nil {
		return 0, err
	}
	key := fmt.Sprintf("writ-bench/%d", n)
	if _, err := e.clients[via].Put(ctx, key, "x", clientv3.WithLease(lease.ID)); err != nil {
		return 0, err
	}
	sees := func(c *clientv3.Client) (bool, error) {
		r, err := c.Get(ctx, key, clientv3.WithSerializable(), clientv3.WithCountOnly())
		if err != nil {
			return false, err
		}
		return r.Count > 0, nil
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := proccluster.Poll(wctx, func() error {
		for _, c := range e.clients {
			if ok, err := sees(c); err != nil || !ok {
				return cmpOr(err, errors.New("key not yet everywhere"))
			}
		}
		return nil
	}); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := e.clients[via].Revoke(ctx, lease.ID); err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(e.clients))
	for i, c := range e.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				if ok, err := sees(c); err == nil && !ok {
					return
				}
			}
			errs[i] = fmt.Errorf("etcd member %d still has a revoked lease's key", i+1)
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}
