package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestAuditVerifyCatchesTampering: a real node writes its human stream;
// `writ audit verify` passes the file as written and catches an edited, a
// deleted and a reordered record, and — with the checkpoints the cluster
// committed — a file whose tail was cut.
func TestAuditVerifyCatchesTampering(t *testing.T) {
	t.Parallel()
	var dir string
	c := nodetest.New(t, 1, nodetest.Options{Configure: func(m *nodetest.Member, cfg *node.Config) {
		dir = filepath.Join(m.DataDir, "audit")
		cfg.Audit = &audit.Config{Dir: dir, CheckpointInterval: 100 * time.Millisecond}
	}})
	ctx := context.Background()
	admin := c.Admin(0)
	for i := range 4 {
		if _, err := admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
			Id: fmt.Sprintf("ci/job-%d", i), Kind: "ci_job", Owner: "team", Environment: "prod",
		}})); err != nil {
			t.Fatal(err)
		}
	}
	addr := "http://" + c.Members[0].APIAddr
	file := filepath.Join(dir, "human.log")
	var lines [][]byte
	nodetest.Eventually(t, 20*time.Second, "a checkpoint covering the admin changes", func() error {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		lines = bytes.SplitAfter(bytes.TrimRight(b, "\n"), []byte("\n"))
		view := c.Members[0].Node.FSM().View()
		self, _ := view.Node("n1")
		for _, cp := range self.GetAuditCheckpoints() {
			if cp.GetStream() == "human" && cp.GetSeq() >= 6 && int(cp.GetSeq()) <= len(lines) {
				lines = lines[:cp.GetSeq()] // the file as the checkpoint vouches for it
				return nil
			}
		}
		return fmt.Errorf("no human checkpoint at seq >= 6 yet (%d lines)", len(lines))
	})
	for i := range lines {
		if !bytes.HasSuffix(lines[i], []byte("\n")) {
			lines[i] = append(lines[i], '\n')
		}
	}
	write := func(name string, ls [][]byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, bytes.Join(ls, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	edited := append([][]byte(nil), lines...)
	edited[2] = bytes.Replace(edited[2], []byte(`"ci/job-`), []byte(`"ci/JOB-`), 1)
	if bytes.Equal(edited[2], lines[2]) {
		edited[2] = bytes.Replace(edited[2], []byte(`"human":true`), []byte(`"human":false`), 1)
	}
	reordered := append([][]byte(nil), lines...)
	reordered[2], reordered[3] = reordered[3], reordered[2]
	deleted := append(append([][]byte(nil), lines[:2]...), lines[3:]...)
	for _, tc := range []struct {
		name  string
		lines [][]byte
		flags []string
		code  int
		say   string
	}{
		{"intact", lines, nil, exitOK, "intact"},
		{"edited", edited, nil, exitNegative, "was edited"},
		{"deleted", deleted, nil, exitNegative, "removed, inserted or reordered"},
		{"reordered", reordered, nil, exitNegative, "reordered"},
		{"tail cut", lines[:3], []string{"--checkpoints", "require"}, exitNegative, "removed from the end"},
		{"tail cut, checkpoints off", lines[:3], []string{"--checkpoints", "off"}, exitOK, "intact"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"audit", "verify", "--addr", addr, "--token", nodetest.AdminToken}, tc.flags...)
			args = append(args, write("human.log", tc.lines))
			code := run(ctx, args, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
			out := stdout.String() + stderr.String()
			if code != tc.code || !strings.Contains(out, tc.say) {
				t.Errorf("exit %d, want %d; output does not say %q:\n%s", code, tc.code, tc.say, out)
			}
		})
	}
}
