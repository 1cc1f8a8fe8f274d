package fieldsync_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/fieldsync/fieldsync/client-sdk/fieldsync"
	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/survey"
	"github.com/fieldsync/fieldsync/survey/countygen"
)

// A village doctor's day: record a household and its visit offline, then
// enrol the phone with the township server and sync. The server runs here on
// 127.0.0.1, where plaintext is allowed; a phone in the field connects to its
// township with WithTLS.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "fieldsync-example")
	check(err)
	defer os.RemoveAll(dir)

	// A household and its visit, made by the county generator (survey.Validate
	// passes for every record it makes).
	g, err := countygen.New(countygen.Config{
		Townships: 1, VillagesPerTownship: 1, HouseholdsPerVillage: 3, Seed: 11,
		AsOf: time.Date(2025, 10, 1, 0, 0, 0, 0, survey.ChinaTime),
	})
	check(err)
	village := g.County.Villages()[0]
	var household *fieldsyncv1.Household
	var visit *fieldsyncv1.HouseholdVisit
	check(g.EachInVillage(village, func(r *fieldsyncv1.Record) error {
		if h := r.GetHousehold(); h != nil && household == nil {
			household = h
		}
		if v := r.GetHouseholdVisit(); v != nil && visit == nil && v.GetHouseholdId() == household.GetId() {
			visit = v
		}
		return nil
	}))

	// The phone's replica, offline.
	phone, err := fieldsync.Open(ctx, filepath.Join(dir, "phone.db"))
	check(err)
	defer phone.Close()
	check(phone.SaveHousehold(ctx, household))
	check(phone.SaveHouseholdVisit(ctx, visit))
	households, err := phone.Households(ctx)
	check(err)
	visits, err := phone.HouseholdVisits(ctx)
	check(err)
	fmt.Printf("%d household, %d visit, in village %s\n", len(households), len(visits), households[0].GetAreaCode())
	fmt.Println("visit is of the household:", visits[0].GetHouseholdId() == households[0].GetId())
	st, err := phone.Status(ctx)
	check(err)
	fmt.Print("pending before sync: ", st.Pending)
	for _, p := range st.PendingChanges {
		fmt.Print(" ", p.Kind)
	}
	fmt.Println()
	// The visit raised its problems in the same transaction.
	problems, err := phone.Problems(ctx)
	check(err)
	for _, p := range problems {
		fmt.Printf("problem raised: %s %s (%s)\n", p.GetItem(), p.GetSeverity(), p.GetStatus())
	}

	// The township server, on a free port of this machine.
	srv, err := server.New(server.Config{DataDir: filepath.Join(dir, "server"), IDHashKey: []byte("county key")})
	check(err)
	gs := grpc.NewServer(srv.GRPCOptions()...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	go gs.Serve(lis)
	defer func() {
		gs.GracefulStop()
		srv.Close()
	}()

	// Enrol with a one-time code from the operator, and sync.
	code, _, err := srv.IssueEnrolmentCode([]string{village.Code}, "village doctor's phone", time.Hour)
	check(err)
	check(phone.Enroll(ctx, lis.Addr().String(), code))
	err = phone.Sync(ctx, fieldsync.OnProgress(func(p fieldsync.Progress) {
		if p.Phase == fieldsync.PhaseDone {
			fmt.Printf("sync done: attempt %d, %d pushed, %d rejected\n", p.Attempt, p.Pushed, p.Rejected)
		}
	}))
	check(err)
	st, err = phone.Status(ctx)
	check(err)
	fmt.Println("pending after sync:", st.Pending, "last error:", fmt.Sprintf("%q", st.LastError), "synced:", !st.LastSuccess.IsZero())

	// Output:
	// 1 household, 1 visit, in village 532523100201
	// visit is of the household: true
	// pending before sync: 3 household household_visit problem
	// problem raised: contract.not_served SEVERITY_NORMAL (PROBLEM_STATUS_OPEN)
	// sync done: attempt 1, 3 pushed, 0 rejected
	// pending after sync: 0 last error: "" synced: true
}

func ExampleParseKind() {
	for _, name := range []string{"household", "Visit", "follow-ups", "audit"} {
		kind, err := fieldsync.ParseKind(name)
		fmt.Println(kind, err)
	}
	_, err := fieldsync.ParseKind("house")
	fmt.Println(err)
	// Output:
	// RECORD_KIND_HOUSEHOLD <nil>
	// RECORD_KIND_HOUSEHOLD_VISIT <nil>
	// RECORD_KIND_FOLLOW_UP <nil>
	// RECORD_KIND_CLINIC_AUDIT <nil>
	// fieldsync: unknown record kind "house": use one of household, person (people), clinic, worker, household_visit (visit), clinic_audit (audit), follow_up (followup), problem, risk_flag (flag)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
