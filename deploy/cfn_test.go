package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const templatePath = "aws/apiary.cfn.yaml"

// cfnTags are CloudFormation's short-form intrinsic functions.
var cfnTags = []string{
	"!And", "!Base64", "!Cidr", "!Condition", "!Equals", "!FindInMap", "!GetAtt", "!GetAZs",
	"!If", "!ImportValue", "!Join", "!Not", "!Or", "!Ref", "!Select", "!Split", "!Sub", "!Transform",
}

// template is a parsed CloudFormation template: yaml.Node keeps the custom
// tags (!Ref, !Sub, ...) that a plain decode would choke on.
type template struct {
	root       *yaml.Node // the top-level mapping
	parameters map[string]*yaml.Node
	resources  map[string]*yaml.Node // name -> the resource's mapping
	conditions map[string]*yaml.Node
}

func loadTemplate(t *testing.T, path string) *template {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(raw, &doc), "template is not YAML")
	require.Equal(t, yaml.DocumentNode, doc.Kind)
	root := doc.Content[0]
	require.Equal(t, yaml.MappingNode, root.Kind, "template is not a mapping")
	tpl := &template{
		root:       root,
		parameters: entries(get(root, "Parameters")),
		resources:  entries(get(root, "Resources")),
		conditions: entries(get(root, "Conditions")),
	}
	require.NotEmpty(t, tpl.resources, "template has no Resources")
	return tpl
}

// get returns the value of key in mapping n, or nil.
func get(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// path follows keys through nested mappings.
func path(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		n = get(n, k)
	}
	return n
}

func entries(n *yaml.Node) map[string]*yaml.Node {
	m := map[string]*yaml.Node{}
	if n == nil || n.Kind != yaml.MappingNode {
		return m
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = n.Content[i+1]
	}
	return m
}

// walk calls fn on n and every node below it.
func walk(n *yaml.Node, fn func(*yaml.Node)) {
	if n == nil {
		return
	}
	fn(n)
	for _, c := range n.Content {
		walk(c, fn)
	}
}

func (tpl *template) ofType(typ string) []string {
	var names []string
	for name, r := range tpl.resources {
		if v := get(r, "Type"); v != nil && v.Value == typ {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// scalars returns the scalar values anywhere under n.
func scalars(n *yaml.Node) []string {
	var out []string
	walk(n, func(c *yaml.Node) {
		if c.Kind == yaml.ScalarNode {
			out = append(out, c.Value)
		}
	})
	return out
}

func TestTemplateParsesWithShortFormTags(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t, templatePath)
	seen := map[string]int{}
	walk(tpl.root, func(n *yaml.Node) {
		if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
			require.Containsf(t, cfnTags, n.Tag, "unknown tag %s at line %d", n.Tag, n.Line)
			seen[n.Tag]++
		}
	})
	for _, tag := range []string{"!Ref", "!Sub", "!GetAtt"} {
		require.Positivef(t, seen[tag], "the template uses %s (the parser must have kept the tags)", tag)
	}
}

// TestTemplateReferencesResolve: every !Ref, !GetAtt and Condition names a
// parameter, resource, pseudo parameter or condition that exists.
func TestTemplateReferencesResolve(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t, templatePath)
	isRefTarget := func(name string) bool {
		_, p := tpl.parameters[name]
		_, r := tpl.resources[name]
		return p || r || strings.HasPrefix(name, "AWS::")
	}
	walk(tpl.root, func(n *yaml.Node) {
		switch n.Tag {
		case "!Ref":
			require.Truef(t, isRefTarget(n.Value), "!Ref %s at line %d names nothing", n.Value, n.Line)
		case "!GetAtt":
			target := n.Value
			if n.Kind == yaml.SequenceNode {
				target = n.Content[0].Value
			}
			res, _, _ := strings.Cut(target, ".")
			_, ok := tpl.resources[res]
			require.Truef(t, ok, "!GetAtt %s at line %d names no resource", target, n.Line)
		}
	})
	for name, r := range tpl.resources {
		if c := get(r, "Condition"); c != nil {
			_, ok := tpl.conditions[c.Value]
			require.Truef(t, ok, "resource %s has unknown condition %s", name, c.Value)
		}
		if d := get(r, "DependsOn"); d != nil {
			for _, dep := range scalars(d) {
				_, ok := tpl.resources[dep]
				require.Truef(t, ok, "resource %s depends on unknown %s", name, dep)
			}
		}
	}
}

func TestTemplateHasTheReferenceArchitecture(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t, templatePath)

	require.Len(t, tpl.ofType("AWS::SQS::Queue"), 2, "a job queue and its dead-letter queue")
	require.NotEmpty(t, append(tpl.ofType("AWS::ApiGatewayV2::Api"), tpl.ofType("AWS::ApiGateway::RestApi")...),
		"an API Gateway API")
	require.NotEmpty(t, tpl.ofType("AWS::ApiGatewayV2::VpcLink"))
	require.Len(t, tpl.ofType("AWS::ECS::Service"), 2, "the api and worker services")
	require.NotEmpty(t, tpl.ofType("AWS::ApplicationAutoScaling::ScalingPolicy"))

	lbs := tpl.ofType("AWS::ElasticLoadBalancingV2::LoadBalancer")
	require.NotEmpty(t, lbs)
	for _, lb := range lbs {
		require.Equalf(t, "internal", path(tpl.resources[lb], "Properties", "Scheme").Value, "load balancer %s", lb)
	}
}

