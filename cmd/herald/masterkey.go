package main

import (
	"context"
	"fmt"
	"io"

	"github.com/herald-notify/herald/platform/cli"
	"github.com/herald-notify/herald/platform/masterkey"
)

// runMasterKey is herald masterkey init --file F: a new master key (32 random bytes, base64)
// for a region keyring (user_keys.master_keys), written once with mode 0600; an existing file
// is checked and kept, never overwritten (it may wrap every user's data key).
func runMasterKey(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		return cli.UsageError("usage: herald masterkey init --file FILE")
	}
	fs := cli.NewFlags("masterkey init", stderr)
	file := fs.String("file", "", "the master key file to create (kept if it exists)")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	if *file == "" {
		return cli.UsageError("--file is required")
	}
	created, err := masterkey.CreateFile(*file)
	if err != nil {
		return fmt.Errorf("master key %s: %w", *file, err)
	}
	if created {
		fmt.Fprintf(stdout, "herald masterkey: created %s\n", *file)
	} else {
		fmt.Fprintf(stdout, "herald masterkey: %s exists, kept\n", *file)
	}
	return nil
}
