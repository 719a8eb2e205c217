package apiary_test

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The dependency rules of AGENTS.md, checked on the import graph that
// `go list` reports. Only non-test code is checked: a test may wire real
// adapters together (that is how tests avoid mocks).
//
// A new package, or a new third-party module, fails TestDependencyRules
// until it is given a role here, so that nobody adds an adapter, a port or an
// SDK without deciding where it belongs.

const module = "github.com/apiaryhq/apiary"

// role is what a package of ours is for; the rules are stated over roles.
type role int

const (
	roleRoot     role = iota + 1 // the vocabulary: ids, Job, Event, error kinds
	rolePort                     // a port: interfaces and the types they speak
	roleAdapter                  // a concrete implementation of a port, or a connector
	roleApp                      // api, workers, pipeline: the layers above the ports
	roleInternal                 // a helper shared by adapters or the composition root
	roleHelper                   // a test helper or conformance suite, for test code only
	roleMain                     // the composition root
	roleTooling                  // tests of deployment files
)

// roles classifies every package of ours, by path inside the module.
var roles = map[string]role{
	".": roleRoot,

	"connectors":         rolePort,
	"connectors/custody": rolePort,
	"pipeline/embed":     rolePort,
	"pipeline/encrypt":   rolePort,
	"storage":            rolePort,
	"workers/events":     rolePort,
	"workers/queue":      rolePort,

	"connectors/custody/natscustody": roleAdapter,
	"connectors/confluence":          roleAdapter,
	"connectors/gdrive":              roleAdapter,
	"connectors/github":              roleAdapter,
	"connectors/graph":               roleAdapter,
	"connectors/notion":              roleAdapter,
	"connectors/s3":                  roleAdapter,
	"connectors/upload":              roleAdapter,
	"connectors/web":                 roleAdapter,
	"pipeline/embed/bedrock":         roleAdapter,
	"pipeline/embed/local":           roleAdapter,
	"pipeline/embed/onnx":            roleAdapter,
	"pipeline/embed/openai":          roleAdapter,
	"pipeline/encrypt/awskms":        roleAdapter,
	"pipeline/encrypt/keyring":       roleAdapter,
	"pipeline/encrypt/kek":           roleAdapter,
	"storage/local":                  roleAdapter,
	"storage/memkv":                  roleAdapter,
	"storage/milvus":                 roleAdapter,
	"storage/natskv":                 roleAdapter,
	"storage/vecguard":               roleAdapter, // a VectorStore decorator: vector protection over any store
	"workers/events/natsbus":         roleAdapter,
	"workers/queue/jetstream":        roleAdapter,
	"workers/queue/sqs":              roleAdapter,

	"api":              roleApp,
	"connections":      roleApp, // OAuth connections, shared by api and (later) the connectors' workers
	"pipeline":         roleApp,
	"pipeline/chunk":   roleApp,
	"pipeline/extract": roleApp,
	"pipeline/lexical": roleApp,
	"storage/records":  roleApp,
	"webhooks":         roleApp,
	"workers":          roleApp,
	"workers/jobs":     roleApp,
	"workers/webhook":  roleApp,

	"internal/artifact":   roleInternal,
	"connectors/rest":     roleInternal, // the REST connectors' shared client: bearer per request, caps, classification
	"internal/eval":       roleInternal,
	"internal/fairsem":    roleInternal,
	"internal/flock":      roleInternal,
	"internal/natserr":    roleInternal,
	"internal/natsserver": roleInternal,
	"internal/safehttp":   roleInternal,

	"connectors/connectortest":       roleHelper,
	"connectors/gdrive/gdrivetest":   roleHelper,
	"internal/artifact/artifacttest": roleHelper,
	"internal/natsserver/natstest":   roleHelper,
	"internal/testutil":              roleHelper,
	"connections/oidctest":           roleHelper,
	"pipeline/embed/embedtest":       roleHelper,
	"pipeline/encrypt/encrypttest":   roleHelper,
	"storage/storagetest":            roleHelper,
	"storage/vecguard/vecguardtest":  roleHelper,
	"workers/events/eventstest":      roleHelper,
	"workers/queue/queuetest":        roleHelper,

	"cmd/apiary": roleMain,
	"deploy":     roleTooling,

	"scripts/evaldata": roleTooling, // builds the evaluation set (make eval-data)
}

