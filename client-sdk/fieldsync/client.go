package fieldsync

import (
	"context"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/save"
	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/syncclient"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// Meta keys the client keeps in the replica (sqlitestore.Store.SetMeta).
const (
	metaServerAddr    = "sdk_server_addr"
	metaToken         = "sdk_device_token"
	metaAreas         = "sdk_areas"
	metaServerReplica = "sdk_server_replica_id"
	metaIDHashKey     = "sdk_id_hash_key"
	metaPullCursor    = "sdk_pull_cursor"
	// metaRejections held a copy of the rejections, with their field
	// errors, before the rejections table kept them (read, never written).
	metaRejections  = "sdk_rejections"
	metaLastSuccess = "sdk_last_success"
	metaLastError   = "sdk_last_error"
	metaLastRefused = "sdk_last_refused"
	metaClock       = "sdk_clock"
	metaRules       = "sdk_rules"
)

// Client is one device replica. It is safe for concurrent use.
type Client struct {
	store *sqlitestore.Store
	clock *syncengine.Clock
	now   func() time.Time

	syncMu sync.Mutex // serialises Sync
	// dialOpts are added to every connection (WithDialOptions).
	dialOpts []grpc.DialOption
	retry    RetryPolicy   // WithRetry
	tls      *tls.Config   // WithTLS; nil means plaintext to loopback only
	sessions *sessionCache // the TLS session the replica keeps; nil without TLS
	// idleTimeout, when set, replaces the pull stream's idle time (tests).
	idleTimeout time.Duration
	// The key of the replica's secrets (secrets.go), and its cipher.
	secretKey  []byte
	passphrase string
	aead       cipher.AEAD
}

// Option configures Open.
type Option func(*Client)

// WithDialOptions adds gRPC dial options to every connection the client makes
// (a custom dialer, for example). They are applied after the client's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *Client) { c.dialOpts = append(c.dialOpts, opts...) }
}

// Open opens the replica file at path, creating a new replica if it does not
// exist. It returns sqlitestore's errors for a file that is not a usable
// replica. Close the client when done.
func Open(ctx context.Context, path string, opts ...Option) (*Client, error) {
	st, err := sqlitestore.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	c := &Client{store: st, clock: syncengine.NewClock(st.Replica(), 0), now: time.Now}
	for _, o := range opts {
		o(c)
	}
	c.tls = c.sessionCacheFor(c.tls)
	if err := c.unlock(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("fieldsync: open: %w", err)
	}
	if err := c.restoreClock(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the replica. The client must not be used afterwards.
func (c *Client) Close() error { return c.store.Close() }

// Replica returns the device's replica id.
func (c *Client) Replica() syncengine.ReplicaID { return c.store.Replica() }

// restoreClock raises the clock to the highest stamp the replica issued: the
// stamp saved after the last write, and the stamps of unacknowledged changes.
func (c *Client) restoreClock(ctx context.Context) error {
	if b, err := c.store.Meta(ctx, metaClock); err != nil {
		return fmt.Errorf("fieldsync: open: %w", err)
	} else if len(b) == 12 {
		c.clock.Restore(syncengine.Stamp{WallMS: int64(binary.BigEndian.Uint64(b)), Counter: binary.BigEndian.Uint32(b[8:])})
	}
	self := c.store.Replica()
	srv, err := c.serverReplica(ctx)
	if err != nil {
		return fmt.Errorf("fieldsync: open: %w", err)
	}
	return c.store.View(ctx, func(tx syncengine.ReadTx) error {
		cur, err := tx.Cursor(ctx, srv)
		if err != nil {
			return err
		}
		for after := cur.Acked; ; {
			page, err := tx.ReadLog(ctx, after, syncengine.DefaultBatchLimit)
			if err != nil {
				return fmt.Errorf("fieldsync: open: %w", err)
			}
			for _, e := range page {
				if e.Change.Origin == self {
					c.clock.Restore(e.Change.Stamp)
				}
				after = e.Pos
			}
			if len(page) < syncengine.DefaultBatchLimit {
				return nil
			}
		}
	})
}

func (c *Client) saveClock(ctx context.Context) error {
	return c.store.SetMeta(ctx, metaClock, clockBytes(c.clock.Last()))
}

// clockBytes is a stamp as the replica keeps it (metaClock).
func clockBytes(s syncengine.Stamp) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(s.WallMS))
	return binary.BigEndian.AppendUint32(b, s.Counter)
}

