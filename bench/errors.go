package bench

import "errors"

var (
	// ErrConfig reports an unusable Config or Load.
	ErrConfig = errors.New("bench: bad config")
	// ErrUnknownScenario names a scenario that does not exist.
	ErrUnknownScenario = errors.New("bench: unknown scenario")
	// ErrPeerMissing: a peer's binary is not installed; the peer is skipped.
	ErrPeerMissing = errors.New("bench: peer binary missing")
	// ErrSetup: the target could not be prepared for a scenario.
	ErrSetup = errors.New("bench: setup failed")
)
