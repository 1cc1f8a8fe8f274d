package sqlitestore

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Errors returned by Open. Each is wrapped with the file's path and what to do.
var (
	// ErrNotReplica is returned when the file exists but is not an SQLite
	// database (or its first page is damaged).
	ErrNotReplica = errors.New("not a fieldsync replica")
	// ErrCorrupt is returned when the file is an SQLite database that fails its
	// integrity check (for example a truncated copy).
	ErrCorrupt = errors.New("replica file is damaged")
	// ErrNewerSchema is returned when the file was written by a newer version of
	// fieldsync than this one.
	ErrNewerSchema = errors.New("replica written by a newer version")
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// sqliteHeader starts every SQLite 3 database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// dsn returns the driver's data source name for path with the replica's
// settings: WAL, synchronous=FULL (a visit shown as saved survives power loss),
// a busy timeout, foreign keys, and BEGIN IMMEDIATE for write transactions.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_busy_timeout", "5000")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Add("_pragma", "secure_delete(FAST)") // a secret overwritten (encrypted at last) leaves no copy in the page
	q.Add("_pragma", "journal_size_limit(67108864)")
	q.Add("_pragma", "cache_size(-16384)") // 16 MiB: a bootstrap batch stays in memory until its commit
	if readOnly {
		q.Set("_query_only", "1")
		q.Set("_txlock", "deferred")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// checkFile creates a new replica's file, private (0600), makes an existing
// one private if it is not, and refuses a file that exists but is not an
// SQLite database, so that Open never mistakes a damaged or foreign file for
// an empty replica and overwrites it. A missing or empty file is fine: Open
// creates the replica.
func checkFile(name string) error {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		// A new replica: the file is made private (0600) before SQLite
		// opens it, and SQLite gives its WAL and shared-memory files the
		// database file's mode. It holds people's health records.
		nf, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create replica %s: %w", name, err)
		}
		if nf != nil {
			return nf.Close()
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("open replica %s: %w", name, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		// A replica made by an older version, readable by others: made
		// private, with its WAL and shared-memory files if they are there.
		for _, p := range []string{name, name + "-wal", name + "-shm"} {
			if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("make replica %s private: %w", p, err)
			}
		}
	}
	head := make([]byte, len(sqliteHeader))
	n, err := io.ReadFull(f, head)
	switch {
	case n == 0 && (err == io.EOF):
		return nil
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("read replica %s: %w", name, err)
	case !bytes.Equal(head[:n], sqliteHeader):
		return fmt.Errorf("%s: %w: the file is not an SQLite database; move it aside and restore the replica from a backup, or enrol the device again", name, ErrNotReplica)
	}
	return nil
}

// integrityCheck runs PRAGMA quick_check, or integrity_check when full, and
// names the file when it fails.
func integrityCheck(ctx context.Context, db *sql.DB, name string, full bool) error {
	pragma := "PRAGMA quick_check"
	if full {
		pragma = "PRAGMA integrity_check"
	}
	rows, err := db.QueryContext(ctx, pragma)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("%s: %w (%v): move it aside and restore from a backup, or enrol the device again", name, ErrCorrupt, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("%s: %w (%v): move it aside and restore from a backup, or enrol the device again", name, ErrCorrupt, err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w (%v): move it aside and restore from a backup, or enrol the device again", name, ErrCorrupt, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %w: %s: move it aside and restore from a backup, or enrol the device again", name, ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}

// migration is one numbered schema step, from migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d next", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies, each in its own transaction together with the version bump,
// every migration newer than the file's PRAGMA user_version. A file from a
// newer schema is refused.
func migrate(ctx context.Context, db *sql.DB, name string) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	var have int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		return fmt.Errorf("%s: read schema version: %w", name, err)
	}
	if have > len(ms) {
		return fmt.Errorf("%s: %w: schema version %d, this app knows up to %d: update the app before opening this replica", name, ErrNewerSchema, have, len(ms))
	}
	for _, m := range ms[have:] {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("%s: apply migration %s: %w", name, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
			tx.Rollback()
			return fmt.Errorf("%s: apply migration %s: %w", name, m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("%s: apply migration %s: %w", name, m.name, err)
		}
	}
	return nil
}
