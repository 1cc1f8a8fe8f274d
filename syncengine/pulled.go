package syncengine

import (
	"context"
	"fmt"
)

// Pulled is one page of a pull (PullPage) as its puller stores it.
type Pulled struct {
	// Sender is the server pulled from: the changes are noted as received
	// from it (Tx.NoteFrom), so the puller never sends them back.
	Sender ReplicaID
	// Records are whole record states, merged into the stored ones.
	Records []Record
	// Changes follow the records, in the server's log order.
	Changes []Change
}

// PulledOptions controls how ReceivePulledTx stores a page.
type PulledOptions struct {
	// Clock, if not nil, observes the stamps of every write taken in, so
	// that later local stamps follow them. A stamp beyond its skew is still
	// taken: the server holds it, and the puller holds what it holds.
	Clock *Clock
	// WallMS is the local wall clock, for Clock.
	WallMS int64
	// Compare asks whether a merged record changed a stored state: the
	// digests cost time on a bootstrap, so only a puller that needs to know
	// asks (a relay, whose own pullers then take a snapshot).
	Compare bool
}

// PulledResult is what ReceivePulledTx did with a page.
type PulledResult struct {
	// Applied counts the changes stored; Duplicates those whose dot the log
	// held; Malformed the changes that could not be applied (the server's
	// own data is damaged), which are passed by.
	Applied, Duplicates, Malformed int
	// Changed is set, when Compare was, if a merged record changed a
	// stored state: a change not in the puller's log.
	Changed bool
}

// ReceivePulledTx stores page p of a pull in tx, a transaction the puller
// runs so that the page and the server's cursor after it commit together:
// the records are merged into the stored states (Merge, so no write held
// here that the server lacks is lost), then each change whose dot the log
// does not hold is applied and appended to the log as received from
// p.Sender. A pull's changes are not positioned in the sender's log (the
// server's cursor is opaque), so no peer cursor moves: the cursor the
// puller stores is the page's. Its error is a storage failure, or a record
// that does not decode, and the caller's transaction must not commit.
func ReceivePulledTx(ctx context.Context, tx Tx, p Pulled, opts PulledOptions) (PulledResult, error) {
	var res PulledResult
	locals, err := readLocals(ctx, tx, p.Records)
	if err != nil {
		return res, err
	}
	fresh, _ := tx.(NewRecordPutter)
	for i, r := range p.Records {
		observeRecord(opts.Clock, r, opts.WallMS)
		var local Record
		if locals != nil {
			local = locals[i]
		} else if local, err = tx.Record(ctx, r.ID()); err != nil {
			return res, err
		}
		if local.IsEmpty() && fresh != nil && !r.IsEmpty() {
			// Held nowhere here: the merge is r itself.
			res.Changed = res.Changed || opts.Compare
			if err := fresh.PutNewRecord(ctx, r); err != nil {
				return res, err
			}
			continue
		}
		merged, err := Merge(local, r)
		if err != nil {
			return res, fmt.Errorf("pulled record %s: %w", r.ID(), err)
		}
		if opts.Compare && !res.Changed {
			res.Changed = merged.Digest() != local.Digest()
		}
		if err := tx.PutRecord(ctx, merged); err != nil {
			return res, err
		}
	}
	for i, c := range p.Changes {
		cr, err := receiveOne(ctx, tx, Entry{Pos: Position(i + 1), Change: c}, p.Sender, ReceiveOptions{})
		if err != nil {
			return res, err
		}
		switch cr.Outcome {
		case OutcomeApplied:
			// Only a change taken in moves the clock: a damaged one passed
			// by must not push the puller's stamps ahead.
			if opts.Clock != nil {
				_ = opts.Clock.Observe(c.Stamp, opts.WallMS) // kept beyond the skew too
			}
			res.Applied++
		case OutcomeDuplicate:
			res.Duplicates++
		default:
			res.Malformed++
		}
	}
	return res, nil
}

// RecordsReader is a ReadTx that reads many records for about the cost of
// one (a store whose every read is a query). ReceivePulledTx reads a page's
// records with it where the transaction offers it.
type RecordsReader interface {
	// Records returns the states of ids, in their order, the zero Record
	// for one not stored.
	Records(ctx context.Context, ids []RecordID) ([]Record, error)
}

// NewRecordPutter is a Tx that stores a record it does not hold for less
// than PutRecord costs (nothing of the record to replace or unindex): a
// bootstrap's snapshot is thousands of such records.
type NewRecordPutter interface {
	// PutNewRecord stores r, which the transaction holds no state of (its
	// Record reads the zero Record).
	PutNewRecord(ctx context.Context, r Record) error
}

// readLocals returns the stored states of recs' records, in order, read
// in one go, or nil when tx is no RecordsReader or a record comes twice (the
// second must see the first stored): each is then read in its turn.
func readLocals(ctx context.Context, tx Tx, recs []Record) ([]Record, error) {
	rr, ok := tx.(RecordsReader)
	if !ok || len(recs) < 2 {
		return nil, nil
	}
	ids := make([]RecordID, len(recs))
	seen := make(map[RecordID]bool, len(recs))
	for i, r := range recs {
		if ids[i] = r.ID(); seen[ids[i]] {
			return nil, nil
		}
		seen[ids[i]] = true
	}
	return rr.Records(ctx, ids)
}

// observeRecord makes clock observe the stamp of every write r holds.
func observeRecord(clock *Clock, r Record, wallMS int64) {
	if clock == nil {
		return
	}
	for i := range r.fields {
		f := &r.fields[i]
		if f.num == ExistenceField {
			continue
		}
		for j := range f.writes {
			_ = clock.Observe(f.writes[j].stamp(), wallMS) // a stamp beyond the skew is still kept
		}
	}
}