// sdkHomes names, for each vendor SDK (an import path prefix), the only
// packages that may import it. The longest matching prefix decides.
var sdkHomes = []struct {
	sdk   string
	homes []string
}{
	{"github.com/labstack/echo/v4", []string{"api"}},
	// nats.go: the NATS adapters (and custody's request/reply transport)
	// and the error classification they share; the server wrapper, its
	// test helper and cmd/apiary open connections.
	{"github.com/nats-io/nats.go", []string{
		"workers/queue/jetstream", "workers/events/natsbus", "storage/natskv", "connectors/custody/natscustody",
		"internal/natserr", "internal/natsserver", "internal/natsserver/natstest", "cmd/apiary",
	}},
	{"github.com/nats-io/nats-server/v2", []string{"internal/natsserver"}},
	{"github.com/aws/aws-sdk-go-v2/service/sqs", []string{"workers/queue/sqs"}},
	{"github.com/aws/aws-sdk-go-v2/service/kms", []string{"pipeline/encrypt/awskms"}},
	{"github.com/aws/aws-sdk-go-v2/service/bedrockruntime", []string{"pipeline/embed/bedrock"}},
	{"github.com/aws/aws-sdk-go-v2/service/s3", []string{"connectors/s3"}},
	// STS: the S3 connector assumes customer roles (its stored credential).
	{"github.com/aws/aws-sdk-go-v2/service/sts", []string{"connectors/s3"}},
	// config loads the shared AWS settings; only the composition root reads
	// the environment. The core types (aws.Config) pass from it to the adapters.
	{"github.com/aws/aws-sdk-go-v2/config", []string{"cmd/apiary"}},
	{"github.com/aws/aws-sdk-go-v2", []string{"workers/queue/sqs", "pipeline/encrypt/awskms", "pipeline/embed/bedrock", "connectors/s3", "cmd/apiary"}},
	{"github.com/aws/smithy-go", []string{"workers/queue/sqs", "pipeline/encrypt/awskms", "pipeline/embed/bedrock", "connectors/s3"}},
	{"github.com/milvus-io/milvus-sdk-go/v2", []string{"storage/milvus"}},
	{"google.golang.org/grpc", []string{"storage/milvus"}}, // Milvus's transport: its status codes
	// The in-process embedder: ONNX Runtime through cgo, and the pure-Go
	// tokenizer that feeds it.
	{"github.com/yalue/onnxruntime_go", []string{"pipeline/embed/onnx"}},
	{"github.com/sugarme/tokenizer", []string{"pipeline/embed/onnx"}},
	// OAuth 2.0 clients: the connection flows, refreshes and their errors.
	{"golang.org/x/oauth2", []string{"connections"}},
}

// libraries are general-purpose third-party modules any package may import.
var libraries = []string{
	"golang.org/x",
	"github.com/stretchr/testify",
	"go.uber.org/goleak",
	"github.com/google/go-cmp",
	"github.com/kljensen/snowball", // the English Snowball stemmer of pipeline/lexical
}

// The rules, as the failure messages state them.
const (
	ruleRoot         = "the root package is the vocabulary: it imports the standard library only"
	ruleUnclassified = "every package of ours has a role: add it to `roles` in deps_test.go"
	ruleUnknown      = "every third-party import is a library or an SDK with a home: add it to `libraries` or `sdkHomes` in deps_test.go"
	ruleAdapters     = "adapters never import each other"
	ruleAdapterUp    = "adapters import only the root package, ports and internal helpers"
	ruleLayerSDK     = "api, workers, pipeline and the ports depend on ports, never on a vendor SDK"
	ruleSDKHome      = "each vendor SDK lives in its own folder"
	ruleHelper       = "test helpers and conformance suites are imported by test code only"
	ruleAPIWorkers   = "api never imports a worker package (only the queue and event ports and the job service under workers/); shared domain logic lives outside workers/"
)

// violation is one import that breaks one rule.
type violation struct {
	pkg, imp, rule string
}

func (v violation) String() string {
	name := v.pkg
	if name == "." {
		name = module
	}
	if v.imp == "" {
		return fmt.Sprintf("%s: %s", name, v.rule)
	}
	return fmt.Sprintf("%s imports %s: %s", name, v.imp, v.rule)
}

