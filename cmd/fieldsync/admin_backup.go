package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

const backupUsage = `usage: fieldsync admin backup --out FILE

backup copies the server's whole store, as of one moment, into FILE while the
server keeps serving (bbolt's online backup, streamed over the admin
connection). FILE is written beside itself first and replaces an older copy
only once it is whole and its SHA-256 matches the server's; it is readable by
its owner only, and holds people's health records: keep it as safely as the
server. The copy is recorded in the server's audit trail.

To restore: stop the server, copy FILE over DATA/server.db, run
'fieldsyncd recover --data DATA', start the server.
` + "\nEvery admin command also takes --server, --token-file and --ca (see 'fieldsync admin --help').\n"

// runAdminBackup is 'fieldsync admin backup'.
func runAdminBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var a adminFlags
	fs := flag.NewFlagSet("admin backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, backupUsage, "\nflags:\n"); fs.PrintDefaults() }
	a.register(fs)
	out := fs.String("out", "", "`file` to write the copy to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("admin backup: unexpected argument %q: want only flags", fs.Arg(0))
	}
	if *out == "" {
		return errors.New("admin backup: --out FILE is required")
	}
	return adminCall(ctx, a, func(ctx context.Context, c fieldsyncv1.AdminServiceClient) error {
		n, err := receiveBackup(ctx, c, *out)
		if err != nil {
			return fmt.Errorf("admin backup: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s: %d bytes, the server's store as of now\n", *out, n)
		return nil
	})
}

// receiveBackup writes the server's copy into a temporary file beside path,
// checks its size and SHA-256, syncs it and renames it over path.
func receiveBackup(ctx context.Context, c fieldsyncv1.AdminServiceClient, path string) (int64, error) {
	stream, err := c.Backup(ctx, &fieldsyncv1.BackupRequest{})
	if err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return 0, err
	}
	sum := sha256.New()
	var n, size int64
	for first := true; ; first = false {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return 0, errors.New("the server ended the copy without its checksum: try again")
		}
		if err != nil {
			return 0, err
		}
		if first {
			size = chunk.GetSize()
		}
		if want := chunk.GetSha256(); len(want) > 0 {
			if n != size || !bytes.Equal(sum.Sum(nil), want) {
				return 0, fmt.Errorf("the copy received (%d bytes) is not the one the server sent (%d bytes): try again", n, size)
			}
			break
		}
		sum.Write(chunk.GetData())
		if _, err := f.Write(chunk.GetData()); err != nil {
			return 0, err
		}
		n += int64(len(chunk.GetData()))
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return n, nil
}
