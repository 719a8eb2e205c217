package openai_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/apiaryhq/apiary/pipeline/embed/local"
)

// fakeServer follows OpenAI's documented embeddings API
// (POST /v1/embeddings) and, with azure set, Azure OpenAI's
// (POST /openai/deployments/{deployment}/embeddings?api-version=, key in
// the api-key header). Vectors are the local hashing embedder's, so they are
// deterministic and similar texts get similar vectors; data comes back in
// shuffled order. Its errors quote what OpenAI's do: the 401 quotes the key,
// the 400 the input.
type fakeServer struct {
	*httptest.Server
	key   string
	azure bool
	// native are the models served and their vector sizes; shortenable ones
	// take "dimensions".
	native map[string]int
	// scale multiplies every vector: a server that does not normalise.
	scale float32

	mu       sync.Mutex
	requests int
	batches  []int // texts per successful request
	faults   []fault
}

// fault is one queued answer instead of the normal one.
type fault struct {
	status int
	header map[string]string
	body   string
}

const (
	testKey      = "sk-test-0123456789abcdefSECRET"
	azureVersion = "2024-10-21"
	deployment   = "embed-small"
	maxInputs    = 2048
	maxTokens    = 8192
	maxTotal     = 300_000
)

func newFake(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{key: testKey, scale: 1, native: map[string]int{
		"text-embedding-3-small": 1536,
		"nomic-embed-text":       768, // an Ollama model: no "dimensions"
	}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// baseURL is the BaseURL a client of f is configured with.
func (f *fakeServer) baseURL() string {
	if f.azure {
		return f.URL + "/openai/deployments/" + deployment
	}
	return f.URL + "/v1"
}

// queue makes the next requests answer with faults, in order.
func (f *fakeServer) queue(faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, faults...)
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *fakeServer) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batches...)
}

func apiError(w http.ResponseWriter, status int, typ, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": code,
	}})
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	var ft *fault
	if len(f.faults) > 0 {
		ft = &f.faults[0]
		f.faults = f.faults[1:]
	}
	f.mu.Unlock()

	path := "/v1/embeddings"
	if f.azure {
		path = "/openai/deployments/" + deployment + "/embeddings"
	}
	if r.Method != http.MethodPost || r.URL.Path != path {
		apiError(w, http.StatusNotFound, "invalid_request_error", "unknown_url", "Unknown request URL: "+r.Method+" "+r.URL.Path)
		return
	}
	// Authentication.
	if f.azure {
		if r.URL.Query().Get("api-version") != azureVersion {
			apiError(w, http.StatusNotFound, "", "404", "Resource not found")
			return
		}
		if r.Header.Get("Authorization") != "" || r.Header.Get("api-key") != f.key {
			apiError(w, http.StatusUnauthorized, "", "401",
				"Access denied due to invalid subscription key "+r.Header.Get("api-key")+". Make sure to provide a valid key.")
			return
		}
	} else if got := r.Header.Get("Authorization"); f.key != "" && got != "Bearer "+f.key {
		apiError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
			"Incorrect API key provided: "+strings.TrimPrefix(got, "Bearer ")+".")
		return
	}
	if ft != nil {
		for k, v := range ft.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(ft.status)
		_, _ = w.Write([]byte(ft.body))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		apiError(w, http.StatusBadRequest, "invalid_request_error", "", "Content-Type must be application/json, got "+ct)
		return
	}

	// The body, strictly.
	var req struct {
		Model          string   `json:"model"`
		Input          []string `json:"input"`
		Dimensions     *int     `json:"dimensions"`
		EncodingFormat string   `json:"encoding_format"`
		User           string   `json:"user"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request.")
		return
	}
	native, ok := f.native[req.Model]
	if f.azure {
		native, ok = f.native["text-embedding-3-small"], true // the deployment decides
	}
	if !ok {
		apiError(w, http.StatusNotFound, "invalid_request_error", "model_not_found", "The model `"+req.Model+"` does not exist.")
		return
	}
	if len(req.Input) == 0 || len(req.Input) > maxInputs {
		apiError(w, http.StatusBadRequest, "invalid_request_error", "", fmt.Sprintf("'input' must have 1 to %d items", maxInputs))
		return
	}
	total := 0
	for i, in := range req.Input {
		tokens := len(strings.Fields(in))
		switch {
		case in == "":
			apiError(w, http.StatusBadRequest, "invalid_request_error", "", fmt.Sprintf("'$.input[%d]' is invalid: empty string", i))
			return
		case tokens > maxTokens:
			apiError(w, http.StatusBadRequest, "invalid_request_error", "context_length_exceeded",
				fmt.Sprintf("This model's maximum context length is %d tokens, however you requested %d tokens: %q", maxTokens, tokens, in))
			return
		}
		total += tokens
	}
	if total > maxTotal {
		apiError(w, http.StatusBadRequest, "invalid_request_error", "max_tokens_per_request", "Requested too many tokens")
		return
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" {
		apiError(w, http.StatusBadRequest, "invalid_request_error", "", "this fake serves float only")
		return
	}
	dim := native
	if req.Dimensions != nil {
		if !strings.HasPrefix(req.Model, "text-embedding-3") && !f.azure {
			apiError(w, http.StatusBadRequest, "invalid_request_error", "", "This model does not support specifying dimensions.")
			return
		}
		if *req.Dimensions < 1 || *req.Dimensions > native {
			apiError(w, http.StatusBadRequest, "invalid_request_error", "", "Invalid value for 'dimensions'")
			return
		}
		dim = *req.Dimensions
	}

	vecs, err := local.New(local.Config{Dim: dim}).Embed(r.Context(), req.Input)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "server_error", "", err.Error())
		return
	}
	type datum struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	data := make([]datum, len(vecs))
	for i, v := range vecs {
		for j := range v {
			v[j] *= f.scale
		}
		data[i] = datum{Object: "embedding", Index: i, Embedding: v}
	}
	rand.Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })
	var body bytes.Buffer
	_ = json.NewEncoder(&body).Encode(map[string]any{
		"object": "list", "data": data, "model": req.Model,
		"usage": map[string]int{"prompt_tokens": total, "total_tokens": total},
	})
	f.mu.Lock()
	f.batches = append(f.batches, len(req.Input))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body.Bytes())
}