func TestTemplateQueueHasDeadLetterQueueAndEncryption(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t, templatePath)
	var redriven int
	for _, q := range tpl.ofType("AWS::SQS::Queue") {
		props := path(tpl.resources[q], "Properties")
		sse := get(props, "SqsManagedSseEnabled")
		require.Truef(t, (sse != nil && sse.Value == "true") || get(props, "KmsMasterKeyId") != nil,
			"queue %s is not encrypted at rest", q)
		if rp := get(props, "RedrivePolicy"); rp != nil {
			redriven++
			require.NotNilf(t, get(rp, "maxReceiveCount"), "queue %s redrive policy has no maxReceiveCount", q)
			target := get(rp, "deadLetterTargetArn")
			require.NotNil(t, target)
			require.Equal(t, "!GetAtt", target.Tag)
			dlq, _, _ := strings.Cut(target.Value, ".")
			require.NotEqual(t, q, dlq)
			require.Equal(t, "AWS::SQS::Queue", get(tpl.resources[dlq], "Type").Value)
		}
	}
	require.Equal(t, 1, redriven, "exactly the job queue has a redrive policy")
}

func TestTemplateWorkersScaleOnQueueDepth(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t, templatePath)
	var onQueue bool
	for _, p := range tpl.ofType("AWS::ApplicationAutoScaling::ScalingPolicy") {
		if slices.Contains(scalars(tpl.resources[p]), "ApproximateNumberOfMessagesVisible") {
			onQueue = true
		}
	}
	require.True(t, onQueue, "a scaling policy follows ApproximateNumberOfMessagesVisible")
}

func TestTemplateGatewayThrottles(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t, templatePath)
	stages := append(tpl.ofType("AWS::ApiGatewayV2::Stage"), tpl.ofType("AWS::ApiGateway::Stage")...)
	require.NotEmpty(t, stages)
	for _, s := range stages {
		settings := path(tpl.resources[s], "Properties", "DefaultRouteSettings")
		require.NotNilf(t, get(settings, "ThrottlingRateLimit"), "stage %s has no rate limit", s)
		require.NotNilf(t, get(settings, "ThrottlingBurstLimit"), "stage %s has no burst limit", s)
		require.NotNilf(t, path(tpl.resources[s], "Properties", "AccessLogSettings"), "stage %s has no access log", s)
	}
}

func TestTemplateTasksArePrivate(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t, templatePath)
	for _, s := range tpl.ofType("AWS::ECS::Service") {
		vpc := path(tpl.resources[s], "Properties", "NetworkConfiguration", "AwsvpcConfiguration")
		require.NotNilf(t, vpc, "service %s", s)
		require.Equalf(t, "DISABLED", get(vpc, "AssignPublicIp").Value, "service %s gets a public IP", s)
		for _, subnet := range get(vpc, "Subnets").Content {
			require.Truef(t, strings.HasPrefix(subnet.Value, "Private"), "service %s runs in subnet %s", s, subnet.Value)
		}
	}
	for _, lg := range tpl.ofType("AWS::Logs::LogGroup") {
		require.NotNilf(t, path(tpl.resources[lg], "Properties", "RetentionInDays"), "log group %s keeps logs forever", lg)
	}
}

// TestTemplateNoWildcardGrants: no Allow statement grants "*" or a whole
// service.
func TestTemplateNoWildcardGrants(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t, templatePath)
	var statements int
	walk(tpl.root, func(n *yaml.Node) {
		st := get(n, "Statement")
		if st == nil || st.Kind != yaml.SequenceNode {
			return
		}
		for _, s := range st.Content {
			statements++
			if e := get(s, "Effect"); e == nil || e.Value != "Allow" {
				continue
			}
			for _, action := range scalars(get(s, "Action")) {
				require.Falsef(t, action == "*" || strings.HasSuffix(action, ":*"),
					"statement at line %d allows %s", s.Line, action)
			}
		}
	})
	require.Positive(t, statements)
}

// cfnLintFinding is one entry of `cfn-lint --format json`.
type cfnLintFinding struct {
	Level    string
	Message  string
	Location struct{ Start struct{ LineNumber int } }
	Rule     struct {
		ID string `json:"Id"`
	}
}

// cfnLint runs the cfn-lint binary named by APIARY_TEST_CFN_LINT on path.
func cfnLint(t *testing.T, bin, path string) []cfnLintFinding {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, "--format", "json", "--", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err, "running %s", bin)
	}
	// Exit status bits: 2 errors, 4 warnings, 8 informational; 1 is cfn-lint failing.
	if exit != nil {
		require.Zerof(t, exit.ExitCode()&1, "cfn-lint failed: %s", stderr.String())
	}
	var findings []cfnLintFinding
	require.NoErrorf(t, json.Unmarshal(stdout.Bytes(), &findings), "cfn-lint output: %s %s", stdout.String(), stderr.String())
	return findings
}

func TestTemplateCfnLint(t *testing.T) {
	t.Parallel()
	bin := os.Getenv("APIARY_TEST_CFN_LINT")
	if bin == "" {
		t.Skip("APIARY_TEST_CFN_LINT is not set (the path of a cfn-lint binary): " +
			"run scripts/test-services.sh start and source .test-services/env")
	}

	// The linter must be able to fail: a template with a bad property is an error.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      NoSuchProperty: 1\n"), 0o600))
	require.True(t, slices.ContainsFunc(cfnLint(t, bin, bad), func(f cfnLintFinding) bool { return f.Level == "Error" }),
		"cfn-lint reports no error on a broken template")

	for _, f := range cfnLint(t, bin, templatePath) {
		msg := fmt.Sprintf("%s line %d: %s", f.Rule.ID, f.Location.Start.LineNumber, f.Message)
		if f.Level == "Error" {
			t.Errorf("cfn-lint: %s", msg)
		} else {
			t.Logf("cfn-lint %s: %s", strings.ToLower(f.Level), msg)
		}
	}
}
