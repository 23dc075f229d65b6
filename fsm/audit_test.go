package fsm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

func checkpointCmd(node string, heads ...*fsmpb.AuditCheckpoint) *fsmpb.Command {
	return &fsmpb.Command{Header: rid(), Payload: &fsmpb.Command_CheckpointAudit{CheckpointAudit: &fsmpb.CheckpointAudit{NodeId: node, Heads: heads}}}
}

func head(stream string, seq uint64) *fsmpb.AuditCheckpoint {
	return &fsmpb.AuditCheckpoint{Stream: stream, Seq: seq, Hash: fmt.Sprintf("%064x", seq)}
}

func TestCheckpointAudit(t *testing.T) {
	t.Parallel()
	h := base(t)
	h.ok(nodeCmd("n1"))
	for _, tc := range []struct {
		name string
		cmd  *fsmpb.Command
		want fsmpb.ResultCode
	}{
		{"unknown node", checkpointCmd("n9", head("human", 1)), codeNotFound},
		{"no heads", checkpointCmd("n1"), codeInvalid},
		{"bad hash", checkpointCmd("n1", &fsmpb.AuditCheckpoint{Stream: "human", Seq: 1, Hash: "zz"}), codeInvalid},
		{"seq zero", checkpointCmd("n1", &fsmpb.AuditCheckpoint{Stream: "human", Hash: strings.Repeat("0", 64)}), codeInvalid},
		{"bad stream", checkpointCmd("n1", head("has space", 1)), codeInvalid},
	} {
		if got := h.code(tc.cmd); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	for seq := uint64(1); seq <= 12; seq++ {
		h.ok(checkpointCmd("n1", head("human", seq), head("workload", seq*10)))
	}
	h.ok(nodeCmd("n1")) // re-registering keeps them
	n, _ := h.f.View().Node("n1")
	var got []string
	for _, c := range n.GetAuditCheckpoints() {
		if c.GetIndex() == 0 || c.GetTimeUnixNano() == 0 {
			t.Errorf("checkpoint %v: Apply stamps index and time", c)
		}
		got = append(got, fmt.Sprint(c.GetStream(), "@", c.GetSeq()))
	}
	var want []string
	for seq := uint64(5); seq <= 12; seq++ {
		want = append(want, fmt.Sprint("human@", seq), fmt.Sprint("workload@", seq*10))
	}
	diff(t, want, got)
	// The checkpoints travel in snapshots like the rest of the node record.
	var buf bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := newHarness(t)
	if err := r.f.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if a, b := h.f.StateHash(), r.f.StateHash(); a != b {
		t.Errorf("state hash after restore %x, want %x", b, a)
	}
}
