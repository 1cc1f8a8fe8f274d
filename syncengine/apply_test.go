package syncengine_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// chg builds a valid change of record 1 by origin with the given counter and
// wall time, context and fields.
func chg(origin syncengine.ReplicaID, counter uint64, wall int64, ctx syncengine.VersionVector, fields map[int32]string) *syncengine.Change {
	return &syncengine.Change{
		ID: newChangeID(), RecordID: recordID(1), Kind: kindPerson, Area: areaVillageA,
		Origin: origin, Dot: syncengine.Dot{Replica: origin, Counter: counter},
		Stamp:   syncengine.Stamp{WallMS: wall, Replica: origin},
		Context: ctx, Fields: strFields(fields),
	}
}

func del(origin syncengine.ReplicaID, counter uint64, wall int64, ctx syncengine.VersionVector) *syncengine.Change {
	c := chg(origin, counter, wall, ctx, nil)
	c.Delete, c.Fields = true, nil
	return c
}

func applyAll(t *testing.T, cs ...*syncengine.Change) syncengine.Record {
	t.Helper()
	var r syncengine.Record
	for _, c := range cs {
		var err error
		if r, err = syncengine.Apply(r, c); err != nil {
			t.Fatalf("Apply(%v): %v", c.Dot, err)
		}
	}
	return r
}

// applyEveryOrder applies cs in every order and checks all give one state.
func applyEveryOrder(t *testing.T, cs ...*syncengine.Change) syncengine.Record {
	t.Helper()
	want := applyAll(t, cs...)
	permute(cs, 0, func(p []*syncengine.Change) {
		if got := applyAll(t, p...); got.Digest() != want.Digest() {
			t.Fatalf("order-dependent state:\n%v\nvs\n%v", got, want)
		}
	})
	return want
}

func permute(cs []*syncengine.Change, k int, f func([]*syncengine.Change)) {
	if k == len(cs) {
		f(cs)
		return
	}
	for i := k; i < len(cs); i++ {
		cs[k], cs[i] = cs[i], cs[k]
		permute(cs, k+1, f)
		cs[k], cs[i] = cs[i], cs[k]
	}
}

func value(t *testing.T, r syncengine.Record, f int32) string {
	t.Helper()
	v, ok := r.Value(f)
	if !ok {
		t.Fatalf("field %d has no value in %v", f, r)
	}
	return string(v)
}

// Changes shared by the rule tests: a creates the record, and later changes
// are made after seeing only that.
var (
	create      = chg(ra, 1, 100, vv(), map[int32]string{1: "x", 2: "y"})
	afterCreate = vv(ra, 1)
)

func TestApplyCausalityAndConcurrency(t *testing.T) {

	t.Run("a write that causally follows replaces", func(t *testing.T) {
		r := applyEveryOrder(t, create, chg(rb, 1, 50, afterCreate, map[int32]string{1: "x2"}))
		if got := value(t, r, 1); got != "x2" {
			t.Errorf("field 1 = %q, want x2 (causality beats an earlier stamp)", got)
		}
		if len(r.Conflicts()) != 0 {
			t.Errorf("conflicts = %v, want none", r.Conflicts())
		}
	})
	t.Run("concurrent writes to one field: higher stamp shown, loser kept", func(t *testing.T) {
		r := applyEveryOrder(t, create,
			chg(rb, 1, 300, afterCreate, map[int32]string{1: "from b"}),
			chg(rc, 1, 200, afterCreate, map[int32]string{1: "from c"}))
		if got := value(t, r, 1); got != "from b" {
			t.Errorf("shown = %q, want from b", got)
		}
		c := r.Conflicts()
		if len(c) != 1 || len(c[0].Writes) != 2 || string(c[0].Writes[1].Value) != "from c" || c[0].Writes[1].Origin() != rc {
			t.Errorf("conflicts = %v, want from c kept", c)
		}
		if want := (syncengine.ConflictID{Record: recordID(1), Field: 1}); c[0].ID != want {
			t.Errorf("conflict id = %v, want %v", c[0].ID, want)
		}
	})
	t.Run("equal stamps: higher origin shown", func(t *testing.T) {
		r := applyEveryOrder(t, create,
			chg(rb, 1, 300, afterCreate, map[int32]string{1: "from b"}),
			chg(rc, 1, 300, afterCreate, map[int32]string{1: "from c"}))
		if got := value(t, r, 1); got != "from c" {
			t.Errorf("shown = %q, want from c", got)
		}
	})
	t.Run("concurrent writes of the same value are no conflict", func(t *testing.T) {
		r := applyEveryOrder(t, create,
			chg(rb, 1, 300, afterCreate, map[int32]string{1: "same"}),
			chg(rc, 1, 200, afterCreate, map[int32]string{1: "same"}))
		if len(r.Conflicts()) != 0 || len(r.Writes(1)) != 2 {
			t.Errorf("conflicts = %v, writes = %v; want none, both kept", r.Conflicts(), r.Writes(1))
		}
	})
	t.Run("concurrent writes to different fields both survive", func(t *testing.T) {
		r := applyEveryOrder(t, create,
			chg(rb, 1, 300, afterCreate, map[int32]string{1: "b1"}),
			chg(rc, 1, 200, afterCreate, map[int32]string{2: "c2"}))
		if value(t, r, 1) != "b1" || value(t, r, 2) != "c2" || len(r.Conflicts()) != 0 {
			t.Errorf("state %v, want b1, c2, no conflict", r)
		}
	})
	t.Run("a change arriving after one that overwrote it keeps its other fields", func(t *testing.T) {
		b := chg(rb, 1, 300, afterCreate, map[int32]string{1: "b1", 2: "b2"})
		c := chg(rc, 1, 400, vv(ra, 1, rb, 1), map[int32]string{1: "c1"})
		r := applyEveryOrder(t, create, b, c)
		if value(t, r, 1) != "c1" || value(t, r, 2) != "b2" || len(r.Conflicts()) != 0 {
			t.Errorf("state %v, want c1, b2", r)
		}
	})
	t.Run("re-applying is a no-op", func(t *testing.T) {
		b := chg(rb, 1, 300, afterCreate, map[int32]string{1: "b"})
		once := applyAll(t, create, b)
		twice := applyAll(t, create, b, create, b)
		if once.Digest() != twice.Digest() {
			t.Errorf("re-applying changed the state")
		}
	})
}

