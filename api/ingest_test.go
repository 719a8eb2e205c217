package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/events"
)

func TestIngestJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"documents": []map[string]any{
		{"id": "a.txt", "title": "A", "text": "alpha text", "metadata": map[string]any{"lang": "en", "n": 3, "draft": false}},
		{"id": "b", "text": "beta text"},
	}}))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	out := decode[ingestResponse](t, rec)
	require.Equal(t, apiary.JobQueued, out.Status)
	require.NoError(t, out.JobID.Validate())
	require.Equal(t, "/v1/jobs/"+string(out.JobID), rec.Header().Get("Location"))

	// The job record.
	job, err := e.recs.Job(ctx, apiary.DefaultAccount, out.JobID)
	require.NoError(t, err)
	require.Equal(t, apiary.JobQueued, job.Status)
	require.Equal(t, 2, job.Counts.DocumentsTotal)
	require.Equal(t, "upload", job.Source)
	require.NotZero(t, job.Version)

	// The staged documents, metadata turned into strings.
	docs, err := e.stager.Load(ctx, apiary.DefaultAccount, out.JobID)
	require.NoError(t, err)
	require.Len(t, docs, 2)
	require.Equal(t, apiary.DocumentID("a.txt"), docs[0].ID)
	require.Equal(t, "A", docs[0].Title)
	require.Equal(t, "alpha text", docs[0].Text)
	require.Equal(t, map[string]string{"lang": "en", "n": "3", "draft": "false"}, docs[0].Metadata)

	// The queue message: its kind and ids only.
	require.Equal(t, []apiary.JobMessage{{Kind: apiary.JobKindIngest, Account: apiary.DefaultAccount, Job: out.JobID}}, e.receive(1))

	// The job.queued event.
	evs, err := e.bus.Replay(ctx, events.Filter{Account: apiary.DefaultAccount, Job: out.JobID}, 10)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, apiary.EventJobQueued, evs[0].Type)
	require.True(t, strings.HasPrefix(evs[0].ID, "evt_"))
	require.Equal(t, 2, evs[0].Counts.DocumentsTotal)
}

func TestIngestMultipart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()

	t.Run("files named by their file names", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, multipartBody([]filePart{
			{name: "notes.md", data: "# Notes\n\nhello"},
			{name: "page", contentType: "text/html; charset=utf-8", data: "<p>hi</p>"},
			{name: "data.csv", contentType: "application/octet-stream", data: "a,b\n1,2\n"},
		}, nil))
		require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
		docs, err := e.stager.Load(ctx, apiary.DefaultAccount, decode[ingestResponse](t, rec).JobID)
		require.NoError(t, err)
		require.Len(t, docs, 3)
		got := map[apiary.DocumentID]string{}
		for _, d := range docs {
			got[d.ID] = d.ContentType
			require.NotEmpty(t, d.Raw)
		}
		require.Equal(t, map[apiary.DocumentID]string{"notes.md": "text/markdown", "page": "text/html", "data.csv": "text/csv"}, got)
	})

	t.Run("documents detected by type, extension or first bytes", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, multipartBody([]filePart{
			{name: "scan", contentType: "application/octet-stream", data: "%PDF-1.7\n"},
			{name: "letter.docx", contentType: "application/octet-stream", data: "PK"},
			{name: "memo", contentType: "text/rtf", data: `{\rtf1 memo}`},
			{name: "book", contentType: "application/epub+zip", data: "PK"},
		}, nil))
		require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
		docs, err := e.stager.Load(ctx, apiary.DefaultAccount, decode[ingestResponse](t, rec).JobID)
		require.NoError(t, err)
		got := map[apiary.DocumentID]string{}
		for _, d := range docs {
			got[d.ID] = d.ContentType
		}
		require.Equal(t, map[apiary.DocumentID]string{
			"scan":        "application/pdf",
			"letter.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
			"memo":        "application/rtf",
			"book":        "application/epub+zip",
		}, got)
	})

	t.Run("one file with an id", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, multipartBody(
			[]filePart{{name: "report.txt", data: "quarterly"}}, map[string]string{"id": "reports/q3"}))
		require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
		docs, err := e.stager.Load(ctx, apiary.DefaultAccount, decode[ingestResponse](t, rec).JobID)
		require.NoError(t, err)
		require.Len(t, docs, 1)
		require.Equal(t, apiary.DocumentID("reports/q3"), docs[0].ID)
		require.Equal(t, "text/plain", docs[0].ContentType)
	})
}

func TestIngestRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.MaxDocuments = 3; c.MaxDocumentIDLen = 20 })
	doc := func(id, text string) map[string]any { return map[string]any{"id": id, "text": text} }
	docs := func(ds ...map[string]any) request {
		if ds == nil {
			ds = []map[string]any{}
		}
		return jsonBody(map[string]any{"documents": ds})
	}
	js := func(s string) request { return rawBody("application/json", s) }

	for _, tc := range []struct {
		name   string
		req    request
		header map[string]string
		status int
		want   string
	}{
		{"no content type", request{body: strings.NewReader(`{"documents":[]}`)}, nil, 415, "Content-Type header is missing"},
		{"unknown content type", rawBody("text/plain", "hello"), nil, 415, "text/plain"},
		{"malformed content type", rawBody("application/json; =", "{}"), nil, 400, "Content-Type"},
		{"empty body", js(""), nil, 400, "body is empty"},
		{"blank body", js("  \n"), nil, 400, "body is empty"},
		{"malformed JSON", js("{\n  \"documents\": [\n    {\"id\": \"a\" \"text\": \"x\"}]}"), nil, 400, "line 3, column"},
		{"truncated JSON", js(`{"documents": [`), nil, 400, "ends before"},
		{"trailing data", js(`{"documents": [{"id":"a","text":"x"}]} {}`), nil, 400, "after the top-level value"},
		{"wrong type", js(`{"documents": {"id": "a"}}`), nil, 400, `"documents" must be an array`},
		{"unknown field", js(`{"documents": [{"id":"a","txt":"x"}]}`), nil, 400, `unknown JSON field "txt"`},
		{"documents missing", js(`{}`), nil, 400, "documents field is missing"},
		{"empty documents", docs(), nil, 400, "documents list is empty"},
		{"too many documents", docs(doc("a", "x"), doc("b", "x"), doc("c", "x"), doc("d", "x")), nil, 400, "the limit is 3"},
		{"missing id", docs(doc("", "x")), nil, 400, "document id is required"},
		{"id with spaces around", docs(doc(" a", "x")), nil, 400, "white space"},
		{"id with control character", docs(doc("a\tb", "x")), nil, 400, "control characters"},
		{"id too long", docs(doc(strings.Repeat("x", 21), "x")), nil, 400, "longer than 20 bytes"},
		{"duplicate ids", docs(doc("a", "x"), doc("a", "y")), nil, 400, "same id"},
		{"empty text", docs(doc("a", "")), nil, 400, "has no text"},
		{"invalid UTF-8", js("{\"documents\": [{\"id\": \"a\", \"text\": \"\xff\xfe\"}]}"), nil, 400, "not valid UTF-8"},
		{"nested metadata", docs(map[string]any{"id": "a", "text": "x", "metadata": map[string]any{"k": map[string]any{"x": 1}}}), nil, 400, "nested"},
		{"array metadata", docs(map[string]any{"id": "a", "text": "x", "metadata": map[string]any{"k": []int{1}}}), nil, 400, "nested"},
		{"null metadata", docs(map[string]any{"id": "a", "text": "x", "metadata": map[string]any{"k": nil}}), nil, 400, "null"},
		{"empty metadata key", docs(map[string]any{"id": "a", "text": "x", "metadata": map[string]any{"": "v"}}), nil, 400, "empty key"},
		{"title too long", docs(map[string]any{"id": "a", "text": "x", "title": strings.Repeat("t", 1025)}), nil, 400, "documents[0].title: 1025 bytes, the limit is 1024"},
		{"file name too long for a title", multipartBody([]filePart{{name: strings.Repeat("n", 1030) + ".txt", data: "x"}}, map[string]string{"id": "a"}), nil, 400, "documents[0].title: 1034 bytes, the limit is 1024"},
		{"too many metadata keys", docs(map[string]any{"id": "a", "text": "x", "metadata": manyKeys(65, 1)}), nil, 400, "documents[0].metadata: at most 64 keys, got 65"},
		{"metadata key too long", docs(map[string]any{"id": "a", "text": "x", "metadata": map[string]any{strings.Repeat("k", 129): "v"}}), nil, 400, "is 129 bytes, the limit is 128"},
		{"metadata value too long", docs(doc("b", "x"), map[string]any{"id": "a", "text": "x", "metadata": map[string]any{"k": strings.Repeat("v", 1<<20)}}), nil, 400, `documents[1].metadata["k"]: value is 1048576 bytes, the limit is 2048`},
		{"metadata too large in all", docs(map[string]any{"id": "a", "text": "x", "metadata": manyKeys(10, 2000)}), nil, 400, "documents[0].metadata: keys and values are 20020 bytes together, the limit is 16384"},
		{"bad idempotency key", docs(doc("a", "x")), map[string]string{"Idempotency-Key": "has space"}, 400, "Idempotency-Key"},
		{"long idempotency key", docs(doc("a", "x")), map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, 400, "1 to 255"},
		{"unsupported file", multipartBody([]filePart{{name: "scan.odt", contentType: "application/vnd.oasis.opendocument.text", data: "PK"}}, nil), nil, 415, "supported are"},
		{"file without extension", multipartBody([]filePart{{name: "blob", data: "x"}}, nil), nil, 415, "supported are"},
		{"empty file", multipartBody([]filePart{{name: "a.txt", data: ""}}, nil), nil, 400, "is empty"},
		{"no file part", multipartBody(nil, map[string]string{"id": "a"}), nil, 400, "no file"},
		{"unknown form field", multipartBody([]filePart{{name: "a.txt", data: "x"}}, map[string]string{"title": "t"}), nil, 400, `unknown form field "title"`},
		{"id with two files", multipartBody([]filePart{{name: "a.txt", data: "x"}, {name: "b.txt", data: "y"}}, map[string]string{"id": "c"}), nil, 400, "single file"},
		{"duplicate file names", multipartBody([]filePart{{name: "a.txt", data: "x"}, {name: "a.txt", data: "y"}}, nil), nil, 400, "same id"},
		{"no boundary", rawBody("multipart/form-data", "--x--"), nil, 400, "boundary"},
		{"broken multipart", rawBody("multipart/form-data; boundary=zzz", "garbage"), nil, 400, "multipart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			for k, v := range tc.header {
				if req.header == nil {
					req.header = http.Header{}
				}
				req.header.Set(k, v)
			}
			rec := e.do(http.MethodPost, "/v1/ingest", e.editor, req)
			requireProblem(t, rec, tc.status, tc.want)
		})
	}

	// Nothing was queued by any of them.
	jobs, _, err := e.recs.Jobs(context.Background(), apiary.DefaultAccount, recordsFilterAll)
	require.NoError(t, err)
	require.Empty(t, jobs)
}

