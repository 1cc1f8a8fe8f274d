package countygen

import fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"

// Registry helpers that only the tests need: the commands read a county
// through Generator.Each, so these stay out of the package proper (make lint's
// deadcode check).

// Has reports whether the person has the disease.
func (p *Person) Has(d fieldsyncv1.ChronicDisease) bool {
	for _, c := range p.Conditions {
		if c.Disease == d {
			return true
		}
	}
	return false
}

// People returns the number of people in the county, the deceased included.
func (c *County) People() int {
	n := 0
	c.EachPerson(func(*Person) { n++ })
	return n
}

// EachPerson calls fn for every person in code, household and member order.
func (c *County) EachPerson(fn func(*Person)) {
	for _, t := range c.Townships {
		for _, v := range t.Villages {
			for _, h := range v.Households {
				for _, p := range h.Members {
					fn(p)
				}
			}
		}
	}
}
