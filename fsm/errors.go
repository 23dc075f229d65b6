package fsm

import "errors"

var (
	// ErrBadEntry: bytes that are not a Writ log entry.
	ErrBadEntry = errors.New("bad log entry")
	// ErrBadSnapshot: a snapshot stream that cannot be restored.
	ErrBadSnapshot = errors.New("bad snapshot")
)
