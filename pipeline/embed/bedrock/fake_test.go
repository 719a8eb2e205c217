package bedrock_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/apiaryhq/apiary/pipeline/embed/local"
)

// fakeBedrock follows the bedrock-runtime REST API for InvokeModel
// (POST /model/{modelId}/invoke, restJson1 errors) for Titan Text
// Embeddings v2 and Cohere Embed v3, with their documented request schemas
// and limits. It checks each request's SigV4 signature (service "bedrock")
// against its one key pair. Vectors are the local hashing embedder's, so
// they are deterministic and similar texts get similar vectors; a Cohere
// query is embedded with a marker word, so it differs from the same text as
// a document. Its validation errors quote the input, as Bedrock's may.
type fakeBedrock struct {
	*httptest.Server
	accessKey, secretKey, region string
	// denied answers AccessDeniedException: the key is fine, its policy
	// does not allow bedrock:InvokeModel.
	denied bool
	// floatsOnly answers Cohere without embeddings by type (the shape of a
	// request without embedding_types).
	floatsOnly bool

	mu         sync.Mutex
	requests   int
	inFlight   int
	maxFlight  int
	inputTypes []string
	faults     []fault
}

// fault is one queued answer instead of the normal one: an error code, or a
// status 200 body. "%s" in msg is replaced by the request's first text.
type fault struct {
	status int
	code   string
	msg    string
	body   string
}

const (
	accessKey = "AKIAAPIARYTEST000001"
	secretKey = "apiary/test/SECRET/key/that/must/not/leak0"
	region    = "us-east-1"
)

func newFake(t *testing.T) *fakeBedrock {
	t.Helper()
	f := &fakeBedrock{accessKey: accessKey, secretKey: secretKey, region: region}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeBedrock) queue(faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, faults...)
}

func (f *fakeBedrock) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *fakeBedrock) types() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.inputTypes)
}

func (f *fakeBedrock) maxInFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxFlight
}

func awsError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", code+":http://internal.amazon.com/coral/com.amazon.bedrock/")
	w.Header().Set("X-Amzn-Requestid", "req-0001")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// status is each error code's HTTP status, as InvokeModel documents them.
var status = map[string]int{
	"AccessDeniedException": 403, "ValidationException": 400, "ThrottlingException": 429,
	"ResourceNotFoundException": 404, "ModelTimeoutException": 408, "ServiceUnavailableException": 503,
	"ModelNotReadyException": 429, "ModelErrorException": 424, "InternalServerException": 500,
	"UnrecognizedClientException": 403, "InvalidSignatureException": 403,
}