// Enroll exchanges a one-time enrolment code for a device token at the server
// at serverAddr and stores the token, the device's areas, the server's
// replica id and the ID-hash key in the replica. A replica enrolled already
// (even revoked) enrols again only with the operator's replace code (fieldsync
// admin device replace), which replaces them; any other code is refused
// (AlreadyExists, reason REPLICA_ALREADY_ENROLLED). Enroll makes one attempt,
// with the connection and RPC deadlines of Sync; the caller retries (a person
// is typing the code). It returns an error wrapping ErrTLSRequired, before
// dialing, for a server address that is not loopback when the client has no
// TLS configuration (WithTLS), and the server's gRPC status (PermissionDenied
// for an unknown or expired code) otherwise.
func (c *Client) Enroll(ctx context.Context, serverAddr, code string) error {
	if strings.TrimSpace(serverAddr) == "" {
		return errors.New("fieldsync: enroll: no server address: give the server's host:port")
	}
	if strings.TrimSpace(code) == "" {
		return errors.New("fieldsync: enroll: no enrolment code: give the code the server's operator issued")
	}
	resp, err := syncclient.Enroll(ctx, serverAddr, code, c.store.Replica(), "", c.tls, c.dialOpts...)
	if err != nil {
		return fmt.Errorf("fieldsync: enroll: %w", err)
	}
	for _, kv := range []struct {
		k string
		v []byte
	}{
		{metaServerAddr, []byte(serverAddr)},
		{metaAreas, []byte(strings.Join(resp.GetAreaPrefixes(), ","))},
		{metaServerReplica, resp.GetServerReplicaId()},
	} {
		if err := c.store.SetMeta(ctx, kv.k, kv.v); err != nil {
			return fmt.Errorf("fieldsync: enroll: %w", err)
		}
	}
	if err := c.setSecret(ctx, metaToken, []byte(resp.GetDeviceToken())); err != nil {
		return fmt.Errorf("fieldsync: enroll: %w", err)
	}
	if err := c.setSecret(ctx, metaIDHashKey, resp.GetIdHashKey()); err != nil {
		return fmt.Errorf("fieldsync: enroll: %w", err)
	}
	return nil
}

// IDHashKey returns the county's key for hashing ID numbers, received at
// enrolment (survey.HashIDNumber).
func (c *Client) IDHashKey(ctx context.Context) ([]byte, error) {
	return c.secret(ctx, metaIDHashKey)
}

// serverReplica returns the enrolled server's replica id, or the zero id.
func (c *Client) serverReplica(ctx context.Context) (syncengine.ReplicaID, error) {
	b, err := c.store.Meta(ctx, metaServerReplica)
	if err != nil {
		return syncengine.ReplicaID{}, err
	}
	var id syncengine.ReplicaID
	copy(id[:], b)
	return id, nil
}

// Save stores rec as a local change through the one save path (package
// save), in one transaction: a follow-up gets the schedule its measurements
// call for (the classification floor, an urgent referral, the latest next due
// date: the doctor may be stricter, never laxer); the record is validated and
// its fields that differ from the replica's current state are written; a
// household visit or clinic audit raises its problems and risk flags, with the
// rules in force (Rules); a problem moves only as the ledger's workflow
// allows. It returns a *ValidationError for a record the rules refuse, an
// error wrapping ErrOutOfScope for a record outside the enrolled areas, and
// storage errors; then nothing is stored. Saving a record identical to the
// stored one stores nothing. rec is not modified or retained.
func (c *Client) Save(ctx context.Context, rec *fieldsyncv1.Record) error {
	_, err := c.SaveRecord(ctx, rec)
	return err
}

