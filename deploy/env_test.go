package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

var (
	// A documented variable: "# APIARY_X=..." or "APIARY_X=..." at a line's start.
	envLine = regexp.MustCompile(`^#?\s*(APIARY_[A-Z0-9_]+)=`)
	// Any APIARY_* name in a file.
	envName = regexp.MustCompile(`APIARY_[A-Z0-9_]+`)
	// A flag's variable in `apiary serve -h`: "... (APIARY_DATA_DIR)".
	flagEnv = regexp.MustCompile(`\((APIARY_[A-Z0-9_]+)\)`)
)

// envOnly are the secrets that have no flag.
var envOnly = []string{"APIARY_BOOTSTRAP_TOKEN", "APIARY_EMBED_API_KEY", "APIARY_ROOT_KEY", "APIARY_MILVUS_PASSWORD",
	"APIARY_OAUTH_ATLASSIAN_CLIENT_SECRET", "APIARY_OAUTH_GITHUB_CLIENT_SECRET", "APIARY_OAUTH_GOOGLE_CLIENT_SECRET",
	"APIARY_OAUTH_MICROSOFT_CLIENT_SECRET", "APIARY_OAUTH_NOTION_CLIENT_SECRET", "APIARY_OAUTH_OIDC_CLIENT_SECRET"}

func documentedVars(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("env.example")
	require.NoError(t, err)
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := envLine.FindStringSubmatch(sc.Text()); m != nil {
			require.NotContainsf(t, names, m[1], "env.example documents %s twice", m[1])
			names = append(names, m[1])
		}
	}
	require.NoError(t, sc.Err())
	slices.Sort(names)
	return names
}

func namesIn(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	names := envName.FindAllString(string(raw), -1)
	slices.Sort(names)
	return slices.Compact(names)
}

// TestEnvExampleCoversDeployFiles: every APIARY_* variable that the compose
// file or the template sets is documented.
func TestEnvExampleCoversDeployFiles(t *testing.T) {
	t.Parallel()
	documented := documentedVars(t)
	for _, file := range []string{filepath.Join(repoRoot, "docker-compose.yml"), templatePath} {
		names := namesIn(t, file)
		require.NotEmpty(t, names, file)
		for _, n := range names {
			require.Containsf(t, documented, n, "%s sets %s, which deploy/env.example does not document", file, n)
		}
	}
}

// TestEnvExampleMatchesFlags: env.example documents exactly the variables
// that `apiary` reads: one per flag, plus the environment-only secrets. So
// the deployment files set nothing the binary ignores.
func TestEnvExampleMatchesFlags(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds cmd/apiary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "apiary")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/apiary")
	build.Dir = repoRoot
	out, err := build.CombinedOutput()
	require.NoErrorf(t, err, "go build ./cmd/apiary: %s", out)

	var help bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, "serve", "-h")
	cmd.Stdout, cmd.Stderr = &help, &help
	_ = cmd.Run() // -h exits non-zero
	var fromFlags []string
	for _, m := range flagEnv.FindAllStringSubmatch(help.String(), -1) {
		fromFlags = append(fromFlags, m[1])
	}
	require.NotEmptyf(t, fromFlags, "no (APIARY_*) names in `apiary serve -h`:\n%s", help.String())
	want := append(fromFlags, envOnly...)
	slices.Sort(want)
	want = slices.Compact(want)

	got := documentedVars(t)
	require.Emptyf(t, cmp.Diff(want, got), "deploy/env.example vs `apiary serve -h` (-flags +documented):\n%s",
		strings.TrimSpace(help.String()))
}
