package fsm

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

func TestAnnounce(t *testing.T) {
	cmds := []*fsmpb.Command{
		issueCmd(lease{id: "l0"}),
		{Header: rid(), Payload: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Commands: []*fsmpb.Command{
			noopCmd(), revokeLeaseCmd("l1"), issueCmd(lease{id: "l2"}),
		}}}},
		{Header: rid(), Payload: &fsmpb.Command_RevokeLease{RevokeLease: &fsmpb.RevokeLease{LeaseId: "l3", DescendantsOnly: true}}},
		revokeRoleCmd("r"), revokeOwnerCmd("team-a"),
		{Header: rid(), Payload: &fsmpb.Command_RetireSigningKey{RetireSigningKey: &fsmpb.RetireSigningKey{Kid: "k1"}}},
	}
	want := []Pending{
		{Index: 9, Kind: RevocationLease, ID: "l1"},
		{Index: 9, Kind: RevocationSubtree, ID: "l3"},
		{Index: 9, Kind: RevocationRole, ID: "r"},
		{Index: 9, Kind: RevocationOwner, ID: "team-a"},
	}
	b, err := EncodeAnnounce(Announced(cmds))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeAnnounce(b, 9)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Index != want[i].Index || got[i].Kind != want[i].Kind || got[i].ID != want[i].ID {
			t.Errorf("revocation %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if b, err := EncodeAnnounce(Announced(cmds[:1])); err != nil || b != nil {
		t.Errorf("an entry with no revocation announces %v, %v; want nothing", b, err)
	}
	for name, bad := range map[string][]byte{
		"not protobuf": {0xff, 0xff},
		"unknown kind": mustMarshal(t, &fsmpb.Announce{Revocations: []*fsmpb.AnnouncedRevocation{{Kind: "everything", Id: "x"}}}),
		"empty id":     mustMarshal(t, &fsmpb.Announce{Revocations: []*fsmpb.AnnouncedRevocation{{Kind: RevocationLease}}}),
	} {
		if _, err := DecodeAnnounce(bad, 1); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: err %v, want ErrBadEntry", name, err)
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
