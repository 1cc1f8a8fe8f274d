package syncengine_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/syncengine"
)

// Each test here is one situation from the field, told as a story. Replicas are
// memstore-backed nodes syncing through the real session code.

const (
	fieldName      int32 = 1
	fieldAddress   int32 = 4
	fieldResidency int32 = 5
	fieldVisit     int32 = 6
	fieldVitals    int32 = 7
)

const serverSkew = 5 * minute

func TestTwoVillageDoctorsChangeTheSamePersonsResidencyOffline(t *testing.T) {
	now := morning
	township := newNode(t, &now, "township", serverSkew)
	drWang := newNode(t, &now, "dr-wang", 0)
	drLi := newNode(t, &now, "dr-li", 0)
	person := recordID(1)

	// The township registers Zhang Wei, living in village A; both doctors
	// sync in the morning and leave for the villages.
	township.write(person, kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{
		fieldName: "Zhang Wei", fieldResidency: "village A",
	})
	syncUp(t, drWang, township)
	syncUp(t, drLi, township)

	// Offline, Dr Wang hears Zhang Wei moved to village B; an hour later Dr Li
	// is told village C.
	now += hour
	drWang.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldResidency: "village B"})
	now += hour
	drLi.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldResidency: "village C"})

	// Back in signal, both sync; Dr Wang syncs again to get Dr Li's change.
	now += 8 * hour
	syncUp(t, drWang, township)
	syncUp(t, drLi, township)
	syncUp(t, drWang, township)
	assertSameRecord(t, person, township, drWang, drLi)

	// Everyone shows the later edit, and keeps the other for review.
	rec := township.record(person)
	if got, want := township.value(person, fieldResidency), "village C"; got != want {
		t.Errorf("shown residency = %q, want %q", got, want)
	}
	conflicts := rec.Conflicts()
	if len(conflicts) != 1 || conflicts[0].ID.Field != fieldResidency {
		t.Fatalf("conflicts = %v, want one on residency", conflicts)
	}
	var got []string
	for _, w := range conflicts[0].Writes {
		got = append(got, string(w.Value)+" by "+w.Origin().String()[:6])
	}
	want := []string{"village C by " + drLi.id.String()[:6], "village B by " + drWang.id.String()[:6]}
	if !slices.Equal(got, want) {
		t.Errorf("conflict writes = %q, want %q", got, want)
	}

	// The township's data officer phones the family: it is village B. The
	// resolution is an ordinary edit made after seeing the conflict.
	township.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldResidency: "village B"})
	syncUp(t, drLi, township)
	syncUp(t, drWang, township)
	assertSameRecord(t, person, township, drWang, drLi)
	for _, n := range []*node{township, drWang, drLi} {
		if c := n.record(person).Conflicts(); len(c) != 0 {
			t.Errorf("%s: conflicts after resolution = %v, want none", n.name, c)
		}
		if got, want := n.value(person, fieldResidency), "village B"; got != want {
			t.Errorf("%s: residency = %q, want %q", n.name, got, want)
		}
	}
}

func TestDoctorUpdatesVitalsWhileTownshipCorrectsTheAddress(t *testing.T) {
	now := morning
	township := newNode(t, &now, "township", serverSkew)
	doctor := newNode(t, &now, "doctor", 0)
	person := recordID(2)

	township.write(person, kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{
		fieldName: "Li Na", fieldAddress: "3 Well Lane", fieldVitals: "bp 150/95",
	})
	syncUp(t, doctor, township)

	// The doctor records new vitals at the visit; meanwhile the township
	// fixes a typo in the address. Neither has seen the other's edit.
	now += hour
	doctor.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldVitals: "bp 138/88"})
	township.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldAddress: "8 Well Lane"})

	now += 6 * hour
	syncUp(t, doctor, township)
	assertSameRecord(t, person, township, doctor)

	rec := doctor.record(person)
	if got := rec.Conflicts(); len(got) != 0 {
		t.Errorf("conflicts = %v, want none: different fields", got)
	}
	if got, want := doctor.value(person, fieldVitals), "bp 138/88"; got != want {
		t.Errorf("vitals = %q, want %q", got, want)
	}
	if got, want := doctor.value(person, fieldAddress), "8 Well Lane"; got != want {
		t.Errorf("address = %q, want %q", got, want)
	}
}

