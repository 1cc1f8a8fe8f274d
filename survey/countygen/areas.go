package countygen

import (
	"fmt"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The county's centre, near 屏边; villages lie within areaSpread degrees of it.
const (
	centreLatitude  = 22.99
	centreLongitude = 103.69
	areaSpread      = 0.2
)

// registryStart is when the generated registry began to be entered (建档立卡
// records were digitised from 2016).
var registryStart = time.Date(2016, 1, 1, 0, 0, 0, 0, cst)

// buildAreas builds the county, its townships and villages with their names and
// codes, the county inspectors and the township staff. Village doctors,
// clinics and households are built per village by buildVillage.
func (g *Generator) buildAreas() {
	x := newRNG(g.cfg.Seed, streamCounty)
	names := &placeNames{x: x, used: map[string]bool{}}
	c := &County{Code: g.cfg.CountyCode + "000000", Name: g.cfg.CountyName}
	towns := (g.cfg.Townships*2 + 4) / 5 // about two in five are towns (镇)
	index := 0
	for i := range g.cfg.Townships {
		code, suffix := 100+i, "镇"
		if i >= towns {
			code, suffix = 200+i-towns, "乡"
		}
		t := &Township{Code: fmt.Sprintf("%s%03d000", g.cfg.CountyCode, code), Name: names.next(suffix)}
		for j := range g.cfg.VillagesPerTownship {
			t.Villages = append(t.Villages, &Village{
				Index:     index,
				Code:      fmt.Sprintf("%s%03d", t.Code[:9], 201+j),
				Name:      names.next("村"),
				Township:  t,
				Latitude:  centreLatitude + x.uniform(-areaSpread, areaSpread),
				Longitude: centreLongitude + x.uniform(-areaSpread, areaSpread),
			})
			index++
		}
		c.Townships = append(c.Townships, t)
	}
	for range min(3+g.cfg.Townships/3, 12) {
		c.Inspectors = append(c.Inspectors, g.staff(x, c.Code, fieldsyncv1.WorkerRole_WORKER_ROLE_COUNTY_INSPECTOR))
	}
	for i, t := range c.Townships {
		tx := newRNG(g.cfg.Seed, streamTownship|uint64(i))
		for range tx.between(3, 5) {
			t.Staff = append(t.Staff, g.staff(tx, t.Code, fieldsyncv1.WorkerRole_WORKER_ROLE_TOWNSHIP_STAFF))
		}
	}
	g.County = c
}

// staff draws a township staff member or county inspector.
func (g *Generator) staff(x *rng, area string, role fieldsyncv1.WorkerRole) *Worker {
	created := x.timeBetween(time.Date(2018, 1, 1, 0, 0, 0, 0, cst), g.cfg.AsOf.Add(-days(400)))
	sex := fieldsyncv1.Sex_SEX_MALE
	if x.chance(0.45) {
		sex = fieldsyncv1.Sex_SEX_FEMALE
	}
	return &Worker{
		ID:       x.uuid7(created),
		AreaCode: area,
		Name:     fullName(x, sex, x.between(1965, 1998)),
		Role:     role,
	}
}

// buildDoctors draws the village's doctors and clinic. A village other than
// the first of its township has its post vacant with probability 4 %; it is
// then covered by township staff (60 %) or by the previous village's doctor.
func (g *Generator) buildDoctors(x *rng, v *Village, previous *Village) {
	created := x.timeBetween(time.Date(2018, 1, 1, 0, 0, 0, 0, cst), g.cfg.AsOf.Add(-days(400)))
	v.Clinic = &Clinic{
		ID:        x.uuid7(created),
		Name:      v.Name + "卫生室",
		Address:   groupName(1) + fmt.Sprintf("%d号", x.between(1, 30)),
		Latitude:  v.Latitude + x.uniform(-0.002, 0.002),
		Longitude: v.Longitude + x.uniform(-0.002, 0.002),
	}
	n := 1 + x.weighted([]float64{41, 55})
	if previous != nil && x.chance(0.04) {
		n = 0
		if x.chance(0.6) {
			v.Cover = pick(x, v.Township.Staff)
		} else {
			v.Cover = previous.Serving()[0]
		}
	}
	for k := range n {
		issued := x.timeBetween(g.cfg.AsOf.AddDate(-5, 0, 60), g.cfg.AsOf.AddDate(0, -1, 0))
		sex := fieldsyncv1.Sex_SEX_MALE
		if x.chance(0.3) {
			sex = fieldsyncv1.Sex_SEX_FEMALE
		}
		v.Doctors = append(v.Doctors, &Worker{
			ID:             x.uuid7(created.Add(time.Duration(k+1) * time.Minute)),
			AreaCode:       v.Code,
			Name:           fullName(x, sex, x.between(1962, 1996)),
			Role:           fieldsyncv1.WorkerRole_WORKER_ROLE_VILLAGE_DOCTOR,
			Licence:        fmt.Sprintf("%s%d%05d", g.cfg.CountyCode, issued.Year(), (v.Index*2+k+1)%100000),
			LicenceExpires: dayOf(issued.AddDate(5, 0, 0)),
			ClinicID:       v.Clinic.ID,
		})
	}
}
