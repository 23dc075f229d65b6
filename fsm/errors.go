package fsm

import "errors"

var (
	// ErrBadEntry: bytes that are not a Writ log entry (Decode; Apply halts).
	ErrBadEntry = errors.New("fsm: bad log entry")
	// ErrUnknownCommand: a command whose payload this FSM does not know and
	// whose header does not mark it ignorable (CheckCommand; Apply halts).
	ErrUnknownCommand = errors.New("fsm: unknown command")
	// ErrTooOld: a command needs a newer FSM version than Version
	// (CheckCommand; Apply halts).
	ErrTooOld = errors.New("fsm: command needs a newer FSM version")
	// ErrBadSnapshot: a snapshot stream that cannot be restored.
	ErrBadSnapshot = errors.New("fsm: bad snapshot")
)
