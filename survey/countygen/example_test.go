package countygen_test

import (
	"fmt"
	"log"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey/countygen"
)

// A village of about 300 people: stream its records and count them by kind.
func Example() {
	g, err := countygen.New(countygen.Config{People: 300, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	v := g.County.Villages()[0]
	fmt.Println(v.Code, v.Township.Name, v.Name)

	var households, people, visits int
	err = g.Each(func(r *fieldsyncv1.Record) error {
		switch r.Body.(type) {
		case *fieldsyncv1.Record_Household:
			households++
		case *fieldsyncv1.Record_Person:
			people++
		case *fieldsyncv1.Record_HouseholdVisit:
			visits++
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("households:", households, "person records:", people, "visits:", visits)

	// The clear ID number stays on the generator side; records carry it masked.
	head := v.Households[0].Members[0]
	fmt.Println(head.Name, head.Relation == countygen.RelationHead, len(head.IDNumber))
	// Output:
	// 532523100201 鸡坪镇 白沙湾村
	// households: 78 person records: 304 visits: 84
	// 郭波超 true 18
}

// A county sized by people, streamed: the surveys are made village by village
// and never held in memory all at once, so the same code serves a county of
// 200,000.
func ExampleGenerator_Each() {
	g, err := countygen.New(countygen.Config{People: 20000})
	if err != nil {
		log.Fatal(err)
	}
	people, followUps := 0, 0
	err = g.Each(func(r *fieldsyncv1.Record) error {
		switch {
		case r.GetPerson() != nil:
			people++
		case r.GetFollowUp() != nil:
			followUps++
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(g.Config().Townships, "townships,", len(g.County.Villages()), "villages,", people, "people")
	fmt.Println(followUps > 10000)
	// Output:
	// 5 townships, 60 villages, 20111 people
	// true
}
