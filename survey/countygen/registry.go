package countygen

import (
	"fmt"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

const (
	male   = fieldsyncv1.Sex_SEX_MALE
	female = fieldsyncv1.Sex_SEX_FEMALE
)

// householdStatusWeights are the shares of 脱贫户, 边缘易致贫户, 监测户 and ordinary
// households, in the order of the HouseholdStatus values 1 to 4.
var householdStatusWeights = []float64{40, 5, 3, 52}

// buildVillage builds the village's doctors, clinic, households and people: a
// fixed number of households, or households until quota people when quota is
// positive.
func (g *Generator) buildVillage(v, previous *Village, ids *idNumbers, quota int) {
	x := newRNG(g.cfg.Seed, streamRegistry|uint64(v.Index))
	g.buildDoctors(x, v, previous)
	people := 0
	for i := 0; ; i++ {
		if quota > 0 && people >= quota || quota <= 0 && i >= g.cfg.HouseholdsPerVillage {
			return
		}
		h := g.household(x, v, i, ids)
		v.Households = append(v.Households, h)
		people += len(h.Members)
	}
}

// household draws household i of the village with its members.
func (g *Generator) household(x *rng, v *Village, i int, ids *idNumbers) *Household {
	created := x.timeBetween(registryStart, g.cfg.AsOf.Add(-days(400)))
	h := &Household{
		ID:        x.uuid7(created),
		AreaCode:  v.Code,
		Address:   fmt.Sprintf("%s%d号", groupName(1+i/30), i+1),
		Status:    fieldsyncv1.HouseholdStatus(1 + x.weighted(householdStatusWeights)),
		Latitude:  v.Latitude + x.uniform(-0.01, 0.01),
		Longitude: v.Longitude + x.uniform(-0.01, 0.01),
		Created:   created,
	}
	for _, d := range compose(x) {
		h.Members = append(h.Members, g.person(x, v, h, d, ids))
	}
	return h
}

// draft is a member before its dates and health are drawn.
type draft struct {
	rel     Relation
	sex     fieldsyncv1.Sex
	age     int
	surname string
	shared  string // generation character of the given name, or ""
}

// compose draws the members of a household, head first: a nuclear family
// (50 %), three generations (22 %), an elderly head (16 %) or a nuclear family
// with a parent of the head (12 %).
func compose(x *rng) []draft {
	switch x.weighted([]float64{50, 22, 16, 12}) {
	case 0:
		return nuclear(x, int(x.normal(42, 9, 22, 62)))
	case 1:
		return threeGenerations(x)
	case 2:
		return elderly(x)
	}
	ds := nuclear(x, int(x.normal(42, 7, 30, 56)))
	parent := draft{rel: RelationParent, sex: female, age: min(ds[0].age+x.between(22, 34), 96), surname: surname(x)}
	if x.chance(0.3) {
		parent.sex = male
		parent.surname = ds[0].surname // a woman head's father shares her surname too
	}
	return append(ds, parent)
}

// couple draws a head of age and, with probability pSpouse, a spouse. The head
// is a man with probability pMale; a woman head has a spouse only a fifth as
// often (widowed, divorced or married-in husband away).
func couple(x *rng, age int, pMale, pSpouse float64) []draft {
	head := draft{rel: RelationHead, sex: male, age: age, surname: surname(x)}
	if !x.chance(pMale) {
		head.sex, pSpouse = female, pSpouse/5
	}
	ds := []draft{head}
	if x.chance(pSpouse) {
		sex := female
		if head.sex == female {
			sex = male
		}
		ds = append(ds, draft{rel: RelationSpouse, sex: sex, age: max(18, age+int(x.normal(-2, 3, -10, 10))), surname: surname(x)})
	}
	return ds
}

// fatherSurname is the surname children of the couple take.
func fatherSurname(x *rng, ds []draft) string {
	for _, d := range ds {
		if d.sex == male && (d.rel == RelationHead || d.rel == RelationSpouse) {
			return d.surname
		}
	}
	return surname(x) // the children's father is not in the household
}

// youngestParent returns the age of the younger of the couple.
func youngestParent(ds []draft) int {
	a := ds[0].age
	for _, d := range ds {
		if d.rel == RelationSpouse {
			a = min(a, d.age)
		}
	}
	return a
}

// children draws n children of a parent of age parentAge: the first born when
// the parent was 19 to 30, then every 1 to 5 years; children over 35 have left
// and children not yet born are dropped. Sons share a generation character
// with probability one half.
func children(x *rng, rel Relation, parentAge, n int, sur string) []draft {
	var ds []draft
	shared := ""
	age := parentAge - x.between(19, 30)
	for k := 0; k < n && age >= 0; k++ {
		d := draft{rel: rel, sex: male, age: age, surname: sur}
		if x.chance(0.48) {
			d.sex = female
		}
		if d.sex == male {
			if shared == "" && x.chance(0.5) {
				shared = pick(x, generationChars)
			}
			d.shared = shared
		}
		if age <= 35 {
			ds = append(ds, d)
		}
		age -= x.between(1, 5)
	}
	return ds
}

var childCountWeights = []float64{8, 25, 40, 20, 7} // 0 to 4 children

// nuclear draws a couple of about headAge with their children.
func nuclear(x *rng, headAge int) []draft {
	ds := couple(x, headAge, 0.9, 0.92)
	n := x.weighted(childCountWeights)
	return append(ds, children(x, RelationChild, youngestParent(ds), n, fatherSurname(x, ds))...)
}

// threeGenerations draws an older couple, their married son with his wife and
// children, and sometimes the son's unmarried younger sibling.
func threeGenerations(x *rng) []draft {
	ds := couple(x, x.between(52, 78), 0.85, 0.75)
	sur := fatherSurname(x, ds)
	son := draft{rel: RelationChild, sex: male, age: max(20, youngestParent(ds)-x.between(22, 32)), surname: sur}
	ds = append(ds, son)
	mother := son.age
	if x.chance(0.85) {
		wife := draft{rel: RelationChildInLaw, sex: female, age: max(19, son.age-x.between(0, 5)), surname: surname(x)}
		ds = append(ds, wife)
		mother = min(mother, wife.age)
	}
	ds = append(ds, children(x, RelationGrandchild, mother, x.weighted([]float64{15, 35, 35, 15}), sur)...)
	if age := son.age - x.between(2, 8); age >= 0 && x.chance(0.2) {
		sibling := draft{rel: RelationChild, sex: male, age: age, surname: sur}
		if x.chance(0.5) {
			sibling.sex = female
		}
		ds = append(ds, sibling)
	}
	return ds
}

// elderly draws an elderly head, sometimes with a spouse, an unmarried adult
// child or a grandchild left behind (留守儿童) while the parents work away.
func elderly(x *rng) []draft {
	ds := couple(x, x.between(60, 90), 0.65, 0.55)
	sur := fatherSurname(x, ds)
	if x.chance(0.25) {
		ds = append(ds, draft{rel: RelationChild, sex: male, age: max(18, youngestParent(ds)-x.between(22, 35)), surname: sur})
	}
	if x.chance(0.1) {
		ds = append(ds, draft{rel: RelationGrandchild, sex: male + fieldsyncv1.Sex(x.intn(2)), age: x.between(3, 15), surname: sur})
	}
	return ds
}

// person draws the person of a draft: birth date, name, ID number, residency,
// health and service-111 items.
func (g *Generator) person(x *rng, v *Village, h *Household, d draft, ids *idNumbers) *Person {
	asOf := dayOf(g.cfg.AsOf)
	birth := asOf.AddDate(-d.age, 0, -x.between(1, 364))
	created := h.Created
	if born := birth.Add(days(30)); born.After(created) {
		created = born
	}
	if created.After(g.cfg.AsOf.Add(-days(1))) {
		created = birth.Add(g.cfg.AsOf.Sub(birth) / 2)
	}
	p := &Person{
		ID:          x.uuid7(created.Add(time.Duration(x.intn(3600)) * time.Second)),
		HouseholdID: h.ID,
		AreaCode:    v.Code,
		Name:        d.surname + givenName(x, d.sex, birth.Year(), d.shared),
		Relation:    d.rel,
		Sex:         d.sex,
		BirthDate:   birth,
		Created:     created,
	}
	p.IDNumber = ids.assign(x, birth, d.sex)
	g.health(x, p)
	g.service111(x, v, h, p)
	return p
}

// digits writes v into b in decimal, zero-padded to the length of b.
func digits(b []byte, v int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// idNumbers hands out ID numbers unique in the county.
type idNumbers struct {
	prefix string         // the county's 6 digits
	used   map[int64]bool // birth date (yyyymmdd) * 1000 + sequence
}

// assign returns a new valid ID number for a person born on birth: the county
// prefix, the birth date, a sequence number odd for men and even (from 002)
// for women, and the GB 11643 check character.
func (n *idNumbers) assign(x *rng, birth time.Time, sex fieldsyncv1.Sex) string {
	date := int64(birth.Year()*10000 + int(birth.Month())*100 + birth.Day())
	parity := 2
	if sex == male {
		parity = 1
	}
	start := x.intn(499)
	for k := range 499 {
		seq := 2*((start+k)%499) + parity
		key := date*1000 + int64(seq)
		if n.used[key] {
			continue
		}
		n.used[key] = true
		var b [18]byte
		copy(b[:6], n.prefix)
		digits(b[6:14], date)
		digits(b[14:17], int64(seq))
		check, err := survey.IDCheckDigit(string(b[:17]))
		if err != nil {
			panic("countygen: " + err.Error()) // the 17 characters are digits by construction
		}
		b[17] = check
		return string(b[:])
	}
	panic(fmt.Sprintf("countygen: more than 499 people of one sex born on %s", birth.Format(time.DateOnly)))
}
