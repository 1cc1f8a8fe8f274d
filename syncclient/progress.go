package syncclient

import (
	"math/rand/v2"
	"time"
)

// Phases of a sync round, in Progress.Phase.
const (
	// PhaseConnect is reported when an attempt starts connecting.
	PhaseConnect = "connect"
	// PhasePush is reported after each batch of the device's changes the
	// server answered.
	PhasePush = "push"
	// PhasePull is reported after each response received from the server:
	// its changes stored; a snapshot's records gathered, and stored a few
	// thousand at a time while the next ones arrive.
	PhasePull = "pull"
	// PhaseDone is reported once when the round succeeded.
	PhaseDone = "done"
)

// Progress is the state of a Sync call, reported to the OnProgress function.
// Counts are of the whole call: they carry over from a failed attempt to the
// next, which resumes where it stopped.
type Progress struct {
	// Attempt is the attempt number, from 1 (see WithRetry).
	Attempt int
	// Phase is PhaseConnect, PhasePush, PhasePull or PhaseDone.
	Phase string
	// Pushed is the number of the device's changes the server has answered.
	Pushed int
	// Pulled is the number of changes and snapshot records received (a
	// snapshot's records are stored a few thousand at a time, while the
	// next ones arrive; a sync that fails keeps those received whole).
	Pulled int
	// Rejected is the number of pushed changes the server refused for good
	// (recorded in the replica's store with the receipt).
	Rejected int
	// Snapshot is true while the pull receives a snapshot: the current state
	// of every record in the device's areas, sent to a new device or one
	// whose cursor the server can no longer continue from.
	Snapshot bool
	// Dropped is the number of records a fresh snapshot no longer had in
	// the device's areas, dropped from the replica (moved away while the
	// server's log that would have said so was compacted).
	Dropped int
}

// run is the state of one Sync call.
type run struct {
	onProgress func(Progress)
	p          Progress
}

func (r *run) report(phase string) {
	r.p.Phase = phase
	if r.onProgress != nil {
		r.onProgress(r.p)
	}
}

// RetryPolicy says how Sync retries transient failures: up to MaxAttempts
// attempts in all, waiting BaseDelay after the first failure, then 1.6 times
// longer after each one up to MaxDelay, each wait varied randomly by ±20 %
// so that phones cut off together do not come back together (gRPC's
// connection backoff). Zero or negative fields take the defaults: 5
// attempts, 1 s, 2 min. MaxAttempts 1 means no retry.
type RetryPolicy struct {
	MaxAttempts int
	BaseDelay   time.Duration
	MaxDelay    time.Duration
}

// defaultRetry is the policy used when none is given.
var defaultRetry = RetryPolicy{MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: 2 * time.Minute}

const (
	backoffFactor = 1.6
	backoffJitter = 0.2
)

// WithDefaults returns p with its zero or negative fields set to the
// defaults.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = defaultRetry.MaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = defaultRetry.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = defaultRetry.MaxDelay
	}
	return p
}

// Delay returns the wait after failed attempt n (from 1): BaseDelay·1.6^(n-1)
// capped at MaxDelay, ±20 %.
func (p RetryPolicy) Delay(n int) time.Duration {
	d := float64(p.BaseDelay)
	for i := 1; i < n && d < float64(p.MaxDelay); i++ {
		d *= backoffFactor
	}
	d = min(d, float64(p.MaxDelay))
	d *= 1 + backoffJitter*(2*rand.Float64()-1)
	return time.Duration(d)
}
