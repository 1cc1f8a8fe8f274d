package syncengine_test

import (
	"fmt"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Two doctors set the same field without seeing each other's edit; the later
// stamp is shown, the other value is kept in a conflict, and a resolution made
// after seeing both closes it, whatever order the changes arrive in.
func ExampleApply() {
	township, wang, li := replicaID("township"), replicaID("dr-wang"), replicaID("dr-li")
	person := recordID(42)
	const residency = 5
	change := func(origin syncengine.ReplicaID, wallMS int64, seen syncengine.VersionVector, value string) *syncengine.Change {
		counter := seen.Get(origin) + 1
		return &syncengine.Change{
			ID: newChangeID(), RecordID: person, Kind: kindPerson, Area: areaVillageA,
			Origin: origin, Dot: syncengine.Dot{Replica: origin, Counter: counter},
			Stamp:   syncengine.Stamp{WallMS: wallMS, Replica: origin},
			Context: seen, Fields: map[int32][]byte{residency: []byte(value)},
		}
	}
	created := change(township, 1000, syncengine.VersionVector{}, "village A")
	seen := syncengine.NewVersionVector(created.Dot)
	byWang := change(wang, 2000, seen, "village B")
	byLi := change(li, 3000, seen, "village C")

	var rec syncengine.Record
	for _, c := range []*syncengine.Change{byLi, created, byWang} { // any order
		rec, _ = syncengine.Apply(rec, c)
	}
	shown, _ := rec.Value(residency)
	fmt.Printf("shown: %s\n", shown)
	for _, c := range rec.Conflicts() {
		fmt.Printf("conflict on field %d:", c.ID.Field)
		for _, w := range c.Writes {
			fmt.Printf(" %q", w.Value)
		}
		fmt.Println()
	}

	resolution := change(township, 4000, rec.Version(), "village B")
	rec, _ = syncengine.Apply(rec, resolution)
	shown, _ = rec.Value(residency)
	fmt.Printf("after review: %s, %d conflicts\n", shown, len(rec.Conflicts()))
	// Output:
	// shown: village C
	// conflict on field 5: "village C" "village B"
	// after review: village B, 0 conflicts
}