// checkDeps returns every import in graph (a package of ours, by path inside
// the module, → the full import paths of its non-test imports) that breaks a
// rule, in a stable order.
func checkDeps(graph map[string][]string) []violation {
	var out []violation
	for _, pkg := range slices.Sorted(maps.Keys(graph)) {
		r, ok := roles[pkg]
		if !ok {
			out = append(out, violation{pkg, "", ruleUnclassified})
			continue
		}
		for _, imp := range graph[pkg] {
			if rule := checkImport(pkg, r, imp); rule != "" {
				out = append(out, violation{pkg, imp, rule})
			}
		}
	}
	return out
}

// checkImport returns the rule that pkg (of role r) breaks by importing imp,
// "" when it breaks none.
func checkImport(pkg string, r role, imp string) string {
	if standard(imp) {
		return ""
	}
	if r == roleRoot {
		return ruleRoot
	}
	if dep, ours := inModule(imp); ours {
		switch dr, ok := roles[dep]; {
		case !ok:
			return "" // reported once, as that package's own violation
		case dr == roleHelper && r != roleHelper:
			return ruleHelper
		case r == roleAdapter && dr == roleAdapter:
			return ruleAdapters
		case r == roleAdapter && dr != roleRoot && dr != rolePort && dr != roleInternal:
			return ruleAdapterUp
		case pkg == "api" && hasPrefix(dep, "workers") && dr != rolePort && dep != "workers/jobs":
			return ruleAPIWorkers
		}
		return ""
	}
	if hasPrefix(imp, libraries...) {
		return ""
	}
	homes, ok := sdkHome(imp)
	switch {
	case !ok:
		return ruleUnknown
	case slices.Contains(homes, pkg):
		return ""
	case r == roleApp || r == rolePort:
		return ruleLayerSDK
	}
	return fmt.Sprintf("%s: it is imported only by %s", ruleSDKHome, strings.Join(homes, ", "))
}

// sdkHome returns the homes of the SDK that imp belongs to.
func sdkHome(imp string) ([]string, bool) {
	best := -1
	for i, s := range sdkHomes {
		if hasPrefix(imp, s.sdk) && (best < 0 || len(s.sdk) > len(sdkHomes[best].sdk)) {
			best = i
		}
	}
	if best < 0 {
		return nil, false
	}
	return sdkHomes[best].homes, true
}

// hasPrefix reports whether path is one of prefixes or inside one of them.
func hasPrefix(path string, prefixes ...string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// standard reports whether path is in the standard library: its first
// element has no dot (as `go` itself decides for module paths).
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// inModule returns path inside the module ("." for the root) of an import
// path of ours.
func inModule(imp string) (string, bool) {
	if imp == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(imp, module+"/")
	return rel, ok
}

// importGraph asks `go list` for the non-test imports of every package of ours.
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	graph := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg, ours := inModule(fields[0])
		require.True(t, ours, "go list reported %s", fields[0])
		graph[pkg] = fields[1:]
	}
	require.NoError(t, sc.Err())
	require.Contains(t, graph, ".", "go list found the root package")
	return graph
}

func TestDependencyRules(t *testing.T) {
	t.Parallel()
	graph := importGraph(t)
	var broken []string
	for _, v := range checkDeps(graph) {
		broken = append(broken, v.String())
	}
	for pkg := range roles {
		if _, ok := graph[pkg]; !ok {
			broken = append(broken, fmt.Sprintf("%s is in `roles` but no longer exists: remove it", pkg))
		}
	}
	for _, s := range sdkHomes {
		for _, home := range s.homes {
			if _, ok := graph[home]; !ok {
				broken = append(broken, fmt.Sprintf("%s is a home of %s in `sdkHomes` but no longer exists: remove it", home, s.sdk))
			}
		}
	}
	if len(broken) > 0 {
		slices.Sort(broken)
		t.Fatalf("dependency rules broken:\n%s", strings.Join(broken, "\n"))
	}
}

