package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/survey"
)

// TestDeviceDailyQueries records a whole village and asks the day's
// questions; the answers match the SDK's.
func TestDeviceDailyQueries(t *testing.T) {
	srv := startDeviceServer(t)
	v := newVillage(t)
	phone := srv.enroll(t, v.code)
	for _, k := range []fieldsyncv1.RecordKind{kindHousehold, kindVisit, kindFollowUp, kindProblem} {
		if len(v.records[k]) > 0 {
			mustCLI(t, "device", "put", "--replica", phone, "--kind", kindName(k), "--json", writeRecords(t, v.records[k]...))
		}
	}
	// Two months on, the patients followed up in the last weeks are due.
	day := v.asOf.In(survey.ChinaTime).AddDate(0, 2, 0).Format(time.DateOnly)
	dueJSON := mustCLI(t, "device", "due", "--replica", phone, "--day", day, "--json")
	unvisitedJSON := mustCLI(t, "device", "unvisited", "--replica", phone, "--campaign", "no such campaign", "--json")
	problemsJSON := mustCLI(t, "device", "problems", "--replica", phone, "--json")
	dueText := mustCLI(t, "device", "due", "--replica", phone, "--day", day)
	problemsText := mustCLI(t, "device", "problems", "--replica", phone)

	c, err := fieldsync.Open(t.Context(), phone)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dayT, _ := time.ParseInLocation(time.DateOnly, day, survey.ChinaTime)
	due, err := c.DueFollowUps(t.Context(), dayT)
	if err != nil {
		t.Fatal(err)
	}
	open, err := c.OpenProblems(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(due) == 0 || len(open) == 0 {
		t.Fatalf("the village has %d follow-ups due by %s and %d open problems; the test needs some of each", len(due), day, len(open))
	}
	if got := parseBodies(t, kindFollowUp, dueJSON); !slices.Equal(ids(t, got), ids(t, mustWrap(t, kindFollowUp, due))) {
		t.Errorf("due --json lists %d follow-ups, the SDK %d", len(got), len(due))
	}
	if got := parseBodies(t, kindHousehold, unvisitedJSON); len(got) != len(v.records[kindHousehold]) {
		t.Errorf("unvisited in an unknown campaign lists %d households, want all %d", len(got), len(v.records[kindHousehold]))
	}
	if got := parseBodies(t, kindProblem, problemsJSON); !slices.Equal(ids(t, got), ids(t, mustWrap(t, kindProblem, open))) {
		t.Errorf("problems --json lists %d, the SDK %d", len(got), len(open))
	}
	if want := plural(len(due), "follow-up") + " due by " + day; !strings.Contains(dueText, want) {
		t.Errorf("due printed:\n%s\nwant %q", dueText, want)
	}
	if want := plural(len(open), "open problem"); !strings.Contains(problemsText, want) {
		t.Errorf("problems printed:\n%s\nwant %q", problemsText, want)
	}
	if out := mustCLI(t, "device", "unvisited", "--replica", phone, "--campaign", v.campaign); !strings.Contains(out, "0 households not yet visited") {
		t.Errorf("unvisited in the generated campaign printed:\n%s", out)
	}
}

func mustWrap[T proto.Message](t *testing.T, kind fieldsyncv1.RecordKind, bodies []T) []*fieldsyncv1.Record {
	t.Helper()
	recs, err := wrapAll(kind, bodies)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
