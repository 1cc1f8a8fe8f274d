package syncengine_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// A township relays its phone's change to the county and then pulls from it:
// the county does not send the change back (it came from the township), nor
// the relay push send back what the county sent it; a third replica gets
// everything.
func TestNoEchoes(t *testing.T) {
	var now int64 = 1_750_000_000_000
	phone, town, county, other := newNode(t, &now, "phone", 0), newNode(t, &now, "township", 0), newNode(t, &now, "county", 0), newNode(t, &now, "other township", 0)
	phone.write(recordID(1), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "from the phone"})
	syncUp(t, phone, town)
	if rs := push(t, town, county, 0); len(rs) != 1 || rs[0].Outcome != syncengine.OutcomeApplied {
		t.Fatalf("the township's push: %v, want the phone's change applied", outcomes(rs))
	}
	if rs := pull(t, town, county, 0); len(rs) != 0 {
		t.Errorf("the township pulled %v from the county: its own relayed change came back", outcomes(rs))
	}
	county.write(recordID(2), kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{3: "from the county"})
	if rs := pull(t, town, county, 0); len(rs) != 1 || rs[0].Outcome != syncengine.OutcomeApplied {
		t.Fatalf("the township's pull: %v, want the county's change applied", outcomes(rs))
	}
	if rs := push(t, town, county, 0); len(rs) != 0 {
		t.Errorf("the township pushed %v to the county: what it pulled from the county went back", outcomes(rs))
	}
	if rs := pull(t, other, county, 0); len(rs) != 2 {
		t.Errorf("another township pulled %v from the county, want both changes", outcomes(rs))
	}
	assertSameRecord(t, recordID(1), phone, town, county, other)
}