// manyKeys is metadata of n keys ("k0".."k9", …) with values of size bytes.
func manyKeys(n, size int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = strings.Repeat("v", size)
	}
	return m
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.BodyLimit = 1024 })
	big := jsonBody(map[string]any{"documents": []map[string]any{{"id": "a", "text": strings.Repeat("x", 2048)}}})

	t.Run("declared length", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, big)
		requireProblem(t, rec, http.StatusRequestEntityTooLarge, "limit of 1024 bytes")
	})
	t.Run("while reading", func(t *testing.T) {
		// No Content-Length: the limit must hold while the body is read.
		req := jsonBody(map[string]any{"documents": []map[string]any{{"id": "a", "text": strings.Repeat("x", 2048)}}})
		req.body = struct{ ioReader }{req.body}
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, req)
		requireProblem(t, rec, http.StatusRequestEntityTooLarge, "limit of 1024 bytes")
	})
	t.Run("multipart", func(t *testing.T) {
		req := multipartBody([]filePart{{name: "a.txt", data: strings.Repeat("y", 4096)}}, nil)
		req.body = struct{ ioReader }{req.body}
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, req)
		requireProblem(t, rec, http.StatusRequestEntityTooLarge, "limit")
	})
	t.Run("under the limit", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"documents": []map[string]any{{"id": "a", "text": "small"}}}))
		require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	})
}