// Saved is what a save wrote.
type Saved struct {
	// Changed is set when the record itself changed.
	Changed bool
	// Problems and Flags count the problems and risk flags the save raised.
	Problems, Flags int
}

// SaveRecord is Save, and reports what the save wrote. The device's areas
// and rules are read, and the record saved, in one transaction.
func (c *Client) SaveRecord(ctx context.Context, rec *fieldsyncv1.Record) (Saved, error) {
	var res save.Result
	err := c.store.Update(ctx, func(tx syncengine.Tx) error {
		a := save.Author{Clock: c.clock, Now: c.now()}
		var err error
		if a.Areas, err = areasIn(ctx, tx); err != nil {
			return err
		}
		if a.Rules, err = rulesIn(ctx, tx); err != nil {
			return err
		}
		res, err = save.Record(ctx, tx, a, rec)
		if err != nil || len(res.Changes) == 0 {
			return err
		}
		// The clock's stamp commits with the changes it stamped.
		return tx.SetMeta(ctx, metaClock, clockBytes(c.clock.Last()))
	})
	var invalid *save.InvalidError
	switch {
	case errors.As(err, &invalid):
		return Saved{}, &ValidationError{Fields: invalid.Fields}
	case errors.Is(err, save.ErrOutOfScope):
		return Saved{}, fmt.Errorf("fieldsync: save: %s: %w", strings.TrimSuffix(err.Error(), ": "+save.ErrOutOfScope.Error()), ErrOutOfScope)
	case err != nil:
		return Saved{}, fmt.Errorf("fieldsync: save: %w", err)
	}
	return Saved{Changed: res.Saved, Problems: res.Problems, Flags: res.Flags}, nil
}

