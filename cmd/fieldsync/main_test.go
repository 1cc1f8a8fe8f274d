package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/store/sqlitestore"
	"github.com/fieldsync/fieldsync/syncengine"
)

func TestDemoRecordsAVillage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "replica.db")
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"demo", "--replica", path, "--seed", "3"}, &out, &errOut); err != nil {
		t.Fatalf("demo: %v; stderr: %s", err, errOut.String())
	}
	m := regexp.MustCompile(`(\d+) changes in the log: the visits and audits raised (\d+) problems and (\d+) return-to-poverty risk flags`).FindStringSubmatch(out.String())
	due := regexp.MustCompile(`follow-ups due: (\d+)`).FindStringSubmatch(out.String())
	if m == nil || due == nil || !strings.Contains(out.String(), "open problems:") {
		t.Fatalf("demo printed:\n%s", out.String())
	}
	if m[2] == "0" || m[3] == "0" || due[1] == "0" {
		t.Errorf("the demo village raised %s problems and %s flags, and %s patients are due: want some of each\n%s", m[2], m[3], due[1], out.String())
	}
	s, err := sqlitestore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var logged int
	err = s.View(t.Context(), func(tx syncengine.ReadTx) error {
		es, err := tx.ReadLog(t.Context(), 0, 100000)
		logged = len(es)
		return err
	})
	if err != nil || m[1] != strconv.Itoa(logged) {
		t.Errorf("the outbox holds %d changes, %v; demo said it recorded %s", logged, err, m[1])
	}
	// A second run refuses to touch the existing replica.
	if err := run(t.Context(), []string{"demo", "--replica", path}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("demo over an existing replica: %v, want a refusal", err)
	}
}

func TestHelpAndUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"--help"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "demo") {
		t.Errorf("--help: %v, printed %q", err, out.String())
	}
	if err := run(t.Context(), []string{"frobnicate"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("unknown command: %v, want an error naming it", err)
	}
}