func TestApplyDeletes(t *testing.T) {
	t.Run("delete concurrent with update keeps the record and raises a conflict", func(t *testing.T) {
		r := applyEveryOrder(t, create, del(rb, 1, 300, afterCreate), chg(rc, 1, 200, afterCreate, map[int32]string{2: "c2"}))
		if !r.Exists() || r.Deleted() {
			t.Errorf("exists %v deleted %v, want alive", r.Exists(), r.Deleted())
		}
		if c := r.Conflicts(); len(c) != 1 || c[0].ID.Field != syncengine.ExistenceField {
			t.Errorf("conflicts = %v, want one on existence", c)
		}
	})
	t.Run("delete after every update deletes", func(t *testing.T) {
		r := applyEveryOrder(t, create, del(rb, 1, 50, afterCreate))
		if !r.Deleted() || r.Exists() || len(r.Conflicts()) != 0 {
			t.Errorf("state %v, want deleted without conflict", r)
		}
		if value(t, r, 1) != "x" {
			t.Errorf("tombstone lost its fields")
		}
	})
	t.Run("update after delete brings the record back", func(t *testing.T) {
		d := del(rb, 1, 300, afterCreate)
		r := applyEveryOrder(t, create, d, chg(rc, 1, 400, vv(ra, 1, rb, 1), map[int32]string{2: "back"}))
		if !r.Exists() || len(r.Conflicts()) != 0 {
			t.Errorf("state %v, want alive", r)
		}
	})
}

func TestApplyResolutions(t *testing.T) {
	t.Run("resolution closes the conflict in any order", func(t *testing.T) {
		b := chg(rb, 1, 300, afterCreate, map[int32]string{1: "b"})
		c := chg(rc, 1, 200, afterCreate, map[int32]string{1: "c"})
		res := chg(ra, 2, 500, vv(ra, 1, rb, 1, rc, 1), map[int32]string{1: "c"})
		r := applyEveryOrder(t, create, b, c, res)
		if value(t, r, 1) != "c" || len(r.Conflicts()) != 0 {
			t.Errorf("state %v, want c without conflict", r)
		}
	})
	t.Run("a write concurrent with the resolution reopens the conflict", func(t *testing.T) {
		b := chg(rb, 1, 300, afterCreate, map[int32]string{1: "b"})
		c := chg(rc, 1, 200, afterCreate, map[int32]string{1: "c"})
		res := chg(ra, 2, 500, vv(ra, 1, rb, 1, rc, 1), map[int32]string{1: "c"})
		late := chg(rc, 2, 600, vv(ra, 1, rc, 1), map[int32]string{1: "c again"})
		r := applyEveryOrder(t, create, b, c, res, late)
		if c := r.Conflicts(); len(c) != 1 || len(c[0].Writes) != 2 {
			t.Errorf("conflicts = %v, want resolution vs late write", c)
		}
	})
}

func TestApplyDoesNotModifyItsArguments(t *testing.T) {
	create := chg(ra, 1, 100, vv(), map[int32]string{1: "x", 2: "y"})
	r := applyAll(t, create)
	before, _ := r.MarshalBinary()
	c := chg(rb, 1, 300, vv(), map[int32]string{1: "b", 3: "z"})
	cb, _ := c.MarshalBinary()
	if _, err := syncengine.Apply(r, c); err != nil {
		t.Fatal(err)
	}
	after, _ := r.MarshalBinary()
	ca, _ := c.MarshalBinary()
	if !bytes.Equal(before, after) || !bytes.Equal(cb, ca) {
		t.Errorf("Apply modified its arguments")
	}
}