// What the body limit accepts stages, however the staged copy is encoded:
// 12 MiB of "<" (which JSON escapes six times over) under the 32 MiB limit.
func TestIngestStagesWhatTheLimitAccepts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	angles := strings.Repeat("<", 12<<20)
	for name, req := range map[string]request{
		"json":      rawBody("application/json", `{"documents":[{"id":"page.html","text":"`+angles+`"}]}`),
		"multipart": multipartBody([]filePart{{name: "page.html", contentType: "text/html", data: angles}}, nil),
	} {
		t.Run(name, func(t *testing.T) {
			rec := e.do(http.MethodPost, "/v1/ingest", e.editor, req)
			require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
			docs, err := e.stager.Load(t.Context(), apiary.DefaultAccount, decode[ingestResponse](t, rec).JobID)
			require.NoError(t, err)
			require.Len(t, docs, 1)
			require.Equal(t, len(angles), len(docs[0].Text)+len(docs[0].Raw))
		})
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	withKey := func(key string, r request) request {
		r.header = http.Header{"Idempotency-Key": {key}}
		return r
	}
	body := map[string]any{"documents": []map[string]any{{"id": "a", "text": "same"}}}

	first := e.do(http.MethodPost, "/v1/ingest", e.editor, withKey("k-1", jsonBody(body)))
	require.Equal(t, http.StatusAccepted, first.Code, first.Body.String())
	firstJob := decode[ingestResponse](t, first).JobID

	// The earlier job has moved on; the replay answers its current status.
	_, err := e.recs.UpdateJob(ctx, apiary.DefaultAccount, firstJob, func(j *apiary.Job) error {
		j.Status = apiary.JobRunning
		return nil
	})
	require.NoError(t, err)

	again := e.do(http.MethodPost, "/v1/ingest", e.editor, withKey("k-1", jsonBody(body)))
	require.Equal(t, http.StatusAccepted, again.Code, again.Body.String())
	require.Equal(t, ingestResponse{JobID: firstJob, Status: apiary.JobRunning}, decode[ingestResponse](t, again))
	require.Equal(t, "/v1/jobs/"+string(firstJob), again.Header().Get("Location"))

	other := e.do(http.MethodPost, "/v1/ingest", e.editor, withKey("k-1",
		jsonBody(map[string]any{"documents": []map[string]any{{"id": "a", "text": "different"}}})))
	requireProblem(t, other, http.StatusConflict, "different request body")

	// The same key in another account is another key.
	_, otherAdmin := e.otherAccount("other")
	elsewhere := e.do(http.MethodPost, "/v1/ingest", otherAdmin, withKey("k-1", jsonBody(body)))
	require.Equal(t, http.StatusAccepted, elsewhere.Code, elsewhere.Body.String())
	require.NotEqual(t, firstJob, decode[ingestResponse](t, elsewhere).JobID)

	// Exactly one job was queued in the default account; the duplicates'
	// records were canceled and their staged documents dropped.
	jobs, _, err := e.recs.Jobs(ctx, apiary.DefaultAccount, recordsFilterAll)
	require.NoError(t, err)
	require.Len(t, jobs, 3)
	for _, j := range jobs {
		if j.ID == firstJob {
			continue
		}
		require.Equal(t, apiary.JobCanceled, j.Status)
		require.NotEmpty(t, j.Error)
		_, err := e.stager.Load(ctx, apiary.DefaultAccount, j.ID)
		require.ErrorIs(t, err, apiary.ErrNotFound)
	}
	msgs := e.receive(2) // the default account's first job and the other account's
	require.ElementsMatch(t, []apiary.JobID{firstJob, decode[ingestResponse](t, elsewhere).JobID},
		[]apiary.JobID{msgs[0].Job, msgs[1].Job})
}

