package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"syscall"
	"text/tabwriter"

	"github.com/apiaryhq/apiary/pipeline/embed/onnx"
)

const modelsUsage = `usage: apiary models pull [--model NAME ...] [--models-dir DIR]
       apiary models list [--models-dir DIR]

pull fetches the ONNX Runtime for this machine and the models named (the
default model when none is; "all" for every one) into the models directory,
checking their pinned SHA-256 digests; files already there are kept. list
shows the model table and which models are present.
`

// modelsCommand runs `apiary models pull` and `apiary models list`.
func modelsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "pull" && args[0] != "list") {
		fmt.Fprint(stderr, modelsUsage)
		return errors.New("models: use apiary models pull or apiary models list")
	}
	f := &flags{FlagSet: flag.NewFlagSet("models "+args[0], flag.ContinueOnError)}
	f.SetOutput(stderr)
	var dir string
	registerModelsDir(f, &dir)
	var models []string
	if args[0] == "pull" {
		f.Func("model", "model to fetch, repeatable: "+modelChoices()+", or all", func(v string) error {
			models = append(models, v)
			return nil
		})
	}
	if err := f.Parse(args[1:]); err != nil {
		return err
	}
	if err := errors.Join(f.errs...); err != nil {
		return err
	}
	if dir == "" {
		return errors.New("models: --models-dir must be set: there is no user cache directory to default to")
	}
	if args[0] == "list" {
		return listModels(stdout, dir)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return pullModels(ctx, dir, models, stdout, stderr)
}

// pullModels pulls each model named (the default when none is, every one
// for "all") into dir.
func pullModels(ctx context.Context, dir string, models []string, stdout, stderr io.Writer) error {
	switch {
	case len(models) == 0:
		models = []string{onnx.DefaultModel}
	case slices.Contains(models, "all"):
		models = onnx.ModelNames()
	}
	for _, m := range models {
		if _, ok := onnx.Lookup(m); !ok {
			return fmt.Errorf("models: --model %q: use %s, or all", m, modelChoices())
		}
	}
	fetch := fetcher(stderr, newLogger("info", stderr))
	for _, m := range slices.Compact(models) {
		if err := onnx.Pull(ctx, dir, m, fetch); err != nil {
			return err
		}
		spec, _ := onnx.Lookup(m)
		fmt.Fprintf(stdout, "%s: ready in %s\n", m, spec.Dir(dir))
	}
	return nil
}

// poolingNames name the poolings for `apiary models list`.
var poolingNames = map[onnx.Pooling]string{onnx.PoolMean: "mean", onnx.PoolCLS: "cls"}

// listModels prints the model table and whether each model is present in dir.
func listModels(w io.Writer, dir string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tDIM\tPOOLING\tMAX TOKENS\tINT8\tPRESENT")
	for _, s := range onnx.Models {
		name := s.Name
		if name == onnx.DefaultModel {
			name += " (default)"
		}
		present := "yes"
		if onnx.Available(dir, s.Name) != nil {
			present = "no"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", name, s.Dim, poolingNames[s.Pooling], s.MaxTokens, yesNo(s.Quantized), present)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "models directory: %s\n", dir)
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