func (f *fakeBedrock) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	f.inFlight++
	f.maxFlight = max(f.maxFlight, f.inFlight)
	var ft *fault
	if len(f.faults) > 0 {
		ft = &f.faults[0]
		f.faults = f.faults[1:]
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()

	body, err := io.ReadAll(r.Body)
	if err != nil {
		awsError(w, 400, "ValidationException", "unreadable body")
		return
	}
	model, ok := strings.CutPrefix(r.URL.Path, "/model/")
	model, ok2 := strings.CutSuffix(model, "/invoke")
	if r.Method != http.MethodPost || !ok || !ok2 {
		awsError(w, 404, "UnknownOperationException", "")
		return
	}
	if code, msg := f.verify(r, body); code != "" {
		awsError(w, status[code], code, msg)
		return
	}
	if f.denied {
		awsError(w, 403, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/apiary is not authorized to perform: bedrock:InvokeModel")
		return
	}
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
		awsError(w, 400, "ValidationException", "Content-Type and Accept must be application/json")
		return
	}
	var texts []string
	var answer any
	var vErr string
	switch model {
	case "amazon.titan-embed-text-v2:0":
		texts, answer, vErr = f.titan(r.Context(), body)
	case "cohere.embed-english-v3", "cohere.embed-multilingual-v3":
		texts, answer, vErr = f.cohere(r.Context(), body)
	default:
		awsError(w, 404, "ResourceNotFoundException", "Could not resolve the foundation model from the provided model identifier.")
		return
	}
	if vErr != "" {
		awsError(w, 400, "ValidationException", vErr)
		return
	}
	if ft != nil {
		if ft.code != "" {
			msg := ft.msg
			if strings.Contains(msg, "%s") {
				msg = fmt.Sprintf(msg, texts[0])
			}
			awsError(w, status[ft.code], ft.code, msg)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(ft.body))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// verify checks the SigV4 signature of r by signing it again with the
// fake's secret key; it returns the error code and message AWS answers with.
func (f *fakeBedrock) verify(r *http.Request, body []byte) (code, msg string) {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	if !ok {
		return "InvalidSignatureException", "Authorization header requires AWS4-HMAC-SHA256"
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(auth, ", ") {
		k, v, _ := strings.Cut(part, "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/") // key/date/region/service/aws4_request
	if len(scope) != 5 || scope[3] != "bedrock" || scope[2] != f.region || scope[4] != "aws4_request" {
		return "InvalidSignatureException", "Credential should be scoped to a valid region and the service bedrock: " + fields["Credential"]
	}
	if scope[0] != f.accessKey {
		return "UnrecognizedClientException", "The security token included in the request is invalid."
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "InvalidSignatureException", "missing X-Amz-Date"
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.RequestURI, bytes.NewReader(body))
	for h := range strings.SplitSeq(fields["SignedHeaders"], ";") {
		if h != "host" && h != "content-length" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	again.ContentLength = int64(len(body))
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: f.accessKey, SecretAccessKey: f.secretKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), "bedrock", f.region, at); err != nil {
		return "InvalidSignatureException", err.Error()
	}
	if again.Header.Get("Authorization") != r.Header.Get("Authorization") {
		return "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
	}
	return "", ""
}

// strict decodes body into v, refusing unknown fields.
func strict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (f *fakeBedrock) titan(ctx context.Context, body []byte) (texts []string, answer any, verr string) {
	var req struct {
		InputText      *string  `json:"inputText"`
		Dimensions     *int     `json:"dimensions"`
		Normalize      *bool    `json:"normalize"`
		EmbeddingTypes []string `json:"embeddingTypes"`
	}
	if err := strict(body, &req); err != nil || req.InputText == nil {
		return nil, nil, "Malformed input request: " + string(body)
	}
	n := utf8.RuneCountInString(*req.InputText)
	if n < 1 || n > 50_000 {
		return nil, nil, fmt.Sprintf("Malformed input request: #/inputText: expected length 1 to 50000, actual: %d: %q", n, *req.InputText)
	}
	dim := 1024
	if req.Dimensions != nil {
		dim = *req.Dimensions
	}
	if dim != 256 && dim != 512 && dim != 1024 {
		return nil, nil, "Malformed input request: #/dimensions: 256, 512 or 1024"
	}
	vecs, _ := local.New(local.Config{Dim: dim}).Embed(ctx, []string{*req.InputText})
	if req.Normalize == nil || !*req.Normalize {
		scale(vecs, 3)
	}
	return []string{*req.InputText}, map[string]any{"embedding": vecs[0], "inputTextTokenCount": len(strings.Fields(*req.InputText))}, ""
}

func (f *fakeBedrock) cohere(ctx context.Context, body []byte) (texts []string, answer any, verr string) {
	var req struct {
		Texts          []string `json:"texts"`
		InputType      string   `json:"input_type"`
		Truncate       string   `json:"truncate"`
		EmbeddingTypes []string `json:"embedding_types"`
	}
	if err := strict(body, &req); err != nil {
		return nil, nil, "Malformed input request: " + string(body)
	}
	if !slices.Contains([]string{"search_document", "search_query", "classification", "clustering"}, req.InputType) {
		return nil, nil, "Malformed input request: #/input_type: " + req.InputType + " is not a valid enum value"
	}
	if req.Truncate != "" && !slices.Contains([]string{"NONE", "START", "END"}, req.Truncate) {
		return nil, nil, "Malformed input request: #/truncate"
	}
	if len(req.Texts) == 0 || len(req.Texts) > 96 {
		return nil, nil, fmt.Sprintf("Malformed input request: #/texts: expected 1 to 96 items, actual: %d", len(req.Texts))
	}
	for i, t := range req.Texts {
		if n := utf8.RuneCountInString(t); n > 2048 {
			return nil, nil, fmt.Sprintf("Malformed input request: #/texts/%d: expected maxLength: 2048, actual: %d: %q", i, n, t)
		}
	}
	for _, et := range req.EmbeddingTypes {
		if !slices.Contains([]string{"float", "int8", "uint8", "binary", "ubinary"}, et) {
			return nil, nil, "Malformed input request: #/embedding_types"
		}
	}
	f.mu.Lock()
	f.inputTypes = append(f.inputTypes, req.InputType)
	f.mu.Unlock()
	in := slices.Clone(req.Texts)
	if req.InputType == "search_query" {
		for i := range in {
			in[i] = "querymarker " + in[i]
		}
	}
	vecs, _ := local.New(local.Config{Dim: 1024}).Embed(ctx, in)
	scale(vecs, 1.7) // Cohere's vectors are not of unit length
	if f.floatsOnly || len(req.EmbeddingTypes) == 0 {
		return req.Texts, map[string]any{"id": "e-1", "embeddings": vecs, "texts": req.Texts, "response_type": "embeddings_floats"}, ""
	}
	return req.Texts, map[string]any{"id": "e-1", "embeddings": map[string]any{"float": vecs}, "texts": req.Texts, "response_type": "embeddings_by_type"}, ""
}

func scale(vecs [][]float32, by float32) {
	for _, v := range vecs {
		for i := range v {
			v[i] *= by
		}
	}
}
