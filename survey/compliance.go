package survey

import (
	"strings"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// ClinicItem is one facility item of a clinic audit's checklist, judged as
// ClinicAuditProblems judges it.
type ClinicItem struct {
	// Item is the item's code without its "clinic." prefix, as the ledger's
	// problems name it: "room.consultation", "floor_area", "doctor", ...
	Item string
	// Answered: the audit checked the item.
	Answered bool
	// Passed: it was checked and meets the standard (Rules' thresholds).
	Passed bool
}

// ClinicItems returns the 18 facility items of audit a, in a fixed order: the
// four separate rooms, floor area, a licensed or covering doctor, the four
// pieces of equipment, essential medicines, no expired medicines, no
// supplements, no off-list medicines, water, electricity, heating and
// operating funds. A clinic meets the standard (达标) when every item is
// answered and passes.
func (r Rules) ClinicItems(a *fieldsyncv1.ClinicAudit) []ClinicItem {
	var out []ClinicItem
	add := func(item string, answered, passed bool) {
		out = append(out, ClinicItem{Item: strings.TrimPrefix(item, "clinic."), Answered: answered, Passed: answered && passed})
	}
	checks := clinicChecklist(a)
	for _, c := range checks[:4] { // the rooms
		add(c.item, c.ok != nil, c.ok != nil && *c.ok == c.good)
	}
	add("floor_area", a.FloorAreaM2 != nil, a.FloorAreaM2 != nil && *a.FloorAreaM2 >= r.MinFloorAreaM2)
	lic := a.LicensedDoctorPresent
	covered := a.GetCoveringArrangement() != fieldsyncv1.CoveringArrangement_COVERING_ARRANGEMENT_UNSPECIFIED && a.GetCoveringDoctorName() != ""
	add("doctor", lic != nil, lic != nil && (*lic || covered))
	for _, c := range checks[4:8] { // the equipment
		add(c.item, c.ok != nil, c.ok != nil && *c.ok == c.good)
	}
	kinds := a.EssentialDrugKinds
	add("drugs.essential_kinds", kinds != nil, kinds != nil && *kinds >= r.MinEssentialDrugKinds)
	for _, c := range checks[8:] { // medicines found, running
		add(c.item, c.ok != nil, c.ok != nil && *c.ok == c.good)
	}
	return out
}
