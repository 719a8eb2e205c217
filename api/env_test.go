package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/custody"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/pipeline"
	embedlocal "github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/pipeline/lexical"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/queue"
	"github.com/apiaryhq/apiary/workers/queue/jetstream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...)
}

// stores are the record store and the keyring, on a fresh nats-server.
type stores struct {
	nc   *nats.Conn
	recs *records.Store
	keys *keyring.Keyring
}

func newStores(t testing.TB) stores {
	t.Helper()
	ctx := context.Background()
	nc, js := natstest.Connect(t)
	recs, err := records.Open(ctx, natskv.NewKVStore(js, natskv.Config{}))
	require.NoError(t, err)
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	keys, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: root})
	require.NoError(t, err)
	// Customer-named fields sealed as cmd/apiary seals them.
	recs.SealFields(lexical.NewKeys(keys, recs, lexical.KeysConfig{}).Derived("record fields"))
	return stores{nc: nc, recs: recs, keys: keys}
}

// env is a Server over real dependencies, with the default account
// bootstrapped and a token of each role in it.
type env struct {
	stores
	t        testing.TB
	srv      *Server
	queue    queue.Queue
	bus      events.Bus
	stager   *upload.Stager
	pipe     *pipeline.Pipeline
	vecs     storage.VectorStore // under pipe
	logs     *testutil.Buffer
	operator string // operator admin token of the default account
	admin    string
	editor   string
	viewer   string
}

type envOption func(*Config, *Deps)

// withCustody gives the server a custody of ephemeral tokens, closed with
// the test, and hands it to *held unless held is nil.
func withCustody(t testing.TB, held **custody.Custody) envOption {
	return func(_ *Config, d *Deps) {
		cu, err := custody.New(custody.Config{Leases: d.Records})
		require.NoError(t, err)
		t.Cleanup(func() { _ = cu.Close() })
		d.Custody = cu
		if held != nil {
			*held = cu
		}
	}
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	st := newStores(t)
	q, err := jetstream.New(ctx, jetstream.Config{Conn: st.nc})
	require.NoError(t, err)
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: st.nc})
	require.NoError(t, err)
	vs, err := local.Open(t.TempDir(), local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = vs.Close() })
	blobs, err := local.OpenBlobs(t.TempDir())
	require.NoError(t, err)
	stager := upload.NewStager(blobs, st.keys)
	pipe, err := pipeline.New(pipeline.Config{}, embedlocal.New(embedlocal.Config{}), st.keys, vs, st.recs)
	require.NoError(t, err)

	logs := &testutil.Buffer{}
	cfg := Config{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Model: pipe.Model()}
	deps := Deps{Records: st.recs, Queue: q, Events: bus, Deletions: bus, Stager: stager, Search: pipe, Keys: st.keys}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	srv, err := New(cfg, deps)
	require.NoError(t, err)

	op, created, err := Bootstrap(ctx, st.recs, st.keys, "")
	require.NoError(t, err)
	require.True(t, created)
	e := &env{stores: st, t: t, srv: srv, queue: q, bus: bus, stager: stager, pipe: pipe, vecs: vs, logs: logs, operator: op}
	e.admin = e.token(apiary.DefaultAccount, apiary.RoleAdmin)
	e.editor = e.token(apiary.DefaultAccount, apiary.RoleEditor)
	e.viewer = e.token(apiary.DefaultAccount, apiary.RoleViewer)
	return e
}

// token issues a token of role in account, straight into the records.
func (e *env) token(account apiary.AccountID, role apiary.Role) string {
	e.t.Helper()
	_, secret, err := issueToken(context.Background(), e.recs, account, string(role), role, false, nil)
	require.NoError(e.t, err)
	return secret
}

// otherAccount creates a second account through the API and returns its admin token.
func (e *env) otherAccount(name string) (apiary.AccountID, string) {
	e.t.Helper()
	rec := e.do(http.MethodPost, "/v1/accounts", e.operator, jsonBody(map[string]string{"name": name}))
	require.Equal(e.t, http.StatusCreated, rec.Code, rec.Body.String())
	var out createAccountResponse
	require.NoError(e.t, json.Unmarshal(rec.Body.Bytes(), &out))
	return out.ID, out.Token
}

// request is an HTTP request to send through the echo instance.
type request struct {
	contentType string
	body        io.Reader
	header      http.Header
}

