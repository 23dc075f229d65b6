package audit

import "errors"

var (
	// ErrNotDurable: a record that must be durable before the request goes
	// on (issuance, renewal, admin changes) could not be written and synced
	// in time. Callers fail the request closed (rpc maps it to Unavailable).
	ErrNotDurable = errors.New("audit record could not be made durable")
	// ErrClosed: the log is closed.
	ErrClosed = errors.New("audit log closed")
	// ErrConfig: the audit configuration is invalid.
	ErrConfig = errors.New("invalid audit config")
	// ErrTampered: Verify found a record that was edited, removed, inserted
	// or reordered, or a chain that disagrees with a checkpoint.
	ErrTampered = errors.New("audit chain broken")
	// ErrMalformed: Verify found a line that is not an audit record.
	ErrMalformed = errors.New("malformed audit record")
)
