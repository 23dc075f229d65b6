package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Announcements: what a log entry revokes, carried beside the entry in its
// Raft extensions so a replica can enforce it as it stores the entry, before
// the entry commits and without decoding the entry's data (node/announce.go).
// Enforcing a revocation that then never commits is safe: the overlay only
// makes leases invalid, and the replica drops it once it applies the index,
// whatever entry the index turns out to hold.

// maxAnnounceBytes bounds what DecodeAnnounce accepts: an entry holds at most
// a batch's worth of revocations.
const maxAnnounceBytes = 1 << 20

// Announced lists the revocations in an entry's commands, with Index 0.
func Announced(cmds []*fsmpb.Command) []Pending {
	var out []Pending
	for _, c := range cmds {
		if b := c.GetBatch(); b != nil {
			out = append(out, Announced(b.GetCommands())...)
			continue
		}
		if p, ok := PendingOf(c); ok {
			out = append(out, p)
		}
	}
	return out
}

// EncodeAnnounce renders ps as a log entry's extensions; nil for none.
func EncodeAnnounce(ps []Pending) ([]byte, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	a := &fsmpb.Announce{Revocations: make([]*fsmpb.AnnouncedRevocation, len(ps))}
	for i, p := range ps {
		a.Revocations[i] = &fsmpb.AnnouncedRevocation{Kind: p.Kind, Id: p.ID}
	}
	b, err := proto.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode announce: %w", err)
	}
	return b, nil
}

// DecodeAnnounce parses a log entry's extensions into the revocations it
// announces, each at index. It rejects oversized or malformed bytes and
// unknown kinds, and never panics, whatever the bytes (FuzzDecodeAnnounce).
func DecodeAnnounce(b []byte, index uint64) ([]Pending, error) {
	if len(b) > maxAnnounceBytes {
		return nil, fmt.Errorf("%w: announce of %d bytes exceeds %d", ErrBadEntry, len(b), maxAnnounceBytes)
	}
	a := &fsmpb.Announce{}
	if err := proto.Unmarshal(b, a); err != nil {
		return nil, fmt.Errorf("%w: announce: %v", ErrBadEntry, err)
	}
	out := make([]Pending, 0, len(a.GetRevocations()))
	for _, r := range a.GetRevocations() {
		if !PendingKind(r.GetKind()) || r.GetId() == "" {
			return nil, fmt.Errorf("%w: announce: revocation kind %q id %q", ErrBadEntry, r.GetKind(), r.GetId())
		}
		out = append(out, Pending{Index: index, Kind: r.GetKind(), ID: r.GetId()})
	}
	return out, nil
}
