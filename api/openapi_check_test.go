package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// specCheck validates answers against openapi.yaml: every answer of every
// API test (env.do) is checked, so a route or field added later is covered
// without a test of its own. An answer must be one the spec lists for its
// path, method and status (or a problem+json error of a path the spec does
// not know), with a listed media type, and a JSON body must match its schema.
type specCheck struct {
	paths, components map[string]any

	mu       sync.Mutex // guards compiler and schemas
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema
}

var loadSpecCheck = sync.OnceValues(func() (*specCheck, error) {
	var y any
	if err := yaml.Unmarshal(OpenAPI(), &y); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	j, err := json.Marshal(y)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml as JSON: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020) // OpenAPI 3.1 schemas are JSON Schema 2020-12
	if err := c.AddResource(specURL, doc); err != nil {
		return nil, err
	}
	paths, _ := doc.(map[string]any)["paths"].(map[string]any)
	components, _ := doc.(map[string]any)["components"].(map[string]any)
	return &specCheck{paths: paths, components: components, compiler: c, schemas: map[string]*jsonschema.Schema{}}, nil
})

const specURL = "file:///openapi.json"

// pointer escapes JSON Pointer tokens and joins them.
func pointer(tokens ...string) string {
	r := strings.NewReplacer("~", "~0", "/", "~1")
	var b strings.Builder
	for _, t := range tokens {
		b.WriteString("/" + r.Replace(t))
	}
	return b.String()
}

func (s *specCheck) schema(ptr string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.schemas[ptr]; ok {
		return sch, nil
	}
	sch, err := s.compiler.Compile(specURL + "#" + ptr)
	if err != nil {
		return nil, err
	}
	s.schemas[ptr] = sch
	return sch, nil
}

// template finds the spec path that urlPath matches, literal segments
// preferred over parameters.
func (s *specCheck) template(urlPath string) (string, bool) {
	segs := strings.Split(urlPath, "/")
	best, bestLiterals := "", -1
	for tmpl := range s.paths {
		tsegs := strings.Split(tmpl, "/")
		if len(tsegs) != len(segs) {
			continue
		}
		literals := 0
		for i, t := range tsegs {
			if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") && segs[i] != "" {
				continue
			}
			if t != segs[i] {
				literals = -1
				break
			}
			literals++
		}
		if literals > bestLiterals {
			best, bestLiterals = tmpl, literals
		}
	}
	return best, bestLiterals >= 0
}

// check reports how an answer differs from what the spec promises.
func (s *specCheck) check(method, urlPath string, status int, header http.Header, body []byte) error {
	what := fmt.Sprintf("%s %s answered %d", method, urlPath, status)
	tmpl, ok := s.template(urlPath)
	var op map[string]any
	if ok {
		op, _ = s.paths[tmpl].(map[string]any)[strings.ToLower(method)].(map[string]any)
	}
	if op == nil {
		// Not a route: only an error, as problem+json, may come back.
		if status < 400 {
			return fmt.Errorf("%s, but the spec has no such operation", what)
		}
		return s.validate(what, pointer("components", "schemas", "Problem"), problemContentType, header, body)
	}
	responses, _ := op["responses"].(map[string]any)
	code := strconv.Itoa(status)
	resp, ok := responses[code].(map[string]any)
	if !ok {
		code = "default"
		if resp, ok = responses[code].(map[string]any); !ok {
			return fmt.Errorf("%s, which the spec does not list for %s %s (it lists %v)", what, method, tmpl, keys(responses))
		}
	}
	respPtr := pointer("paths", tmpl, strings.ToLower(method), "responses", code)
	if ref, ok := resp["$ref"].(string); ok {
		respPtr = strings.TrimPrefix(ref, "#")
		name := respPtr[strings.LastIndexByte(respPtr, '/')+1:]
		resp, _ = s.component("responses", name)
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("%s with a body, but the spec promises none", what)
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%s with Content-Type %q: %w", what, header.Get("Content-Type"), err)
	}
	if _, ok := content[mt]; !ok {
		return fmt.Errorf("%s with Content-Type %s, but the spec lists %v", what, mt, keys(content))
	}
	if mt == "text/event-stream" {
		if _, ok := content[mt].(map[string]any)["x-data-schema"]; ok {
			return s.validateEvents(what, respPtr+pointer("content", mt, "x-data-schema"), body)
		}
	}
	if !isJSON(mt) {
		return nil
	}
	return s.validate(what, respPtr+pointer("content", mt, "schema"), mt, header, body)
}

