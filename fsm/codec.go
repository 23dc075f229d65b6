package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// FormatProtoV1 is the first byte of every log entry: a serialized Command follows.
const FormatProtoV1 byte = 1

// Version is this FSM's version. A command whose header demands a higher
// min_fsm_version halts the replica instead of being misapplied.
//
// Version 2: PutPolicySet.keep_versions prunes the policy set history in
// Apply (a version-1 replica would keep every version and diverge).
//
// Version 3: IssueLease.skip_unlimited_use_count leaves a secret id with
// unlimited uses as it is (an older replica would count the use and
// diverge).
//
// Version 4 changes no command: a version-4 replica's log store enforces
// the revocations announced in an entry's Raft extensions (Announce) from
// the moment it stores the entry, so a leader that knows every server runs
// version 4 may report a voter that acknowledged the append as enforcing
// the revocation (node/announce.go). An older replica stores the
// extensions and ignores them.
const Version uint32 = 4

// SnapshotVersion is what a snapshot's header names: the newest FSM version
// whose state it may hold, which a reader must know. Version 4 changed no
// state, so snapshots still say 3 and a version-3 binary installs them: a
// lagging follower still on the old binary during a rolling upgrade can take
// a snapshot from an upgraded leader. Raise it with the next version that
// changes what a snapshot holds.
const SnapshotVersion uint32 = 3

// MaxEntryBytes bounds what Decode accepts. Apply halts on an entry Decode
// rejects, so proposers must stay well below it (node's proposer caps
// entries at 1 MiB).
const MaxEntryBytes = 16 << 20

var encodeOpts = proto.MarshalOptions{Deterministic: true}

// Encode renders a command as a log entry: FormatProtoV1, then the
// deterministic protobuf encoding of cmd.
func Encode(cmd *fsmpb.Command) ([]byte, error) {
	buf := make([]byte, 1, 1+encodeOpts.Size(cmd))
	buf[0] = FormatProtoV1
	out, err := encodeOpts.MarshalAppend(buf, cmd)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode command: %w", err)
	}
	if len(out) > MaxEntryBytes {
		return nil, fmt.Errorf("%w: entry of %d bytes exceeds %d", ErrBadEntry, len(out), MaxEntryBytes)
	}
	return out, nil
}

// Decode parses a log entry. It returns an error wrapping ErrBadEntry for an
// empty or oversized entry, an unknown format byte or bad protobuf, and
// never panics, whatever the bytes (FuzzDecode).
func Decode(b []byte) (*fsmpb.Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrBadEntry)
	}
	if len(b) > MaxEntryBytes {
		return nil, fmt.Errorf("%w: entry of %d bytes exceeds %d", ErrBadEntry, len(b), MaxEntryBytes)
	}
	if b[0] != FormatProtoV1 {
		return nil, fmt.Errorf("%w: unknown format byte %d", ErrBadEntry, b[0])
	}
	cmd := &fsmpb.Command{}
	if err := proto.Unmarshal(b[1:], cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	return cmd, nil
}

// CheckCommand reports whether this FSM can apply cmd: it returns an error
// wrapping ErrTooOld or ErrUnknownCommand exactly when Apply would halt on
// it. Proposers should call it before proposing, so that one bad proposal
// cannot halt every replica.
func CheckCommand(cmd *fsmpb.Command) error { return checkCommand(cmd, Version) }

func checkCommand(cmd *fsmpb.Command, version uint32) error {
	if err := checkOne(cmd, version); err != nil {
		return err
	}
	if b, ok := cmd.GetPayload().(*fsmpb.Command_Batch); ok {
		for i, item := range b.Batch.GetCommands() {
			if err := checkOne(item, version); err != nil {
				return fmt.Errorf("batch item %d: %w", i, err)
			}
		}
	}
	return nil
}

func checkOne(cmd *fsmpb.Command, version uint32) error {
	h := cmd.GetHeader()
	if v := h.GetMinFsmVersion(); v > version {
		return fmt.Errorf("%w: needs version %d, this is %d", ErrTooOld, v, version)
	}
	if cmd.GetPayload() == nil && !h.GetIgnorable() {
		return fmt.Errorf("%w: no payload this version (%d) knows, and not ignorable", ErrUnknownCommand, version)
	}
	return nil
}

// Requires returns the lowest FSM version that applies cmd exactly as this
// one does: what a leader stamps as the entry's min_fsm_version, so that a
// replica of an older binary halts only on entries it would misapply, not on
// every entry a newer leader writes. The commands of a batch count, and so
// does a min_fsm_version already in the header. Every payload this binary
// knows that is not listed below counts as version 1 (the first version
// stamped): a new payload or field that older replicas would misapply bumps
// Version and is listed here, with a Lower rule where one exists.
//
// Version 2: PutPolicySet with keep_versions > 0 (an older replica keeps the
// whole history). Version 3: IssueLease with skip_unlimited_use_count (an
// older replica counts the use).
func Requires(cmd *fsmpb.Command) uint32 {
	v := max(1, cmd.GetHeader().GetMinFsmVersion())
	switch p := cmd.GetPayload().(type) {
	case *fsmpb.Command_Batch:
		for _, item := range p.Batch.GetCommands() {
			v = max(v, Requires(item))
		}
	case *fsmpb.Command_PutPolicySet:
		if p.PutPolicySet.GetKeepVersions() > 0 {
			v = max(v, 2)
		}
	case *fsmpb.Command_IssueLease:
		if p.IssueLease.GetSkipUnlimitedUseCount() {
			v = max(v, 3)
		}
	}
	return v
}

// Lower rewrites cmd, in place, into its older form, which every replica
// of FSM version v or later applies alike, and reports whether cmd now
// Requires at most v. It is how a leader keeps writing while some voter
// still runs an older binary (a rolling upgrade): PutPolicySet drops
// keep_versions below version 2, so the history is pruned by the first put
// after every voter reports version 2; IssueLease drops
// skip_unlimited_use_count below version 3, so unlimited secret ids are
// counted until every voter reports version 3. A command
// with no such rule is left as it is and reported false; the proposer
// refuses it. A header's own min_fsm_version is never lowered.
func Lower(cmd *fsmpb.Command, v uint32) bool {
	if p, ok := cmd.GetPayload().(*fsmpb.Command_Batch); ok {
		ok := true
		for _, item := range p.Batch.GetCommands() {
			ok = Lower(item, v) && ok
		}
		return ok && cmd.GetHeader().GetMinFsmVersion() <= v
	}
	if p := cmd.GetPutPolicySet(); p != nil && v < 2 {
		p.KeepVersions = 0
	}
	if p := cmd.GetIssueLease(); p != nil && v < 3 {
		p.SkipUnlimitedUseCount = false
	}
	return Requires(cmd) <= v
}