func TestCountyDeletesAHouseholdADoctorIsVisiting(t *testing.T) {
	now := morning
	county := newNode(t, &now, "county", serverSkew)
	township := newNode(t, &now, "township", serverSkew)
	doctor := newNode(t, &now, "doctor", 0)
	household := recordID(3)

	township.write(household, kindHousehold, areaVillageA, syncengine.VersionVector{}, map[int32]string{fieldAddress: "12 River Road"})
	syncUp(t, township, county)
	syncUp(t, doctor, township)

	// The county's registry team thinks the household is a duplicate and
	// deletes it, while the doctor, offline, records a visit to it.
	now += hour
	county.delete(household)
	doctor.write(household, 0, "", syncengine.VersionVector{}, map[int32]string{fieldVisit: "visited, 4 present"})

	now += 8 * hour
	syncUp(t, doctor, township)
	syncUp(t, township, county)
	syncUp(t, doctor, township)
	assertSameRecord(t, household, county, township, doctor)

	// The household is kept, with the visit, and a conflict shows who
	// deleted it and who worked on it meanwhile.
	rec := township.record(household)
	if !rec.Exists() || rec.Deleted() {
		t.Fatalf("household exists=%v deleted=%v, want kept alive", rec.Exists(), rec.Deleted())
	}
	if got, want := township.value(household, fieldVisit), "visited, 4 present"; got != want {
		t.Errorf("visit = %q, want %q", got, want)
	}
	conflicts := rec.Conflicts()
	if len(conflicts) != 1 || conflicts[0].ID.Field != syncengine.ExistenceField {
		t.Fatalf("conflicts = %v, want one on existence", conflicts)
	}
	var deletedBy, keptBy []syncengine.ReplicaID
	for _, w := range conflicts[0].Writes {
		if w.Delete {
			deletedBy = append(deletedBy, w.Origin())
		} else {
			keptBy = append(keptBy, w.Origin())
		}
	}
	if !slices.Equal(deletedBy, []syncengine.ReplicaID{county.id}) || !slices.Equal(keptBy, []syncengine.ReplicaID{doctor.id}) {
		t.Errorf("deleted by %v, kept by %v; want county and doctor", deletedBy, keptBy)
	}

	// Having seen the visit, the county confirms the delete.
	pull(t, county, township, 0)
	county.delete(household)
	syncUp(t, township, county)
	syncUp(t, doctor, township)
	assertSameRecord(t, household, county, township, doctor)
	if rec := doctor.record(household); !rec.Deleted() || len(rec.Conflicts()) != 0 {
		t.Errorf("after confirmation: deleted=%v conflicts=%v, want deleted, none", rec.Deleted(), rec.Conflicts())
	}
}

func TestAPhoneWhoseClockIsThreeDaysFast(t *testing.T) {
	now := morning + hour // 09:00
	township := newNode(t, &now, "township", serverSkew)
	phone := newNode(t, &now, "phone", 0)
	phone.skewMS = 3 * day
	person := recordID(4)

	township.write(person, kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{fieldVitals: "bp 120/80"})
	pull(t, phone, township, 0)

	// 09:00 true time: the phone records vitals, stamped three days ahead.
	phone.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldVitals: "bp 160/100"})
	// 11:00: the township clinic re-measures, not having seen it.
	now += 2 * hour
	township.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldVitals: "bp 150/95"})

	// 12:00: the phone pushes without having corrected its clock. The
	// township refuses the change and keeps the phone's cursor before it.
	now += hour
	results := push(t, phone, township, 0)
	if got, want := outcomes(results), []syncengine.Outcome{syncengine.OutcomeClockSkew}; !slices.Equal(got, want) {
		t.Fatalf("outcomes = %v, want %v", got, want)
	}
	if got, refused := phone.cursor(township).Acked, results[0].Pos; got >= refused {
		t.Fatalf("acked = %d, want before %d: the refused change is still unsent", got, refused)
	}

	// The handshake gives the township's time; the phone re-stamps its unsent
	// change and pushes again.
	n, err := syncengine.CorrectClock(t.Context(), phone.store, phone.clock, township.cursor(phone).Received, township.wall(), phone.wall())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("re-stamped %d changes, want 1", n)
	}
	results = push(t, phone, township, 0)
	if got, want := outcomes(results), []syncengine.Outcome{syncengine.OutcomeApplied}; !slices.Equal(got, want) {
		t.Fatalf("outcomes after correction = %v, want %v", got, want)
	}
	pull(t, phone, township, 0)
	assertSameRecord(t, person, township, phone)

	// The 11:00 measurement is shown, not the phone's 09:00 one, which is
	// kept in the conflict. Uncorrected, the phone would have won for days.
	if got, want := township.value(person, fieldVitals), "bp 150/95"; got != want {
		t.Errorf("shown vitals = %q, want %q", got, want)
	}
	c := township.record(person).Conflicts()
	if len(c) != 1 || len(c[0].Writes) != 2 || string(c[0].Writes[1].Value) != "bp 160/100" {
		t.Fatalf("conflicts = %v, want the phone's value kept", c)
	}
	if got, want := c[0].Writes[1].Stamp.WallMS, morning+hour; got != want {
		t.Errorf("phone's corrected stamp = %d, want %d (09:00 true time)", got, want)
	}
	// The phone's clock now stamps in true time.
	if got := phone.clock.Now(phone.wall()).WallMS; got-now > serverSkew {
		t.Errorf("next phone stamp %d ms ahead, want corrected", got-now)
	}
}

