package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// FuzzDecode: Decode never panics, rejects with ErrBadEntry, and whatever it
// accepts re-encodes to an entry that decodes to the same command. Seeds live
// in testdata/fuzz/FuzzDecode; more are added here.
func FuzzDecode(f *testing.F) {
	for _, c := range []*fsmpb.Command{
		bootstrapCmd(), identityCmd("x", "prod"), roleCmd("r", "x", "prod"), issueCmd(lease{id: "l", parent: "p", secret: "s"}),
		{Header: &fsmpb.Header{TimeUnixNano: 1, MinFsmVersion: 1}, Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Commands: []*fsmpb.Command{noopCmd(), revokeLeaseCmd("l")}}}},
		revokeRoleCmd("r"), revokeOwnerCmd("team-a"),
		{Header: rid(), Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: "l", DescendantsOnly: true}}},
		{Header: rid(), Payload: &fsmpb.Command_RetireSigningKey{RetireSigningKey: &fsmpb.RetireSigningKey{Kid: "k1"}}},
		{Header: rid(), Payload: &fsmpb.Command_PutSigningKey{PutSigningKey: &fsmpb.PutSigningKey{Key: &fsmpb.SigningKey{Kid: "k2", Ed25519Seed: bytes.Repeat([]byte{4}, 32)}, RetireOthersAfterNanos: int64(time.Hour)}}},
	} {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{FormatProtoV1})
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("error %v does not wrap ErrBadEntry", err)
			}
			return
		}
		_ = CheckCommand(cmd) // must not panic either
		out, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		diff(t, cmd, again)
	})
}

// FuzzRestore: Restore never panics on arbitrary bytes, and a failed restore
// leaves the state alone.
func FuzzRestore(f *testing.F) {
	h := base(f)
	h.ok(issueCmd(lease{id: "l1"}))
	h.ok(issueCmd(lease{id: "l2", parent: "l1"}))
	h.ok(secretCmd("acc", "a", 9, 1, time.Hour))
	var snap bytes.Buffer
	if _, err := h.f.Snapshot().WriteTo(&snap); err != nil {
		f.Fatal(err)
	}
	f.Add(snap.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fresh := New(Config{})
		hash := fresh.StateHash()
		if err := fresh.Restore(bytes.NewReader(b)); err != nil {
			if fresh.StateHash() != hash || fresh.AppliedIndex() != 0 {
				t.Fatal("a failed restore changed the state")
			}
			return
		}
		// Whatever restored can be snapshotted and restored again, identically.
		var out bytes.Buffer
		if _, err := fresh.Snapshot().WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		again := New(Config{})
		if err := again.Restore(&out); err != nil {
			t.Fatalf("re-restore: %v", err)
		}
		if again.StateHash() != fresh.StateHash() {
			t.Fatal("re-restored state differs")
		}
	})
}

// FuzzDecodeAnnounce: a log entry's extensions never make DecodeAnnounce
// panic; what it accepts has known kinds and ids, at the given index, and
// encodes back to what decodes alike.
func FuzzDecodeAnnounce(f *testing.F) {
	b, err := EncodeAnnounce(Announced([]*fsmpb.Command{
		{Header: &fsmpb.Header{TimeUnixNano: 1}, Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Commands: []*fsmpb.Command{noopCmd(), revokeLeaseCmd("l")}}}},
		revokeRoleCmd("r"), revokeOwnerCmd("team-a"),
	}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodeAnnounce(b, 7)
		if err != nil {
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("error %v does not wrap ErrBadEntry", err)
			}
			return
		}
		for _, p := range ps {
			if p.Index != 7 || !PendingKind(p.Kind) || p.ID == "" {
				t.Fatalf("accepted %+v", p)
			}
		}
		out, err := EncodeAnnounce(ps)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeAnnounce(out, 7)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again) != len(ps) {
			t.Fatalf("re-decode: %d revocations, want %d", len(again), len(ps))
		}
		for i := range ps {
			if again[i].Kind != ps[i].Kind || again[i].ID != ps[i].ID {
				t.Fatalf("re-decode %d: %+v, want %+v", i, again[i], ps[i])
			}
		}
	})
}