// Each rule, broken once in a graph that is otherwise fine, is reported with
// the package, the import and the rule.
func TestCheckDepsReportsEachRule(t *testing.T) {
	t.Parallel()
	ours := func(rel string) string { return module + "/" + rel }
	fine := map[string][]string{
		".":                       {"errors", "time"},
		"storage":                 {"context", module},
		"storage/natskv":          {module, ours("storage"), ours("internal/natserr"), "github.com/nats-io/nats.go/jetstream"},
		"internal/natserr":        {module, "github.com/nats-io/nats.go"},
		"api":                     {ours("storage"), ours("workers/queue"), ours("webhooks"), "github.com/labstack/echo/v4", "golang.org/x/time/rate"},
		"storage/storagetest":     {ours("storage"), "github.com/stretchr/testify/require"},
		"cmd/apiary":              {ours("storage/natskv"), ours("api"), "github.com/aws/aws-sdk-go-v2/config", "github.com/nats-io/nats.go"},
		"workers/queue/sqs":       {ours("workers/queue"), "github.com/aws/aws-sdk-go-v2/service/sqs/types", "github.com/aws/aws-sdk-go-v2/aws"},
		"internal/natsserver":     {"github.com/nats-io/nats-server/v2/server"},
		"pipeline/encrypt/awskms": {"github.com/aws/aws-sdk-go-v2/service/kms"},
	}
	require.Empty(t, checkDeps(fine))

	// One throwaway import (or package) per rule, and the line that reports it.
	tests := []struct {
		name     string
		pkg, imp string
		want     string
	}{
		{"root imports a package of ours", ".", ours("storage"),
			module + " imports " + ours("storage") + ": " + ruleRoot},
		{"root imports a library", ".", "golang.org/x/sync/errgroup",
			module + " imports golang.org/x/sync/errgroup: " + ruleRoot},
		{"an unclassified package", "storage/redis", "context",
			"storage/redis: " + ruleUnclassified},
		{"an unknown module", "storage/natskv", "github.com/redis/go-redis/v9",
			"storage/natskv imports github.com/redis/go-redis/v9: " + ruleUnknown},
		{"an adapter imports an adapter", "storage/natskv", ours("storage/memkv"),
			"storage/natskv imports " + ours("storage/memkv") + ": " + ruleAdapters},
		{"an adapter imports the layer above", "storage/natskv", ours("storage/records"),
			"storage/natskv imports " + ours("storage/records") + ": " + ruleAdapterUp},
		{"api imports an SDK", "api", "github.com/nats-io/nats.go",
			"api imports github.com/nats-io/nats.go: " + ruleLayerSDK},
		{"workers import an SDK", "workers", "github.com/aws/aws-sdk-go-v2/service/sqs",
			"workers imports github.com/aws/aws-sdk-go-v2/service/sqs: " + ruleLayerSDK},
		{"pipeline imports an SDK", "pipeline", "github.com/milvus-io/milvus-sdk-go/v2/client",
			"pipeline imports github.com/milvus-io/milvus-sdk-go/v2/client: " + ruleLayerSDK},
		{"a port imports an SDK", "storage", "github.com/nats-io/nats.go/jetstream",
			"storage imports github.com/nats-io/nats.go/jetstream: " + ruleLayerSDK},
		{"an SDK outside its folder", "storage/natskv", "github.com/aws/aws-sdk-go-v2/service/kms",
			"storage/natskv imports github.com/aws/aws-sdk-go-v2/service/kms: " + ruleSDKHome + ": it is imported only by pipeline/encrypt/awskms"},
		{"echo outside api", "cmd/apiary", "github.com/labstack/echo/v4",
			"cmd/apiary imports github.com/labstack/echo/v4: " + ruleSDKHome + ": it is imported only by api"},
		{"nats-server outside its wrapper", "internal/natsserver/natstest", "github.com/nats-io/nats-server/v2/server",
			"internal/natsserver/natstest imports github.com/nats-io/nats-server/v2/server: " + ruleSDKHome + ": it is imported only by internal/natsserver"},
		{"aws config outside cmd/apiary", "workers/queue/sqs", "github.com/aws/aws-sdk-go-v2/config",
			"workers/queue/sqs imports github.com/aws/aws-sdk-go-v2/config: " + ruleSDKHome + ": it is imported only by cmd/apiary"},
		{"a suite in non-test code", "workers", ours("workers/queue/queuetest"),
			"workers imports " + ours("workers/queue/queuetest") + ": " + ruleHelper},
		{"api imports a worker package", "api", ours("workers/webhook"),
			"api imports " + ours("workers/webhook") + ": " + ruleAPIWorkers},
		{"api imports the workers", "api", ours("workers"),
			"api imports " + ours("workers") + ": " + ruleAPIWorkers},
		{"testutil in non-test code", "cmd/apiary", ours("internal/testutil"),
			"cmd/apiary imports " + ours("internal/testutil") + ": " + ruleHelper},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			graph := maps.Clone(fine)
			graph[tt.pkg] = append(slices.Clone(graph[tt.pkg]), tt.imp)
			var got []string
			for _, v := range checkDeps(graph) {
				got = append(got, v.String())
			}
			require.Equal(t, []string{tt.want}, got)
		})
	}
}