func TestTheSameChangeArrivingViaTheTownshipAndDirectly(t *testing.T) {
	now := morning
	county := newNode(t, &now, "county", serverSkew)
	township := newNode(t, &now, "township", serverSkew)
	doctor := newNode(t, &now, "doctor", 0)
	household := recordID(5)

	doctor.write(household, kindHousehold, areaVillageA, syncengine.VersionVector{}, map[int32]string{fieldAddress: "1 Hill Road"})
	doctor.write(household, 0, "", syncengine.VersionVector{}, map[int32]string{fieldVisit: "first visit"})
	push(t, doctor, township, 0)
	push(t, township, county, 0) // relayed
	logLen := county.store.Len()
	before := county.record(household)

	// At the county training day the doctor's phone syncs with the county
	// directly: both changes are recognised by their dots and skipped.
	results := push(t, doctor, county, 1)
	want := []syncengine.Outcome{syncengine.OutcomeDuplicate, syncengine.OutcomeDuplicate}
	if got := outcomes(results); !slices.Equal(got, want) {
		t.Errorf("outcomes = %v, want %v", got, want)
	}
	if got := county.store.Len(); got != logLen {
		t.Errorf("county log length = %d, want %d: nothing stored twice", got, logLen)
	}
	if county.record(household).Digest() != before.Digest() {
		t.Errorf("county state changed on duplicates")
	}
	assertSameRecord(t, household, county, township, doctor)
}

func TestAResolutionArrivingBeforeALateConcurrentChange(t *testing.T) {
	now := morning
	county := newNode(t, &now, "county", serverSkew)
	township := newNode(t, &now, "township", serverSkew)
	drWang := newNode(t, &now, "dr-wang", 0)
	drLi := newNode(t, &now, "dr-li", 0)
	person := recordID(6)

	township.write(person, kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{fieldResidency: "village A"})
	syncUp(t, drWang, township)
	syncUp(t, drLi, township)
	now += hour
	drWang.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldResidency: "village B"})
	drLi.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldResidency: "village C"})
	push(t, drWang, township, 0)
	push(t, drLi, township, 0)
	township.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldResidency: "village B"})

	// The county gets the township's own records, the resolution among them,
	// by a file export, before either doctor's upload reaches it.
	onlyTownship := func(c *syncengine.Change) bool { return c.Origin == township.id }
	b, err := syncengine.NextBatch(t.Context(), township.store, township.id, 0, syncengine.SendOptions{Filter: onlyTownship})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syncengine.ReceiveBatch(t.Context(), county.store, b, syncengine.ReceiveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := county.value(person, fieldResidency), "village B"; got != want {
		t.Fatalf("county residency = %q, want %q", got, want)
	}

	// Then the doctors' phones sync with the county directly, Dr Li's last.
	push(t, drWang, county, 0)
	push(t, drLi, county, 0)
	rec := county.record(person)
	if c := rec.Conflicts(); len(c) != 0 {
		t.Errorf("county conflicts = %v, want none: the resolution covers both edits", c)
	}
	if got, want := county.value(person, fieldResidency), "village B"; got != want {
		t.Errorf("county residency = %q, want %q", got, want)
	}
	assertSameRecord(t, person, county, township)
}

func TestAChangeWithAFieldNumberThisBuildDoesNotKnow(t *testing.T) {
	now := morning
	county := newNode(t, &now, "county", serverSkew)
	township := newNode(t, &now, "township", serverSkew)
	newApp := newNode(t, &now, "new-app", 0)
	oldApp := newNode(t, &now, "old-app", 0)
	person := recordID(7)
	const fieldFromTheFuture int32 = 1042
	// A length-delimited submessage, as protobuf would encode it.
	future := string([]byte{0x0a, 0x03, 'a', 'b', 'c', 0x10, 0x96, 0x01, 0x00, 0xff})

	newApp.write(person, kindPerson, areaVillageA, syncengine.VersionVector{}, map[int32]string{
		fieldName: "Wang Fang", fieldFromTheFuture: future,
	})
	syncUp(t, newApp, township)
	syncUp(t, township, county)
	syncUp(t, oldApp, township)

	// The old app edits a field it knows; the unknown one must survive.
	oldApp.write(person, 0, "", syncengine.VersionVector{}, map[int32]string{fieldName: "Wang Fang (Fangfang)"})
	syncUp(t, oldApp, township)
	syncUp(t, township, county)
	syncUp(t, newApp, township)
	assertSameRecord(t, person, county, township, newApp, oldApp)

	for _, n := range []*node{county, township, newApp, oldApp} {
		got, ok := n.record(person).Value(fieldFromTheFuture)
		if !ok || !bytes.Equal(got, []byte(future)) {
			t.Errorf("%s: field %d = %x, %v; want %x kept byte for byte", n.name, fieldFromTheFuture, got, ok, future)
		}
	}
}
