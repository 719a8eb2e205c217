// Command apiary runs the Apiary ingestion service.
//
//	apiary serve          API + workers + embedded NATS, keyring, vector store, embedder
//	apiary api            the HTTP API only (shares NATS, queue, keys and vectors with workers)
//	apiary worker         workers and webhook dispatch only
//	apiary bench          documents/s on embedded vs distributed engines, in one run
//	apiary models pull    fetch the ONNX Runtime and embedding models ahead of time
//	apiary models list    the embedding models and which are present
//	apiary eval DIR       retrieval quality on a BEIR-format set, through the API
//	apiary token          print a new, well-formed API token (for APIARY_BOOTSTRAP_TOKEN)
//	apiary token --operator  mint a new operator token in the installation and print it once
//	apiary version        print the version
//
// Every flag is also an APIARY_* environment variable (--data-dir is
// APIARY_DATA_DIR). Secrets (APIARY_ROOT_KEY, APIARY_BOOTSTRAP_TOKEN,
// APIARY_EMBED_API_KEY) are read from the environment only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
)

const version = "0.1.0"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "apiary:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: apiary <command> [flags]

commands:
  serve     run the API, the workers and every embedded default in one process
  api       run the HTTP API only (needs --nats-url and --vectors milvus)
  worker    run the workers only (needs --nats-url and --vectors milvus)
  bench     ingest the same documents on embedded and distributed engines; report documents/s
  models    pull [--model NAME ...] [--models-dir DIR]: fetch the ONNX Runtime and embedding
            models ahead of time (images, machines offline at start); list: the models, present or not
  eval      ingest a BEIR-format set (DIR with corpus.jsonl, queries.jsonl, qrels/test.tsv)
            through the API, run its queries, report nDCG@10, MRR@10, Recall@10/100,
            documents/s and query latency; --baseline bm25 scores BM25 alongside
  healthcheck  GET --url (default http://127.0.0.1:8080/readyz); exit 0 on 200 (container health checks)
  token     print a new API token, e.g. for APIARY_BOOTSTRAP_TOKEN; with --operator, mint a
            new operator token in the installation at --data-dir (apiary serve stopped) or
            --nats-url, and print it once
  version   print the version

Run 'apiary <command> -h' for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case roleServe, roleAPI, roleWorker:
		var cfg Config
		fs, envErr := flagSet(args[0], &cfg)
		fs.SetOutput(stderr)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := checkConfig(envErr, &cfg, args[0]); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return runRole(ctx, args[0], cfg, stderr)
	case "healthcheck":
		return healthcheck(ctx, args[1:], stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "models":
		return modelsCommand(ctx, args[1:], stdout, stderr)
	case "eval":
		return runEval(ctx, args[1:], stdout, stderr)
	case "token":
		return tokenCommand(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "apiary", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// tokenCommand prints a new token; with --operator it mints a new operator
// token in the installation (the data dir, or the cluster at --nats-url)
// and prints it once: the way back for an operator who lost theirs.
func tokenCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	fs, envErr := flagSet("token", &cfg)
	fs.SetOutput(stderr)
	operator := fs.Bool("operator", false, "mint a new operator token in the installation at --data-dir (with apiary serve stopped) or --nats-url, and print it once")
	name := fs.String("name", "operator", "name of the new operator token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*operator {
		tok, err := api.NewToken()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		return nil
	}
	if err := checkConfig(envErr, &cfg, roleServe); err != nil {
		return err
	}
	a := bareApp(cfg, newLogger(cfg.LogLevel, stderr))
	defer a.Close()
	if err := a.openRecords(ctx); err != nil {
		return err
	}
	if err := a.openKeys(ctx); err != nil {
		return err
	}
	tok, err := api.NewOperatorToken(ctx, a.recs, *name)
	if errors.Is(err, apiary.ErrNotFound) {
		return errors.New("no installation here yet: run apiary serve once first (it creates the first operator token)")
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
