package onnx

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/artifact"
)

// Pull fetches into the models directory dir what the model named model
// needs on this machine: the ONNX Runtime library for runtime.GOOS and
// runtime.GOARCH (into RuntimeDir) and the model's files (into Spec.Dir).
// Files already there with their pinned digests are not fetched again;
// several processes may pull into one directory at once.
func Pull(ctx context.Context, dir, model string, f artifact.Fetcher) error {
	spec, ok := Lookup(model)
	if !ok {
		return apiary.E(apiary.KindInvalid, "onnx: pull %s: no such model (the models are %s)", model, strings.Join(ModelNames(), ", "))
	}
	rt, err := RuntimeFor(runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return err
	}
	return pull(ctx, f, dir, spec, rt, runtime.GOOS, runtime.GOARCH)
}

func pull(ctx context.Context, f artifact.Fetcher, dir string, spec Spec, rt Artifact, goos, goarch string) error {
	if err := f.Fetch(ctx, rt.fetchable(), RuntimeDir(dir, goos, goarch)); err != nil {
		return fmt.Errorf("onnx: pull runtime %s: %w", RuntimeVersion, err)
	}
	if err := f.Fetch(ctx, spec.Artifact.fetchable(), spec.Dir(dir)); err != nil {
		return fmt.Errorf("onnx: pull %s: %w", spec.Name, err)
	}
	return nil
}

// RuntimeFor returns the runtime artifact for goos/goarch, or an error
// naming the platforms there is one for.
func RuntimeFor(goos, goarch string) (Artifact, error) {
	rt, ok := Runtimes[goos+"/"+goarch]
	if !ok {
		return Artifact{}, apiary.E(apiary.KindInvalid, "onnx: no ONNX Runtime build for %s/%s (there is one for %s)",
			goos, goarch, strings.Join(slices.Sorted(maps.Keys(Runtimes)), ", "))
	}
	return rt, nil
}

// ModelNames returns the names of the model table, in its order.
func ModelNames() []string {
	names := make([]string, len(Models))
	for i, s := range Models {
		names[i] = s.Name
	}
	return names
}

func (a Artifact) fetchable() artifact.Artifact {
	out := artifact.Artifact{URL: a.URL, SHA256: a.SHA256}
	for _, f := range a.Files {
		out.Files = append(out.Files, artifact.File{Member: f.Member, Name: f.Name, SHA256: f.SHA256})
	}
	return out
}
