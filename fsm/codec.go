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
const Version uint32 = 1

// MaxEntryBytes bounds what Decode accepts.
const MaxEntryBytes = 16 << 20

// Encode renders a command as a log entry (format byte + protobuf).
func Encode(cmd *fsmpb.Command) ([]byte, error) {
	size := proto.Size(cmd)
	buf := make([]byte, 1, 1+size)
	buf[0] = FormatProtoV1
	out, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	return out, nil
}

// Decode parses a log entry. It never panics, whatever the bytes.
func Decode(b []byte) (*fsmpb.Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrBadEntry)
	}
	if len(b) > MaxEntryBytes {
		return nil, fmt.Errorf("%w: entry of %d bytes", ErrBadEntry, len(b))
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
