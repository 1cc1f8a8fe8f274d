package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/server/servertest"
	"github.com/fieldsync/fieldsync/survey/countygen"
	"github.com/fieldsync/fieldsync/syncengine"
	"github.com/fieldsync/fieldsync/wire"
)

// The operator moves a household and its people to another village with
// 'admin move', in text and JSON, and is told why a move is refused.
func TestAdminMove(t *testing.T) {
	dir := t.TempDir()
	srv, addr := servertest.Start(t, server.Config{DataDir: dir})
	g, err := countygen.New(countygen.Config{Townships: 1, VillagesPerTownship: 2, HouseholdsPerVillage: 2, Seed: 3, AsOf: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	vs := g.County.Villages()
	var households []string
	people := map[string]int{}
	err = g.EachInVillage(vs[0], func(r *fieldsyncv1.Record) error {
		switch {
		case r.GetHousehold() != nil:
			households = append(households, r.GetHousehold().GetId())
		case r.GetPerson() != nil:
			people[r.GetPerson().GetHouseholdId()]++
		default:
			return nil
		}
		_, err := srv.Save(context.Background(), r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := []string{"--server", addr, "--token-file", filepath.Join(dir, server.AdminTokenFile)}
	cli := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		full := append(append([]string{"admin", "move"}, conn...), args...)
		err := run(t.Context(), full, &out, &errOut)
		return out.String() + errOut.String(), err
	}

	out, err := cli(households[0], "--to", vs[1].Code)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, out)
	}
	if !strings.Contains(out, "moved household "+households[0]) || !strings.Contains(out, vs[1].Code) || strings.Count(out, "change ") != 1+people[households[0]] {
		t.Errorf("move printed:\n%s", out)
	}
	id, _ := wire.RecordID(households[0])
	if got := serverArea(t, srv, id); got != vs[1].Code {
		t.Errorf("household in %s after the move, want %s", got, vs[1].Code)
	}

	out, err = cli("--json", households[1], "--to", vs[1].Code)
	var j adminMoveJSON
	if err != nil || json.Unmarshal([]byte(out), &j) != nil {
		t.Fatalf("move --json: %v\n%s", err, out)
	}
	if j.Household != households[1] || j.To != vs[1].Code || len(j.Records) != 1+people[households[1]] || len(j.Changes) != len(j.Records) || j.Records[0] != households[1] {
		t.Errorf("move --json = %+v", j)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{households[0], "--to", vs[1].Code}, "already"},
		{[]string{"0196aaaa-0000-7000-8000-000000000001", "--to", vs[0].Code}, "NotFound"},
		{[]string{households[0], "--to", vs[0].Code[:9] + "000"}, "village"},
		{[]string{"not-a-uuid", "--to", vs[0].Code}, "UUID"},
		{[]string{households[0]}, "--to"},
	} {
		if out, err := cli(tt.args...); err == nil || !strings.Contains(err.Error()+out, tt.want) {
			t.Errorf("move %v: %v\n%s\nwant an error saying %q", tt.args, err, out, tt.want)
		}
	}
}

func serverArea(t *testing.T, srv *server.Server, id syncengine.RecordID) string {
	t.Helper()
	var area string
	err := srv.Store().View(t.Context(), func(tx syncengine.ReadTx) error {
		r, err := tx.Record(t.Context(), id)
		area = r.Area()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return area
}
