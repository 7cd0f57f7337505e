package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"

	"github.com/jackc/pglogrepl"

	"tandem/shared/ident"
	"tandem/shared/pipeline"
)

// opsEnv loads the configuration and connects to PostgreSQL and DynamoDB as the handlers
// do, for verify, resnapshot and deadletters. Its logger only reports warnings, as text
// on stderr: the commands say what they do themselves. ok false: the error is printed.
func opsEnv(ctx context.Context, name string, stderr io.Writer) (env *pipeline.Env, ok bool) {
	env, err := pipeline.NewEnv(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: %s\n", programName, name, opsRedact(err.Error()))
		return nil, false
	}
	env.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return env, true
}

// opsPassword matches the password of a URL's user information.
var opsPassword = regexp.MustCompile(`(://[^:/@\s]*):[^@\s]*@`)

// opsRedact hides passwords in connection URLs an error may quote.
func opsRedact(s string) string { return opsPassword.ReplaceAllString(s, "$1:xxxxx@") }

// opsTables reads table arguments in the configuration's form (schema.table, or table
// for the public schema; see package ident) into canonical names.
func opsTables(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		id, err := ident.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("table %q: %v", a, err)
		}
		out = append(out, id.String())
	}
	return out, nil
}

// lsnText prints an LSN as PostgreSQL does (0/1D84268), the one form used everywhere.
func lsnText(lsn uint64) string { return pglogrepl.LSN(lsn).String() }

// opsParse is parseFlags for commands with positional arguments, which may come before,
// between or after the flags (tandem resnapshot orders --where "id < 10"), as a user
// writes them; "--" ends the flags.
func opsParse(fs *flag.FlagSet, config *string, args []string, stdout io.Writer) (positional []string, code int, done bool) {
	if code, done := parseFlags(fs, config, args, stdout); done {
		return nil, code, true
	}
	rest := fs.Args()
	for len(rest) > 0 {
		if rest[0] == "--" {
			positional = append(positional, rest[1:]...)
			break
		}
		positional = append(positional, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return nil, exitUsage, true
		}
		rest = fs.Args()
	}
	if *config != "" {
		os.Setenv("TANDEM_CONFIG_FILE", *config)
	}
	return positional, exitOK, false
}
