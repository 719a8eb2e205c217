package workers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// writeCounter is a KVStore that counts the bytes written to each bucket:
// a real store underneath, measured.
type writeCounter struct {
	storage.KVStore
	mu    sync.Mutex
	bytes map[string]int
}

func (w *writeCounter) Bucket(ctx context.Context, name string) (storage.KV, error) {
	kv, err := w.KVStore.Bucket(ctx, name)
	return countedKV{KV: kv, add: func(n int) { w.mu.Lock(); w.bytes[name] += n; w.mu.Unlock() }}, err
}

func (w *writeCounter) written(bucket string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes[bucket]
}

type countedKV struct {
	storage.KV
	add func(int)
}

func (c countedKV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	c.add(len(value))
	return c.KV.Create(ctx, key, value)
}

func (c countedKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	c.add(len(value))
	return c.KV.Update(ctx, key, value, rev)
}

func (c countedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	c.add(len(value))
	return c.KV.Put(ctx, key, value)
}

// rejectAll is an Ingester that fails every document for good.
type rejectAll struct{}

func (rejectAll) Ingest(_ context.Context, _ apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error) {
	return apiary.DocumentRecord{}, apiary.Permanent(apiary.E(apiary.KindInvalid, "document %s: the text is not valid UTF-8", doc.ID))
}

// manyDocsJob is a staged job of n documents that all fail, on real
// storage whose job-bucket writes are counted.
type manyDocsJob struct {
	kvs     *writeCounter
	recs    *records.Store
	bus     *natsbus.Bus
	handler *workers.IngestHandler
	job     apiary.Job
}

func newManyDocsJob(tb testing.TB, n int) manyDocsJob {
	tb.Helper()
	ctx := context.Background()
	nc, js := natstest.Connect(tb)
	kvs := &writeCounter{KVStore: natskv.NewKVStore(js, natskv.Config{}), bytes: map[string]int{}}
	recs, err := records.Open(ctx, kvs)
	require.NoError(tb, err)
	blobs, err := natskv.NewBlobs(ctx, js, "stage", natskv.Config{})
	require.NoError(tb, err)
	keys, err := keyring.New(keyring.Config{Dir: tb.TempDir(), RootKey: make([]byte, 32)})
	require.NoError(tb, err)
	require.NoError(tb, keys.CreateAccountKey(ctx, "acme"))
	stager := upload.NewStager(blobs, keys)
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	require.NoError(tb, err)
	// Progress after every outcome: the worst case for the record's writes.
	svc := jobs.New(jobs.Config{ProgressEvery: time.Nanosecond}, recs, nil, bus, stager)
	h := workers.NewIngestHandler(workers.IngestConfig{DocConcurrency: 4}, svc, stager, rejectAll{})

	docs := make([]apiary.Document, n)
	for i := range docs {
		docs[i] = doc(fmt.Sprintf("doc-%04d", i), "some text")
	}
	now := time.Now().UTC()
	j := apiary.Job{ID: apiary.NewJobID(), Account: "acme", Status: apiary.JobQueued, Version: uint64(now.UnixNano()),
		Source: "upload", Counts: apiary.Counts{DocumentsTotal: n}, CreatedAt: now, UpdatedAt: now}
	require.NoError(tb, stager.Stage(ctx, j.Account, j.ID, docs))
	require.NoError(tb, recs.CreateJob(ctx, j))
	return manyDocsJob{kvs: kvs, recs: recs, bus: bus, handler: h, job: j}
}

// BenchmarkJobOfManyFailingDocuments runs a 1,000-document job whose
// documents all fail, reporting the job-record bytes written per document
// outcome and the final record's size.
func BenchmarkJobOfManyFailingDocuments(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		w := newManyDocsJob(b, n)
		b.StartTimer()
		require.NoError(b, w.handler.Handle(context.Background(), delivery(w.job, 1)))
		b.StopTimer()
		got, err := w.recs.Job(context.Background(), "acme", w.job.ID)
		require.NoError(b, err)
		rec, err := json.Marshal(got)
		require.NoError(b, err)
		b.ReportMetric(float64(w.kvs.written("jobs"))/n, "job-bytes/outcome")
		b.ReportMetric(float64(len(rec)), "record-bytes")
		b.StartTimer()
	}
}

// TestJobRecordAndEventsStaySmall: a job of many failing documents keeps a
// small record and small events, and each document outcome costs a bounded
// number of bytes written to the job record, however many documents the job
// has; every error stays listed, page by page.
func TestJobRecordAndEventsStaySmall(t *testing.T) {
	t.Parallel()
	const (
		n        = 1000
		maxBytes = 4 << 10 // of a record, an event, and the job-record bytes written per outcome
	)
	ctx := context.Background()
	w := newManyDocsJob(t, n)
	kvs, recs, bus, j := w.kvs, w.recs, w.bus, w.job
	before := kvs.written("jobs")

	require.NoError(t, w.handler.Handle(ctx, delivery(j, 1)))

	got, err := recs.Job(ctx, "acme", j.ID)
	require.NoError(t, err)
	require.Equal(t, apiary.JobFailed, got.Status)
	require.Equal(t, apiary.Counts{DocumentsTotal: n, DocumentsFailed: n}, got.Counts)
	require.Len(t, got.Errors, apiary.MaxErrorSample, "the record keeps a sample of the errors")
	rec, err := json.Marshal(got)
	require.NoError(t, err)
	require.Less(t, len(rec), maxBytes, "the job record stays small")
	perOutcome := (kvs.written("jobs") - before) / n
	require.Less(t, perOutcome, maxBytes, "bytes written to the job record per document outcome are bounded")

	evs, err := bus.Replay(ctx, events.Filter{Account: "acme", Job: j.ID}, 10*n)
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	require.True(t, evs[len(evs)-1].Type.Final())
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		require.Less(t, len(b), maxBytes, "event %s stays small", ev.Type)
		require.LessOrEqual(t, len(ev.Errors), apiary.MaxErrorSample)
	}

	// Every error is kept, one page at a time.
	seen := map[apiary.DocumentID]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, n/100+2, "paging ends")
		page, next, err := recs.JobErrors(ctx, "acme", j.ID, 100, cursor)
		require.NoError(t, err)
		for _, e := range page {
			require.False(t, seen[e.DocumentID], "%s listed twice", e.DocumentID)
			seen[e.DocumentID] = true
			require.Contains(t, e.Reason, "not valid UTF-8")
		}
		if next == "" {
			break
		}
		cursor = next
	}
	require.Len(t, seen, n)
	page, _, err := recs.JobErrors(ctx, "other", j.ID, 100, "")
	require.NoError(t, err)
	require.Empty(t, page, "another account sees no errors of this job")
}
