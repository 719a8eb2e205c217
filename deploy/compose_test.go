package deploy_test

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// repoRoot is where docker-compose.yml lives: the tests run in deploy/.
const repoRoot = ".."

// fakeToken stands in for the operator token the file reads from the
// environment.
const fakeToken = "apy_test-token-from-the-environment"

// loadCompose loads docker-compose.yml the way `docker compose` does, with
// env as the whole environment (the process's own is not read).
func loadCompose(t *testing.T, env ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(repoRoot, "docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot),
		cli.WithEnv(env),
	)
	require.NoError(t, err)
	return cli.ProjectFromOptions(t.Context(), opts)
}

func mustLoadCompose(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(t, "APIARY_BOOTSTRAP_TOKEN="+fakeToken)
	require.NoError(t, err)
	return p
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	want := []string{"api", "etcd", "kms", "milvus", "minio", "nats", "sqs", "worker"}
	got := p.ServiceNames()
	slices.Sort(got)
	require.Empty(t, cmp.Diff(want, got), "services (-want +got)")
}

func TestComposeOnlyAPIPublishesAPort(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	for name, svc := range p.Services {
		if name == "api" {
			continue
		}
		require.Emptyf(t, svc.Ports, "service %s must publish no port", name)
	}
	api := p.Services["api"]
	require.Len(t, api.Ports, 1)
	port := api.Ports[0]
	require.Equal(t, uint32(8080), port.Target)
	require.Equal(t, "8080", port.Published)
	require.Equal(t, "127.0.0.1", port.HostIP, "the API is published on the host's loopback only")
}

func TestComposeEveryServiceHasAHealthCheck(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	for name, svc := range p.Services {
		hc := svc.HealthCheck
		require.NotNilf(t, hc, "service %s has no healthcheck", name)
		require.Falsef(t, hc.Disable, "service %s disables its healthcheck", name)
		require.NotEmptyf(t, hc.Test, "service %s has an empty healthcheck", name)
		require.NotEqualf(t, "NONE", hc.Test[0], "service %s disables its healthcheck", name)
		require.Containsf(t, []string{"CMD", "CMD-SHELL"}, hc.Test[0], "service %s healthcheck %q", name, hc.Test)
		require.GreaterOrEqualf(t, len(hc.Test), 2, "service %s healthcheck runs nothing", name)
	}
}

func TestComposeDependenciesWaitUntilHealthy(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	want := map[string][]string{
		"api":    {"kms", "milvus", "nats", "sqs"},
		"worker": {"kms", "milvus", "nats", "sqs"},
		"milvus": {"etcd", "minio"},
	}
	for svc, deps := range want {
		got := p.Services[svc].DependsOn
		for _, dep := range deps {
			d, ok := got[dep]
			require.Truef(t, ok, "%s does not depend on %s", svc, dep)
			require.Equalf(t, types.ServiceConditionHealthy, d.Condition, "%s waits for %s", svc, dep)
		}
	}
	// Every dependency anywhere waits for health, not just a started container.
	for name, svc := range p.Services {
		for dep, d := range svc.DependsOn {
			require.Equalf(t, types.ServiceConditionHealthy, d.Condition, "%s waits for %s", name, dep)
		}
	}
}

func TestComposeNetworks(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	require.True(t, p.Networks["internal"].Internal, "the internal network must be internal: true")
	edge, ok := p.Networks["edge"]
	require.True(t, ok, "an edge network carries the published API port")
	require.False(t, edge.Internal)
	for name, svc := range p.Services {
		_, onInternal := svc.Networks["internal"]
		require.Truef(t, onInternal, "service %s is not on the internal network", name)
		_, onEdge := svc.Networks["edge"]
		require.Equalf(t, name == "api", onEdge, "only the api is on the edge network (service %s)", name)
		require.Emptyf(t, svc.NetworkMode, "service %s sets network_mode", name)
	}
}

func TestComposeWorkerReplicas(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	w := p.Services["worker"]
	require.NotNil(t, w.Deploy)
	require.NotNil(t, w.Deploy.Replicas)
	require.Equal(t, 2, *w.Deploy.Replicas)
	require.Equal(t, 2, w.GetScale())
}

func TestComposeApiaryImageAndRoles(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	for role, svc := range map[string]types.ServiceConfig{"api": p.Services["api"], "worker": p.Services["worker"]} {
		require.NotNilf(t, svc.Build, "%s is built from the repository", role)
		require.Equal(t, "deploy/Dockerfile", svc.Build.Dockerfile)
		require.FileExists(t, filepath.Join(repoRoot, svc.Build.Dockerfile))
		require.Equal(t, p.Services["api"].Image, svc.Image, "api and worker share one image")
		require.Equal(t, types.ShellCommand{role}, svc.Command)
	}
}

func TestComposeApiaryPointsAtItsServices(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	for _, role := range []string{"api", "worker"} {
		env := p.Services[role].Environment
		get := func(k string) string {
			v, ok := env[k]
			require.Truef(t, ok && v != nil, "%s: %s is not set", role, k)
			return *v
		}
		require.Equal(t, "sqs", get("APIARY_QUEUE"))
		require.Equal(t, "awskms", get("APIARY_KEYS"))
		require.Equal(t, "milvus", get("APIARY_VECTORS"))
		require.Equal(t, "us-east-1", get("AWS_REGION"), "the emulators' region")
		require.Contains(t, get("AWS_ACCESS_KEY_ID"), "local-only")
		for _, k := range []string{"APIARY_NATS_URL", "APIARY_SQS_ENDPOINT", "APIARY_KMS_ENDPOINT"} {
			u, err := url.Parse(get(k))
			require.NoError(t, err, k)
			require.Containsf(t, p.ServiceNames(), u.Hostname(), "%s: %s names no service", role, k)
		}
		host, _, err := net.SplitHostPort(get("APIARY_MILVUS_ADDR"))
		require.NoError(t, err)
		require.Contains(t, p.ServiceNames(), host)
		require.Equal(t, fakeToken, get("APIARY_BOOTSTRAP_TOKEN"), "the token comes from the environment")
		_, hasRootKey := env["APIARY_ROOT_KEY"]
		require.False(t, hasRootKey, "no root key in the compose file (keys are in KMS)")
	}
	require.Equal(t, "0.0.0.0:8080", *p.Services["api"].Environment["APIARY_ADDR"])
	require.True(t, strings.HasPrefix(*p.Services["worker"].Environment["APIARY_ADDR"], "127.0.0.1:"),
		"workers listen on loopback only")
}

func TestComposeRefusesToStartWithoutTheToken(t *testing.T) {
	t.Parallel()
	_, err := loadCompose(t) // an empty environment
	require.Error(t, err)
	require.Contains(t, err.Error(), "APIARY_BOOTSTRAP_TOKEN")
}

// TestComposeHasNoSecretLiterals: the only credentials written in the file
// are the emulators' placeholders, named as such.
func TestComposeHasNoSecretLiterals(t *testing.T) {
	t.Parallel()
	p := mustLoadCompose(t)
	for name, svc := range p.Services {
		for k, v := range svc.Environment {
			if v == nil {
				continue
			}
			switch {
			case k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY":
				require.Containsf(t, *v, "local-only", "%s: %s must be an obvious emulator placeholder", name, k)
			case k == "AWS_SESSION_TOKEN" || k == "APIARY_ROOT_KEY" || strings.Contains(k, "NATS_CREDS"):
				require.Failf(t, "secret in compose file", "%s sets %s", name, k)
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	require.NoError(t, err)
	require.NotContains(t, string(raw), "apy_", "no API token literal in the compose file")
}
