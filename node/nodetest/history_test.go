package nodetest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestLeaseModel: the checker accepts what Writ promises and rejects what
// it must never do, so a fault run that breaks a promise cannot pass.
func TestLeaseModel(t *testing.T) {
	t.Parallel()
	issue := Op{Kind: OpIssue, Lease: "l1", Output: OutOK, Call: 0, Return: 10}
	verify := func(node, out string, call, ret int64) Op {
		return Op{Kind: OpVerify, Lease: "l1", Node: node, Output: out, Call: call, Return: ret}
	}
	revoke := Op{Kind: OpRevoke, Lease: "l1", Output: OutOK, Call: 40, Return: 50}
	for _, tc := range []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"issue verify revoke verify", []Op{issue, verify("n1", OutActive, 20, 30), revoke, verify("n1", OutRevoked, 60, 70)}, porcupine.Ok},
		{"nodes apply a revocation at different moments while it is in flight",
			[]Op{issue, revoke, verify("n1", OutRevoked, 41, 42), verify("n2", OutActive, 44, 45)}, porcupine.Ok},
		{"a failed revoke may take effect later",
			[]Op{issue, {Kind: OpRevoke, Lease: "l1", Output: OutUnknown, Call: 40}, verify("n1", OutActive, 60, 70), verify("n1", OutRevoked, 80, 90)}, porcupine.Ok},
		{"active after Revoke returned", []Op{issue, revoke, verify("n2", OutActive, 60, 70)}, porcupine.Illegal},
		{"one node goes back in time", []Op{issue, revoke, verify("n1", OutRevoked, 41, 42), verify("n1", OutActive, 44, 45)}, porcupine.Illegal},
		{"an acknowledged lease is missing", []Op{issue, verify("n3", OutNotFound, 20, 30)}, porcupine.Illegal},
		{"revoked without a revocation", []Op{issue, verify("n1", OutRevoked, 20, 30)}, porcupine.Illegal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := NewHistory()
			for _, op := range tc.ops {
				h.Add(op)
			}
			h.Fault("isolate n3", 35, 65)
			dir := filepath.Join(t.TempDir(), "report")
			got, err := h.Check(10*time.Second, dir)
			if got != tc.want {
				t.Fatalf("check = %s, want %s (%v)", got, tc.want, err)
			}
			if tc.want == porcupine.Illegal {
				for _, f := range []string{"history.json", "history.html"} {
					if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
						t.Errorf("report: %v", err)
					}
				}
			}
		})
	}
}