// Delete deletes record id on the device: a change the next Sync sends, like
// a save. A deletion made while someone else edited the record keeps the
// record with a conflict on whether it exists, which the operator settles
// (fieldsync admin conflicts resolve). It returns ErrNotFound for an id the
// device does not show, and ErrOutOfScope for a record outside the device's
// areas.
func (c *Client) Delete(ctx context.Context, id string) error {
	r, err := c.record(ctx, id)
	if err != nil {
		return err
	}
	if !r.Exists() {
		return fmt.Errorf("fieldsync: delete %s: %w", id, ErrNotFound)
	}
	areas, err := c.Areas(ctx)
	if err != nil {
		return fmt.Errorf("fieldsync: delete %s: %w", id, err)
	}
	if len(areas) > 0 && !syncengine.InAreas(r.Area(), areas) {
		return fmt.Errorf("fieldsync: delete %s: area %s: %w", id, r.Area(), ErrOutOfScope)
	}
	err = c.store.Update(ctx, func(tx syncengine.Tx) error {
		if _, err := save.Delete(ctx, tx, save.Author{Clock: c.clock, Now: c.now()}, r.ID(), r.Version()); err != nil {
			return err
		}
		return tx.SetMeta(ctx, metaClock, clockBytes(c.clock.Last()))
	})
	if errors.Is(err, save.ErrNoRecord) {
		return fmt.Errorf("fieldsync: delete %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("fieldsync: delete %s: %w", id, err)
	}
	return nil
}

// Get returns the record with id (its canonical UUID text) as the replica
// shows it, or an error wrapping ErrNotFound if there is no live record.
func (c *Client) Get(ctx context.Context, id string) (*fieldsyncv1.Record, error) {
	r, err := c.record(ctx, id)
	if err != nil {
		return nil, err
	}
	if !r.Exists() {
		return nil, fmt.Errorf("fieldsync: get %s: %w", id, ErrNotFound)
	}
	rec, err := wire.FromState(r)
	if err != nil {
		return nil, fmt.Errorf("fieldsync: get %s: %w", id, err)
	}
	return rec, nil
}

func (c *Client) record(ctx context.Context, id string) (syncengine.Record, error) {
	rid, err := wire.RecordID(id)
	if err != nil {
		return syncengine.Record{}, fmt.Errorf("fieldsync: %w", err)
	}
	var r syncengine.Record
	err = c.store.View(ctx, func(tx syncengine.ReadTx) error {
		var err error
		r, err = tx.Record(ctx, rid)
		return err
	})
	if err != nil {
		return syncengine.Record{}, fmt.Errorf("fieldsync: get %s: %w", id, err)
	}
	return r, nil
}

// Conflict is an open conflict on one field of a record: concurrent values,
// the shown one first.
type Conflict struct {
	RecordID string
	Field    int32
	Values   [][]byte // protobuf encodings of the field, winner first
}

// Conflicts returns the open conflicts of record id, ordered by field.
func (c *Client) Conflicts(ctx context.Context, id string) ([]Conflict, error) {
	r, err := c.record(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []Conflict
	for _, cf := range r.Conflicts() {
		x := Conflict{RecordID: id, Field: cf.ID.Field}
		for _, w := range cf.Writes {
			x.Values = append(x.Values, append([]byte{}, w.Value...))
		}
		out = append(out, x)
	}
	return out, nil
}

// DuePatient is a hypertension or type 2 diabetes patient due or overdue for
// a follow-up of one disease (sqlitestore.DuePatient).
type DuePatient = sqlitestore.DuePatient

// DueReason is why a patient is due (sqlitestore.DueReason).
type DueReason = sqlitestore.DueReason

// Reasons a patient is due, from the most to the least pressing.
const (
	DueUrgentReferral  = sqlitestore.DueUrgentReferral
	DueUncontrolled    = sqlitestore.DueUncontrolled
	DueNeverFollowedUp = sqlitestore.DueNeverFollowedUp
	DueRoutine         = sqlitestore.DueRoutine
)

// DuePatients returns, for every living hypertension and type 2 diabetes
// patient of the device's areas, one row per disease whose next follow-up is
// due on or before day (its calendar day in China Standard Time), including
// patients never followed up; urgent referrals first, then most days overdue
// (sqlitestore.Store.DuePatients).
func (c *Client) DuePatients(ctx context.Context, day time.Time) ([]DuePatient, error) {
	areas, err := c.Areas(ctx)
	if err != nil {
		return nil, err
	}
	return c.store.DuePatients(ctx, areas, day)
}

// Managed is how many patients of a disease the device's areas have, and how
// many are under standard management (sqlitestore.Managed).
type Managed = sqlitestore.Managed

// StandardManagement returns, for hypertension and type 2 diabetes, the
// patients of the device's areas and those under standard management (规范管理)
// at at: at least 4 face-to-face follow-ups in the 12 months before it.
func (c *Client) StandardManagement(ctx context.Context, at time.Time) ([]Managed, error) {
	areas, err := c.Areas(ctx)
	if err != nil {
		return nil, err
	}
	return c.store.StandardManagement(ctx, areas, at)
}

// UnvisitedHouseholds returns the households in the device's areas not yet
// visited in campaign.
func (c *Client) UnvisitedHouseholds(ctx context.Context, campaign string) ([]*fieldsyncv1.Household, error) {
	areas, err := c.Areas(ctx)
	if err != nil {
		return nil, err
	}
	return c.store.UnvisitedHouseholds(ctx, areas, campaign)
}

// OpenProblems returns the problems in the device's areas not yet closed.
func (c *Client) OpenProblems(ctx context.Context) ([]*fieldsyncv1.Problem, error) {
	areas, err := c.Areas(ctx)
	if err != nil {
		return nil, err
	}
	return c.store.OpenProblems(ctx, areas)
}
