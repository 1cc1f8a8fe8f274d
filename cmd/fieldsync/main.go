// Command fieldsync is the operator and device command line of fieldsync.
//
//	fieldsync demo [--replica FILE] [--people N] [--seed N]
//
// demo generates a realistic village (survey/countygen), records it on a
// device replica exactly as a village doctor's phone would (one local change
// per record, through the sync engine, into SQLite), and prints the questions
// the doctor asks the phone each morning. The replica can then be read with
// the stock sqlite3 tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fieldsync:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: fieldsync COMMAND [flags]

commands:
  demo    generate a village, record it on a device replica and print the day's questions
  admin   manage a server's devices: admin device add|list|revoke

Run 'fieldsync COMMAND --help' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "admin":
		return runAdmin(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