func TestApplyRefusesMismatchesAndInvalidChanges(t *testing.T) {
	r := applyAll(t, chg(ra, 1, 100, vv(), map[int32]string{1: "x"}))
	other := chg(rb, 1, 100, vv(), nil)
	other.RecordID = recordID(2)
	if _, err := syncengine.Apply(r, other); !errors.Is(err, syncengine.ErrRecordMismatch) {
		t.Errorf("other record: err = %v, want ErrRecordMismatch", err)
	}
	kind := chg(rb, 1, 100, vv(), nil)
	kind.Kind = kindHousehold
	if _, err := syncengine.Apply(r, kind); !errors.Is(err, syncengine.ErrRecordMismatch) {
		t.Errorf("other kind: err = %v, want ErrRecordMismatch", err)
	}
	bad := chg(rb, 1, 100, vv(), nil)
	bad.Area = "5301"
	if _, err := syncengine.Apply(r, bad); !errors.Is(err, syncengine.ErrInvalidChange) {
		t.Errorf("bad area: err = %v, want ErrInvalidChange", err)
	}
}

func TestChangeValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *syncengine.Change)
	}{
		{"zero id", func(c *syncengine.Change) { c.ID = syncengine.ChangeID{} }},
		{"zero record", func(c *syncengine.Change) { c.RecordID = syncengine.RecordID{} }},
		{"zero kind", func(c *syncengine.Change) { c.Kind = 0 }},
		{"short area", func(c *syncengine.Change) { c.Area = "53010200100" }},
		{"letters in area", func(c *syncengine.Change) { c.Area = "53010200100x" }},
		{"dot of another replica", func(c *syncengine.Change) { c.Dot.Replica = rb }},
		{"zero counter", func(c *syncengine.Change) { c.Dot.Counter = 0 }},
		{"stamp of another replica", func(c *syncengine.Change) { c.Stamp.Replica = rb }},
		{"negative stamp", func(c *syncengine.Change) { c.Stamp.WallMS = -1 }},
		{"context contains own dot", func(c *syncengine.Change) { c.Context = vv(ra, 5) }},
		{"delete with fields", func(c *syncengine.Change) { c.Delete = true }},
		{"field 0", func(c *syncengine.Change) { c.Fields[0] = nil }},
		{"field too large", func(c *syncengine.Change) { c.Fields[syncengine.MaxFieldNumber+1] = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := chg(ra, 3, 100, vv(rb, 1), map[int32]string{1: "x"})
			if err := c.Validate(); err != nil {
				t.Fatalf("valid change: %v", err)
			}
			tt.modify(c)
			if err := c.Validate(); !errors.Is(err, syncengine.ErrInvalidChange) {
				t.Errorf("err = %v, want ErrInvalidChange", err)
			}
		})
	}
}

func TestChangeEncodingRoundTrips(t *testing.T) {
	c := chg(ra, 1<<33, 1<<45, vv(rb, 7, rc, 1), map[int32]string{1: "x", 1042: "\x00\xff", 7: ""})
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got syncengine.Change
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := got.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs")
	}
	if got.ID != c.ID || got.Dot != c.Dot || got.Stamp != c.Stamp || got.Context.Compare(c.Context) != syncengine.Equal || len(got.Fields) != 3 || string(got.Fields[1042]) != "\x00\xff" {
		t.Errorf("round trip = %+v, want %+v", got, c)
	}
	b[len(b)-1] ^= 0xff
	b = append(b, 0)
	if err := got.UnmarshalBinary(b); !errors.Is(err, syncengine.ErrMalformed) {
		t.Errorf("trailing byte: err = %v, want ErrMalformed", err)
	}
}

func TestRecordEncodingRoundTrips(t *testing.T) {
	r := applyAll(t,
		chg(ra, 1, 100, vv(), map[int32]string{1: "x", 2: "y"}),
		chg(rb, 1, 300, vv(ra, 1), map[int32]string{1: "b"}),
		chg(rc, 1, 200, vv(ra, 1), map[int32]string{1: "c"}),
		del(rc, 2, 250, vv(ra, 1, rc, 1)))
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got syncengine.Record
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Digest() != r.Digest() {
		t.Errorf("round trip changed the digest:\n%v\n%v", got, r)
	}
	for i := range b {
		if err := got.UnmarshalBinary(b[:i]); !errors.Is(err, syncengine.ErrMalformed) {
			t.Fatalf("truncated to %d: err = %v, want ErrMalformed", i, err)
		}
	}
}

func TestMergeRefusesStatesOfAnotherRecord(t *testing.T) {
	a := applyAll(t, chg(ra, 1, 100, vv(), map[int32]string{1: "x"}))
	other := chg(rb, 1, 100, vv(), nil)
	other.RecordID = recordID(2)
	b := applyAll(t, other)
	if _, err := syncengine.Merge(a, b); !errors.Is(err, syncengine.ErrRecordMismatch) {
		t.Errorf("err = %v, want ErrRecordMismatch", err)
	}
	if got, err := syncengine.Merge(a, syncengine.Record{}); err != nil || got.Digest() != a.Digest() {
		t.Errorf("merge with the empty state = %v, %v; want a", got, err)
	}
}