// failingQueue is the real queue with Enqueue failing: an outage.
type failingQueue struct {
	queueIface
}

func (failingQueue) Enqueue(context.Context, apiary.JobMessage) error {
	return errors.New("jetstream: publish: nats: no responders available for request")
}

func TestIngestEnqueueFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *Config, d *Deps) { d.Queue = failingQueue{d.Queue} })
	ctx := context.Background()
	rec := e.do(http.MethodPost, "/v1/ingest", e.editor, jsonBody(map[string]any{"documents": []map[string]any{{"id": "a", "text": "x"}}}))
	requireProblem(t, rec, http.StatusServiceUnavailable, "could not be queued")
	require.Equal(t, "5", rec.Header().Get("Retry-After"))
	require.NotContains(t, rec.Body.String(), "no responders", "the cause stays in the log")
	require.Contains(t, e.logs.String(), "no responders")

	jobs, _, err := e.recs.Jobs(ctx, apiary.DefaultAccount, recordsFilterAll)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.Equal(t, apiary.JobFailed, jobs[0].Status)
	require.Equal(t, "could not be queued", jobs[0].Error)
	require.NotNil(t, jobs[0].FinishedAt)
	require.Eventually(t, func() bool {
		evs, err := e.bus.Replay(ctx, events.Filter{Account: apiary.DefaultAccount, Job: jobs[0].ID}, 10)
		return err == nil && len(evs) == 1 && evs[0].Type == apiary.EventJobFailed
	}, 30*time.Second, 20*time.Millisecond)
}

// TestIngestEnqueueFailureReleasesIdempotencyKey: the client is told to
// retry, so a retry with the same Idempotency-Key gets a fresh attempt.
func TestIngestEnqueueFailureReleasesIdempotencyKey(t *testing.T) {
	t.Parallel()
	down := true
	var mu sync.Mutex
	e := newEnv(t, func(_ *Config, d *Deps) { d.Queue = &flakyQueue{queueIface: d.Queue, down: &down, mu: &mu} })
	body := map[string]any{"documents": []map[string]any{{"id": "a", "text": "x"}}}
	keyed := func() request {
		r := jsonBody(body)
		r.header = http.Header{"Idempotency-Key": {"retry-me"}}
		return r
	}
	rec := e.do(http.MethodPost, "/v1/ingest", e.editor, keyed())
	requireProblem(t, rec, http.StatusServiceUnavailable, "could not be queued")

	mu.Lock()
	down = false
	mu.Unlock()
	rec = e.do(http.MethodPost, "/v1/ingest", e.editor, keyed())
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	require.Equal(t, apiary.JobQueued, decode[ingestResponse](t, rec).Status)
	rec2 := e.do(http.MethodPost, "/v1/ingest", e.editor, keyed())
	require.Equal(t, decode[ingestResponse](t, rec).JobID, decode[ingestResponse](t, rec2).JobID, "now the key is bound to the queued job")
}

// flakyQueue is the real queue whose Enqueue fails while down is set.
type flakyQueue struct {
	queueIface
	mu   *sync.Mutex
	down *bool
}

func (q *flakyQueue) Enqueue(ctx context.Context, m apiary.JobMessage) error {
	q.mu.Lock()
	down := *q.down
	q.mu.Unlock()
	if down {
		return errors.New("queue unavailable")
	}
	return q.queueIface.Enqueue(ctx, m)
}
