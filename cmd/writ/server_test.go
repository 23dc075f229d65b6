package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestServerFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badSchema := filepath.Join(dir, "bad.cedarschema")
	narrowSchema := filepath.Join(dir, "narrow.cedarschema")
	if err := os.WriteFile(badSchema, []byte("entity {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(narrowSchema, []byte("entity User; action read appliesTo { principal: User, resource: User };"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		stderr string
	}{
		{name: "no data dir", args: []string{"server"}, stderr: `required flag(s) "data-dir" not set`},
		{name: "bootstrap and join", args: []string{"server", "--data-dir", dir, "--bootstrap", "--join", "127.0.0.1:7400"}, stderr: "[bootstrap join] were all set"},
		{name: "join without token or gossip", args: []string{"server", "--data-dir", dir, "--gossip-addr", "off", "--join", "127.0.0.1:7400"}, stderr: "--join without gossip needs the cluster's admin token"},
		{name: "bootstrap-expect without token", args: []string{"server", "--data-dir", dir, "--bootstrap-expect", "3"}, stderr: "--bootstrap-expect needs the cluster's admin token"},
		{name: "bootstrap and bootstrap-expect", args: []string{"server", "--data-dir", dir, "--bootstrap", "--bootstrap-expect", "3"}, stderr: "[bootstrap bootstrap-expect] were all set"},
		{name: "bootstrap-expect without gossip", args: []string{"server", "--data-dir", dir, "--bootstrap-expect", "3", "--gossip-addr", "off"}, env: map[string]string{"WRIT_ADMIN_TOKEN": "t"}, stderr: "--bootstrap-expect needs gossip"},
		{name: "bad gossip key", args: []string{"server", "--data-dir", dir, "--gossip-key", "c2hvcnQ="}, stderr: "--gossip-key: key is 5 bytes; want 16, 24 or 32"},
		{name: "gossip key not base64", args: []string{"server", "--data-dir", dir}, env: map[string]string{"WRIT_GOSSIP_KEY": "%%%"}, stderr: "WRIT_GOSSIP_KEY: not base64"},
		{name: "half cluster tls", args: []string{"server", "--data-dir", dir, "--cluster-tls-cert", "a.pem"}, stderr: "cluster TLS needs --cluster-tls-cert, --cluster-tls-key and --cluster-ca together"},
		{name: "bad gossip addr", args: []string{"server", "--data-dir", dir, "--gossip-addr", "7402"}, stderr: `--gossip-addr "7402": want host:port`},
		{name: "keygen args", args: []string{"keygen", "x"}, stderr: "takes no arguments"},
		{name: "empty join", args: []string{"server", "--data-dir", dir, "--join", " "}, env: map[string]string{"WRIT_ADMIN_TOKEN": "t"}, stderr: "--join: empty address"},
		{name: "bad log level", args: []string{"server", "--data-dir", dir, "--log-level", "loud"}, stderr: `--log-level "loud"`},
		{name: "bad log format", args: []string{"server", "--data-dir", dir, "--log-format", "xml"}, stderr: `--log-format "xml"`},
		{name: "negative staleness", args: []string{"server", "--data-dir", dir, "--max-staleness", "-1s"}, stderr: "must not be negative"},
		{name: "schema does not parse", args: []string{"server", "--data-dir", dir, "--schema", badSchema}, stderr: "--schema: authz: invalid schema"},
		{name: "schema without Writ's principals", args: []string{"server", "--data-dir", dir, "--schema", narrowSchema}, stderr: "principal Writ builds does not validate"},
		{name: "schema file missing", args: []string{"server", "--data-dir", dir, "--schema", filepath.Join(dir, "nope")}, stderr: "--schema:"},
		{name: "dev bad api addr", args: []string{"dev", "--api-addr", "7400"}, stderr: `--api-addr: address "7400": want host:port`},
		{name: "dev args", args: []string{"dev", "now"}, stderr: "takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := runCLI(t, tc.env, "", tc.args...)
			if res.code != exitUsage || !strings.Contains(res.stderr, tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", res.code, res.stderr, exitUsage, tc.stderr)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevEndToEnd runs `writ dev` in process on free ports, waits for its
// banner, pastes the walkthrough into sh (with the test binary as writ),
// and checks it behaves as the banner says: issue, verify, authorize,
// revoke, and a final verify that reports the credential inactive.
func TestDevEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(bin, "writ")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	env := map[string]string{"WRIT_ADMIN_TOKEN": "writ_admin_e2e"}
	go func() {
		done <- run(ctx, []string{"dev", "--api-addr", "127.0.0.1:0"}, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	}()

	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(stdout.String(), "Press Ctrl-C to stop") {
		select {
		case code := <-done:
			t.Fatalf("writ dev exited %d before its banner\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		case <-deadline.C:
			t.Fatalf("no banner within 60s\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		case <-tick.C:
		}
	}
	banner := stdout.String()
	if !strings.Contains(banner, "Admin token:  writ_admin_e2e") {
		t.Errorf("banner does not show the token from the environment:\n%s", banner)
	}
	_, script, ok := strings.Cut(banner, "In another shell:\n")
	if !ok {
		t.Fatalf("no walkthrough in the banner:\n%s", banner)
	}
	// Show each step's output and keep going to the end.
	cmd := exec.Command(sh, "-e", "-x", "-c", script)
	cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitNegative {
		t.Fatalf("walkthrough: %v, want exit %d from the last verify\nscript:\n%s\noutput:\n%s\nnode stderr:\n%s", err, exitNegative, script, out.String(), stderr.String())
	}
	for _, want := range []string{"decision       allowed", "active         yes", "revoked  lease l_", "active         no"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("walkthrough output lacks %q:\n%s", want, out.String())
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("writ dev exited %d after SIGINT-equivalent\nstderr:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writ dev did not stop within 30s")
	}
}
