package deploy_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction, continuations joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	var (
		out  []instruction
		cont strings.Builder
	)
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if cont.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cont.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cont.WriteString(trimmed)
		full := cont.String()
		cont.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
	}
	require.Zero(t, cont.Len(), "Dockerfile ends in a continuation")
	return out
}

// stages splits the instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

func find(stage []instruction, cmd string) []string {
	var args []string
	for _, in := range stage {
		if in.cmd == cmd {
			args = append(args, in.args)
		}
	}
	return args
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := readDockerfile(t)
	st := stages(ins)
	require.Len(t, st, 2, "a build stage and a final stage")

	// The build stage's Go is go.mod's.
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	require.NoError(t, err)
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	require.NotNil(t, goLine)
	require.Contains(t, find(ins, "ARG"), "GO_VERSION="+string(goLine[1]), "builder Go matches go.mod")
	// cgo (the ONNX Runtime is loaded through it) links the binary against
	// glibc: it is built on the final image's Debian release (bookworm is
	// distroless's debian12), natively, not cross-compiled.
	build := st[0]
	require.Equal(t, "golang:${GO_VERSION}-bookworm AS build", build[0].args)

	var compiled bool
	for _, run := range find(build, "RUN") {
		if !strings.Contains(run, "go build") {
			continue
		}
		compiled = true
		for _, want := range []string{
			"--mount=type=cache,target=/go/pkg/mod", "CGO_ENABLED=1", "-trimpath", `-ldflags="-s -w"`,
			"-o /out/apiary", "./cmd/apiary",
		} {
			require.Containsf(t, run, want, "the build step %q", run)
		}
	}
	require.True(t, compiled, "no go build step")
	// The runtime and the default model are pulled (digests checked) at
	// build time, after the binary is built, and shipped in /models.
	runs := find(build, "RUN")
	pull := slices.Index(runs, "/out/apiary models pull --models-dir /out/models")
	require.Positive(t, pull, "the build stage pulls the models with the binary it built: %q", runs)

	final := st[1]
	// cc: glibc and libstdc++, which the ONNX Runtime library needs.
	require.Equal(t, "gcr.io/distroless/cc-debian12:nonroot", final[0].args)
	require.Contains(t, find(final, "COPY"), "--from=build /out/models /models")
	require.Equal(t, []string{"APIARY_MODELS_DIR=/models"}, find(final, "ENV"))
	require.Equal(t, []string{"nonroot"}, find(final, "USER"))
	require.Equal(t, []string{"8080"}, find(final, "EXPOSE"))
	require.Equal(t, []string{`["/data"]`}, find(final, "VOLUME"))
	require.Equal(t, []string{`["/apiary"]`}, find(final, "ENTRYPOINT"))
	require.Equal(t, []string{`["serve", "--addr", "0.0.0.0:8080", "--data-dir", "/data"]`}, find(final, "CMD"))
}

func TestDockerignoreKeepsStateOutOfTheContext(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	require.NoError(t, err)
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	require.NoError(t, sc.Err())
	for _, p := range []string{".git", ".test-services", "apiary-data", "bin"} {
		require.Containsf(t, patterns, p, ".dockerignore must exclude %s", p)
	}
	for _, p := range patterns {
		require.Falsef(t, strings.HasPrefix(p, "!"), "no re-inclusions: %s", p)
		require.NotContainsf(t, []string{"*", "*.go", "go.mod", "go.sum", "cmd"}, p, ".dockerignore drops the sources: %s", p)
	}
}