// validateEvents checks the data of every Server-Sent Events message in
// body against the schema at ptr.
func (s *specCheck) validateEvents(what, ptr string, body []byte) error {
	sch, err := s.schema(ptr)
	if err != nil {
		return fmt.Errorf("compile the spec's schema %s: %w", ptr, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s with an event whose data is not JSON: %w", what, err)
		}
		if err := sch.Validate(v); err != nil {
			return fmt.Errorf("%s with an event the spec's schema (%s) refuses: %v\ndata: %.2000s", what, ptr, err, data)
		}
	}
	return nil
}

// specHandler serves h and checks each answer against the spec once it is
// complete, as env.do does: for tests that need a real HTTP server (event
// streams). A mismatch fails t (t.Errorf: the check runs in the server's
// goroutine).
func specHandler(t testing.TB, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &teeWriter{ResponseWriter: w}
		h.ServeHTTP(tw, r)
		spec, err := loadSpecCheck()
		if err == nil {
			err = spec.check(r.Method, r.URL.EscapedPath(), tw.status(), w.Header(), tw.body.Bytes())
		}
		if err != nil {
			t.Errorf("%v", err)
		}
	})
}

// teeWriter keeps a copy of what it passes on.
type teeWriter struct {
	http.ResponseWriter
	code int
	body bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

func (w *teeWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the connection (Flush, deadlines).
func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *teeWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (s *specCheck) component(section, name string) (map[string]any, bool) {
	sec, _ := s.components[section].(map[string]any)
	c, ok := sec[name].(map[string]any)
	return c, ok
}

// validate checks that body, of media type want, matches the schema at ptr.
func (s *specCheck) validate(what, ptr, want string, header http.Header, body []byte) error {
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != want {
		return fmt.Errorf("%s with Content-Type %q, not %s", what, header.Get("Content-Type"), want)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s with a body that is not JSON: %w", what, err)
	}
	sch, err := s.schema(ptr)
	if err != nil {
		return fmt.Errorf("compile the spec's schema %s: %w", ptr, err)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s with a body the spec's schema (%s) refuses: %v\nbody: %.2000s", what, ptr, err, body)
	}
	return nil
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The spec check itself refuses what the spec does not promise.
func TestSpecCheckRefuses(t *testing.T) {
	t.Parallel()
	spec, err := loadSpecCheck()
	require.NoError(t, err)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	job := `{"id":"job_1","kind":"ingest","status":"queued","counts":{"documents_total":1,"documents_done":0,"documents_failed":0,"chunks":0},"errors":[],"attempts":0,"source":"upload","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`
	require.NoError(t, spec.check(http.MethodGet, "/v1/jobs/job_1", 200, jsonHeader, []byte(job)))
	for name, tc := range map[string]struct {
		method, path string
		status       int
		header       http.Header
		body         string
		want         string
	}{
		"missing field":      {http.MethodGet, "/v1/jobs/job_1", 200, jsonHeader, strings.Replace(job, `"attempts":0,`, "", 1), "missing property 'attempts'"},
		"wrong type":         {http.MethodGet, "/v1/jobs/job_1", 200, jsonHeader, strings.Replace(job, `"attempts":0`, `"attempts":"0"`, 1), "attempts"},
		"unlisted status":    {http.MethodGet, "/v1/jobs/job_1", 418, jsonHeader, job, "does not list"},
		"unlisted media":     {http.MethodGet, "/v1/jobs/job_1", 200, http.Header{"Content-Type": {"text/plain"}}, job, "the spec lists [application/json]"},
		"no such route":      {http.MethodGet, "/v1/nowhere", 200, jsonHeader, `{}`, "no such operation"},
		"error not problem":  {http.MethodGet, "/v1/jobs/job_1", 404, jsonHeader, `{"error":"x"}`, "the spec lists [application/problem+json]"},
		"problem incomplete": {http.MethodGet, "/v1/jobs/job_1", 404, http.Header{"Content-Type": {problemContentType}}, `{"status":404}`, "missing properties"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := spec.check(tc.method, tc.path, tc.status, tc.header, []byte(tc.body))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Every schema's type is one name: code generators (oapi-codegen, ogen,
// openapi-python-client) stop at a list of types; alternatives are oneOf.
func TestSpecTypesAreSingle(t *testing.T) {
	t.Parallel()
	var doc any
	require.NoError(t, yaml.Unmarshal(OpenAPI(), &doc))
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ty, ok := v["type"]; ok && !strings.HasSuffix(path, "/properties") { // there "type" names a property
				_, isString := ty.(string)
				require.True(t, isString, "%s: type %v is not a single name; write oneOf", path, ty)
			}
			for k, x := range v {
				walk(path+"/"+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s/%d", path, i), x)
			}
		}
	}
	walk("", doc)
}
