package fieldsync

import "github.com/fieldsync/fieldsync/syncclient"

// Phases of a sync round, in Progress.Phase.
const (
	// PhaseConnect is reported when an attempt starts connecting.
	PhaseConnect = syncclient.PhaseConnect
	// PhasePush is reported after each batch of the device's changes the
	// server answered.
	PhasePush = syncclient.PhasePush
	// PhasePull is reported after each response received from the server
	// (see syncclient.PhasePull).
	PhasePull = syncclient.PhasePull
	// PhaseDone is reported once when the round succeeded.
	PhaseDone = syncclient.PhaseDone
)

// Progress is the state of a Sync call, reported to the OnProgress function
// (see syncclient.Progress).
type Progress = syncclient.Progress

// SyncOption configures one Sync call.
type SyncOption func(*syncRun)

// OnProgress makes Sync call f with its progress: when each attempt starts
// connecting, after each pushed batch, after each pulled response, and when
// the round is done. f is called on the goroutine that called Sync,
// one call at a time; it must return quickly and must not call Sync.
func OnProgress(f func(Progress)) SyncOption {
	return func(r *syncRun) { r.onProgress = f }
}

// syncRun is the options of one Sync call.
type syncRun struct {
	onProgress func(Progress)
}

// RetryPolicy says how Sync retries transient failures (see
// syncclient.RetryPolicy): by default 5 attempts, waiting 1 s after the
// first failure, then 1.6 times longer up to 2 min, ±20 %.
type RetryPolicy = syncclient.RetryPolicy

// WithRetry sets the policy Sync retries transient failures with.
func WithRetry(p RetryPolicy) Option {
	return func(c *Client) { c.retry = p }
}