func jsonBody(v any) request {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return request{contentType: "application/json", body: bytes.NewReader(b)}
}

func rawBody(contentType, body string) request {
	return request{contentType: contentType, body: strings.NewReader(body)}
}

type filePart struct {
	name, contentType, data string
}

// multipartBody builds a multipart/form-data body of files and fields.
func multipartBody(files []filePart, fields map[string]string) request {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = w.WriteField(k, v)
	}
	for _, f := range files {
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", `form-data; name="file"; filename="`+f.name+`"`)
		if f.contentType != "" {
			h.Set("Content-Type", f.contentType)
		}
		p, _ := w.CreatePart(h)
		_, _ = p.Write([]byte(f.data))
	}
	_ = w.Close()
	return request{contentType: w.FormDataContentType(), body: &buf}
}

func (e *env) do(method, target, token string, reqs ...request) *httptest.ResponseRecorder {
	e.t.Helper()
	var r request
	if len(reqs) > 0 {
		r = reqs[0]
	}
	req := httptest.NewRequest(method, target, r.body)
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.srv.Echo().ServeHTTP(rec, req)
	e.checkResponse(rec)
	e.checkSpec(req, rec)
	return rec
}

// checkSpec holds for every response: it is one that openapi.yaml promises
// for its route and status, and its JSON body matches the schema there.
func (e *env) checkSpec(req *http.Request, rec *httptest.ResponseRecorder) {
	e.t.Helper()
	spec, err := loadSpecCheck()
	require.NoError(e.t, err)
	require.NoError(e.t, spec.check(req.Method, req.URL.EscapedPath(), rec.Code, rec.Header(), rec.Body.Bytes()))
}

// checkResponse holds for every response: security headers and a request
// id; every error is problem+json with a detail.
func (e *env) checkResponse(rec *httptest.ResponseRecorder) {
	e.t.Helper()
	require.Equal(e.t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
	require.NotEmpty(e.t, rec.Header().Get("X-Request-Id"))
	if rec.Code < 400 {
		return
	}
	require.Equal(e.t, problemContentType, rec.Header().Get("Content-Type"), rec.Body.String())
	var p problem
	require.NoError(e.t, json.Unmarshal(rec.Body.Bytes(), &p), rec.Body.String())
	require.Equal(e.t, rec.Code, p.Status)
	require.NotEmpty(e.t, p.Type)
	require.NotEmpty(e.t, p.Title)
	require.NotEmpty(e.t, p.Detail)
	require.Equal(e.t, rec.Header().Get("X-Request-Id"), p.RequestID)
}

// requireProblem checks an error answer's status and that its detail says
// something containing want.
func requireProblem(t testing.TB, rec *httptest.ResponseRecorder, status int, want string) problem {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	var p problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.Contains(t, p.Detail, want)
	return p
}

func decode[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v), rec.Body.String())
	return v
}

// ingest sends JSON documents as editor and returns the job id.
func (e *env) ingest(token string, docs ...map[string]any) apiary.JobID {
	e.t.Helper()
	rec := e.do(http.MethodPost, "/v1/ingest", token, jsonBody(map[string]any{"documents": docs}))
	require.Equal(e.t, http.StatusAccepted, rec.Code, rec.Body.String())
	return decode[ingestResponse](e.t, rec).JobID
}

// seed ingests docs synchronously through the pipeline, as a worker would.
func (e *env) seed(account apiary.AccountID, docs ...apiary.Document) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job := apiary.Job{ID: apiary.NewJobID(), Account: account, Version: uint64(time.Now().UnixNano())}
	for _, d := range docs {
		_, err := e.pipe.Ingest(ctx, job, d)
		require.NoError(e.t, err)
	}
}

type (
	ioReader   = io.Reader
	queueIface = queue.Queue
)

var recordsFilterAll = records.JobFilter{Limit: 500}

// receive takes n deliveries from the queue (acking them), failing after a deadline.
func (e *env) receive(n int) []apiary.JobMessage {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []apiary.JobMessage
	for len(out) < n {
		ds, err := e.queue.Receive(ctx, n-len(out))
		require.NoError(e.t, err)
		for _, d := range ds {
			out = append(out, d.Msg)
			require.NoError(e.t, d.Ack(ctx))
		}
	}
	return out
}
