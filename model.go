package apiary

import (
	"fmt"
	"time"
)

// Role is what a token may do inside its account.
type Role string

const (
	RoleAdmin  Role = "admin"  // everything in its account: tokens, webhooks, documents, jobs
	RoleEditor Role = "editor" // ingest, read jobs and documents, query, cancel and delete
	RoleViewer Role = "viewer" // read jobs and documents, query
)

var roleRank = map[Role]int{RoleViewer: 1, RoleEditor: 2, RoleAdmin: 3}

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return roleRank[r] > 0 }

// Allows reports whether a token with role r may do what needs role need.
func (r Role) Allows(need Role) bool { return roleRank[r] > 0 && roleRank[r] >= roleRank[need] }

// Account is a tenant: every record, key and vector belongs to exactly one.
type Account struct {
	ID        AccountID `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Embedding is the model every chunk of the account is known to be
	// embedded with; nil until that is known (the account is checked when
	// the service starts, and a re-embed job sets it when it succeeds).
	Embedding *EmbeddingModel `json:"embedding,omitempty"`
	// Reembed is the last re-embed job started for the account, if any.
	Reembed JobID `json:"reembed_job_id,omitempty"`
}

// EmbeddingModel identifies what made a vector: the embedder's model name
// and version (storage.VectorRecord.Model) and its dimension.
type EmbeddingModel struct {
	Model string `json:"model"`
	Dim   int    `json:"dim"`
}

// Token is an API bearer token's record. The secret is never stored: Hash is
// the hex SHA-256 of the full token string.
type Token struct {
	ID        TokenID   `json:"id"`
	Account   AccountID `json:"account_id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Operator  bool      `json:"operator,omitempty"` // may create accounts
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	// Prefix is the secret's first characters (the "apy_" prefix and a few
	// more), enough to recognise a token, far too few to guess it.
	Prefix string `json:"prefix,omitempty"`
	// ExpiresAt, when set, is when the token stops authenticating.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Replaced marks the record of a secret that a rotation replaced: it
	// keeps authenticating until ExpiresAt (the rotation's grace period).
	Replaced bool `json:"replaced,omitempty"`
}

// Expired reports whether t no longer authenticates at now.
func (t Token) Expired(now time.Time) bool { return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) }

// JobStatus is where a job is in its life.
type JobStatus string

const (
	JobQueued    JobStatus = "queued"
	JobRunning   JobStatus = "running"
	JobSucceeded JobStatus = "succeeded"
	JobFailed    JobStatus = "failed"
	JobCanceled  JobStatus = "canceled"
)

// Final reports whether s is an end state: a job in it never changes again.
func (s JobStatus) Final() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCanceled
}

// Valid reports whether s is a known status.
func (s JobStatus) Valid() bool {
	switch s {
	case JobQueued, JobRunning, JobSucceeded, JobFailed, JobCanceled:
		return true
	}
	return false
}

// Counts are a job's progress figures.
type Counts struct {
	DocumentsTotal  int `json:"documents_total"`
	DocumentsDone   int `json:"documents_done"`
	DocumentsFailed int `json:"documents_failed"`
	Chunks          int `json:"chunks"`
	// DocumentsUnchanged counts, among the done, the documents a sync
	// found unchanged at the source (not fetched again).
	DocumentsUnchanged int `json:"documents_unchanged,omitempty"`
	// DocumentsRemoved counts the documents a sync deleted because they
	// are gone from the source; they are not in the total.
	DocumentsRemoved int `json:"documents_removed,omitempty"`
}

// DocumentError says why one document of a job failed. Reason never holds
// document text or credentials.
type DocumentError struct {
	DocumentID DocumentID `json:"document_id"`
	Reason     string     `json:"reason"`
}

// MaxErrorSample bounds the document errors a job record and a job event
// carry: the first ones only. The full list is kept per document, apart
// from the record (GET /v1/jobs/{id}/errors).
const MaxErrorSample = 10

// DocumentOutcome is how one document of a job ended. It is kept apart from
// the job record, one per document, so that recording it costs the same for
// the first document of a job as for the millionth.
type DocumentOutcome struct {
	Document DocumentID `json:"document_id"`
	Chunks   int        `json:"chunks,omitempty"`
	// Reason says why the document failed; empty when it succeeded.
	Reason string `json:"reason,omitempty"`
	// Unchanged: a sync found the document unchanged at the source.
	Unchanged bool `json:"unchanged,omitempty"`
	// Removed: a sync deleted the document, gone from the source.
	Removed bool `json:"removed,omitempty"`
}

// Failed reports whether the document failed.
func (o DocumentOutcome) Failed() bool { return o.Reason != "" }

// Tally is what a job's document outcomes add up to.
type Tally struct {
	Done, Failed, Chunks int
	Unchanged, Removed   int // see Counts
	// Sample is the first MaxErrorSample failures, by document id.
	Sample []DocumentError
}

// Add counts o into t.
func (t *Tally) Add(o DocumentOutcome) {
	if o.Removed {
		t.Removed++
		return
	}
	if !o.Failed() {
		t.Done++
		t.Chunks += o.Chunks
		if o.Unchanged {
			t.Unchanged++
		}
		return
	}
	t.Failed++
	if len(t.Sample) < MaxErrorSample {
		t.Sample = append(t.Sample, DocumentError{DocumentID: o.Document, Reason: o.Reason})
	}
}

// Job is an ingestion job's record, stored as JSON. It stays small whatever
// the number of documents: per-document outcomes live apart from it. The
// API renders it through its own view, which leaves out the internal fields.
type Job struct {
	ID      JobID     `json:"id"`
	Account AccountID `json:"account_id"`
	// Kind is what the job does; empty in records from before kinds
	// (JobKindIngest).
	Kind   JobKind   `json:"kind,omitempty"`
	Status JobStatus `json:"status"`
	Counts Counts    `json:"counts"`
	// Errors is a sample of the documents that failed, each with its
	// reason: at most MaxErrorSample; Counts.DocumentsFailed is the total.
	Errors []DocumentError `json:"errors"`
	// Error is the job-level reason when the whole job failed or was canceled.
	Error    string `json:"error,omitempty"`
	Attempts int    `json:"attempts"`
	// Version is the document version this job writes; chunk ids derive from it,
	// so every attempt of the job writes the same ids.
	Version uint64 `json:"version"`
	// Source says where the documents come from ("upload").
	Source string `json:"source"`
	// Connection is the OAuth connection the job reads with, when it reads
	// with one: disconnecting it cancels the job.
	Connection string `json:"connection_id,omitempty"`
	// Holder names the process that holds the job's ephemeral credentials
	// in memory (connectors/custody), when it has any: the job's worker asks
	// it for them. It never holds the credentials themselves.
	Holder string `json:"holder,omitempty"`
	// Interrupted counts the runs of this job that ended with their worker
	// process (their lease ran out, never released). At MaxInterrupted the
	// job is failed instead of being run again.
	Interrupted int `json:"interrupted,omitempty"`
	// Owner names the worker run that holds the job while it runs, until
	// LeaseUntil; another delivery of the same job waits instead of running
	// it a second time at once.
	Owner      string     `json:"owner,omitempty"`
	LeaseUntil *time.Time `json:"lease_until,omitempty"`
	// Enqueued is set once the job's message is on the queue; a queued job
	// without it (the API stopped between the two writes) is queued again by
	// the workers' sweeper.
	Enqueued bool `json:"enqueued,omitempty"`
	// Notified is set once the job's final event has been published, so a
	// redelivered job publishes it again only if that never happened.
	Notified       bool       `json:"notified,omitempty"`
	IdempotencyKey string     `json:"idempotency_key,omitempty"`
	RequestHash    string     `json:"request_hash,omitempty"`
	WebhookURL     string     `json:"webhook_url,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
}

// MaxInterrupted is how many runs of a job may end with their worker
// process before the job is given up, so that a document that kills its
// worker cannot do so forever.
const MaxInterrupted = 2

// ReasonInterrupted is the Error of a job given up after MaxInterrupted.
const ReasonInterrupted = "the worker stopped twice while running this job"

// Transitions. Each one changes the record in memory only and reports
// whether it changed anything, so that a caller writing the record (the job
// service, workers/jobs) skips a write that would change nothing.

// Leased reports whether a run holds the job's lease at now.
func (j *Job) Leased(now time.Time) bool {
	return j.Owner != "" && j.LeaseUntil != nil && j.LeaseUntil.After(now)
}

// Start hands the job to run owner until now+lease, unless another run
// holds an unexpired lease: then it returns false and that lease's end. A
// lease of another run that ran out without being released is a run that
// ended with its process: Start counts it in Interrupted. It reports
// whether the job went from queued to running.
func (j *Job) Start(owner string, now time.Time, lease time.Duration, attempt int) (started, ok bool, busyUntil time.Time) {
	if j.Leased(now) {
		return false, false, *j.LeaseUntil
	}
	if j.Owner != "" && j.LeaseUntil != nil {
		j.Interrupted++
	}
	started = j.Status == JobQueued
	until := now.Add(lease)
	j.Status = JobRunning
	j.Owner, j.LeaseUntil = owner, &until
	j.Attempts = max(j.Attempts+1, attempt)
	j.UpdatedAt = now
	if j.StartedAt == nil {
		j.StartedAt = &now
	}
	return started, true, time.Time{}
}

// Renew extends owner's lease to now+lease; a final job's lease is released
// instead, since nothing runs it any more. It returns false, changing
// nothing, when owner no longer holds the job (another run took it over).
func (j *Job) Renew(owner string, now time.Time, lease time.Duration) bool {
	if j.Owner != owner {
		return false
	}
	if j.Status.Final() {
		j.clearLease()
		return true
	}
	until := now.Add(lease)
	j.LeaseUntil = &until
	return true
}

// Release lets go of owner's lease, so that the job's next run starts at
// once and is not counted as interrupted. It returns false, changing
// nothing, when owner does not hold the job.
func (j *Job) Release(owner string) bool {
	if j.Owner != owner {
		return false
	}
	j.clearLease()
	return true
}

func (j *Job) clearLease() { j.Owner, j.LeaseUntil = "", nil }

// Expect sets the number of documents the job goes through, when a run
// learns it (a re-embed job counts the account's documents as it starts),
// unless the job is final or already says so.
func (j *Job) Expect(total int, now time.Time) bool {
	if j.Status.Final() || j.Counts.DocumentsTotal == total {
		return false
	}
	j.Counts.DocumentsTotal = total
	j.UpdatedAt = now
	return true
}

// SetTally sets the job's counts and error sample from t.
func (j *Job) SetTally(t Tally) {
	j.Counts.DocumentsDone, j.Counts.DocumentsFailed, j.Counts.Chunks = t.Done, t.Failed, t.Chunks
	j.Counts.DocumentsUnchanged, j.Counts.DocumentsRemoved = t.Unchanged, t.Removed
	j.Errors = t.Sample
}

// Progress records the document outcomes that t adds up to, unless the job
// is final or already counts as many outcomes (a later tally got there
// first).
func (j *Job) Progress(t Tally, now time.Time) bool {
	if j.Status.Final() || j.Counts.DocumentsDone+j.Counts.DocumentsFailed >= t.Done+t.Failed {
		return false
	}
	j.SetTally(t)
	j.UpdatedAt = now
	return true
}

// Finish ends a job that is not final yet in status (a final one) with
// reason, and reports whether it did. The lease stays: the run holding it
// sees the final status and lets go.
func (j *Job) Finish(status JobStatus, reason string, now time.Time) bool {
	if j.Status.Final() || !status.Final() {
		return false
	}
	j.Status, j.Error = status, reason
	j.UpdatedAt, j.FinishedAt = now, &now
	return true
}

// ReasonCanceled is the Error of a job canceled by its owner's request.
const ReasonCanceled = "canceled by request"

// Cancel ends the job as canceled by request; a job already final cannot
// be canceled (KindConflict).
func (j *Job) Cancel(now time.Time) error {
	if !j.Finish(JobCanceled, ReasonCanceled, now) {
		return E(KindConflict, "job already %s", j.Status)
	}
	return nil
}

// Fail ends the job as failed with reason and lets go of its lease.
func (j *Job) Fail(reason string, now time.Time) {
	j.Status, j.Error = JobFailed, reason
	j.UpdatedAt, j.FinishedAt = now, &now
	j.clearLease()
}

// Succeed ends a job whose documents have all run: succeeded, or failed
// when every document failed.
func (j *Job) Succeed(now time.Time) {
	if j.Counts.DocumentsTotal > 0 && j.Counts.DocumentsFailed == j.Counts.DocumentsTotal {
		j.Fail(fmt.Sprintf("all %d documents failed; see errors", j.Counts.DocumentsTotal), now)
		return
	}
	j.Status = JobSucceeded
	j.UpdatedAt, j.FinishedAt = now, &now
}

// Complete ends a run that went through all the job's documents: the
// counts become t, exact, and a job not final yet succeeds (Succeed). A
// job canceled meanwhile keeps its status.
func (j *Job) Complete(t Tally, now time.Time) {
	j.SetTally(t)
	if !j.Status.Final() {
		j.Succeed(now)
	}
}

// MarkEnqueued records that the job's message is on the queue. Only a
// queued job that was not marked yet changes: one that left the queued
// state needs no sweeping.
func (j *Job) MarkEnqueued() bool {
	if j.Enqueued || j.Status != JobQueued {
		return false
	}
	j.Enqueued = true
	return true
}

// MarkNotified records that the job's final event went out.
func (j *Job) MarkNotified() bool {
	if j.Notified {
		return false
	}
	j.Notified = true
	return true
}

// Message is the queue message that runs the job.
func (j *Job) Message() JobMessage {
	return JobMessage{Kind: j.Kind, Account: j.Account, Job: j.ID}
}

// JobKind names what a job does, and so which handler runs it. It is a
// stable string, stored in job records and queue messages: renaming the
// code that runs a kind never renames the kind.
type JobKind string

// JobKindIngest ingests documents (from an upload). A record or message
// without a kind is of this kind: they predate kinds.
const JobKindIngest JobKind = "ingest"

// JobKindReembed embeds an account's stored chunks again with the current
// embedding model: each chunk is opened with its document's key, embedded,
// and written back under the same id with the new model's vector.
const JobKindReembed JobKind = "reembed"

// JobKindSource ingests the documents of a connector's source (a web site):
// the worker lists the source and fetches its items as it goes. The source
// (connectors.Spec) waits in the job's sealed stage, like an upload's
// documents.
const JobKindSource JobKind = "source"

// JobMessage is all a queue message carries: identifiers, never document
// text, never a credential.
type JobMessage struct {
	// Kind says which handler runs the job; empty (a message from before
	// kinds) means JobKindIngest. Read it through JobKind.
	Kind    JobKind   `json:"kind,omitempty"`
	Account AccountID `json:"account"`
	Job     JobID     `json:"job"`
}

// JobKind is the message's kind: JobKindIngest when it names none.
func (m JobMessage) JobKind() JobKind {
	if m.Kind == "" {
		return JobKindIngest
	}
	return m.Kind
}

// Document is a document to ingest, as it arrives (from an upload or a
// connector). It lives in worker memory and, encrypted, in the staging store.
type Document struct {
	ID          DocumentID        `json:"id"`
	Title       string            `json:"title,omitempty"`
	Text        string            `json:"text,omitempty"`
	ContentType string            `json:"content_type,omitempty"` // of Raw, e.g. "text/html"
	Raw         []byte            `json:"raw,omitempty"`          // undecoded file content, when Text is empty
	Metadata    map[string]string `json:"metadata,omitempty"`
	// Origin names the source and the content version a connector read
	// the document from, as keyed fingerprints; empty for uploads.
	Origin Origin `json:"-"`
}

// Origin is where a document came from, as keyed fingerprints (HMACs under
// a key of the account's): a sync compares them without revealing the
// source, its item ids or its content versions to whoever reads records.
type Origin struct {
	// Source identifies the source (connection, location, picked items).
	Source string `json:"source,omitempty"`
	// Version is the item's content version (an ETag, a revision).
	Version string `json:"version,omitempty"`
}

// DocumentRecord is what is kept about an ingested document. Title and
// metadata are sealed with the account's key; WrappedKey is the document's
// data key wrapped by the account's key, so deleting the record shreds the
// document's chunks.
type DocumentRecord struct {
	ID          DocumentID `json:"id"`
	Account     AccountID  `json:"account_id"`
	Version     uint64     `json:"version"`
	Job         JobID      `json:"job_id"`
	Chunks      int        `json:"chunks"`
	Bytes       int        `json:"bytes"`
	ContentType string     `json:"content_type,omitempty"`
	// Origin is the source and version a connector read it from (keyed
	// fingerprints); empty for uploads.
	Origin     Origin    `json:"origin,omitzero"`
	WrappedKey []byte    `json:"wrapped_key"`
	Sealed     []byte    `json:"sealed,omitempty"` // title + metadata, sealed with the data key
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Chunk is a piece of a document, in plaintext, in worker memory only.
type Chunk struct {
	ID       ChunkID
	Account  AccountID
	Document DocumentID
	Version  uint64
	Index    int
	Text     string
	Vector   []float32
}

// EventType names a job event.
type EventType string

const (
	EventJobQueued    EventType = "job.queued"
	EventJobStarted   EventType = "job.started"
	EventJobProgress  EventType = "job.progress"
	EventJobSucceeded EventType = "job.succeeded"
	EventJobFailed    EventType = "job.failed"
	EventJobCanceled  EventType = "job.canceled"
	EventWebhookTest  EventType = "webhook.test"

	// Connection events carry Connection and no job.
	EventConnectionReauthRequired EventType = "connection.reauth_required"
	EventConnectionRevoked        EventType = "connection.revoked"
)

// Final reports whether t is a job's last event: succeeded, failed or canceled.
func (t EventType) Final() bool {
	return t == EventJobSucceeded || t == EventJobFailed || t == EventJobCanceled
}

// FinalEvent is the event type that announces a job ending in s; empty when
// s is not final.
func (s JobStatus) FinalEvent() EventType {
	switch s {
	case JobSucceeded:
		return EventJobSucceeded
	case JobFailed:
		return EventJobFailed
	case JobCanceled:
		return EventJobCanceled
	}
	return ""
}

// Event is one job state change. It carries ids, status, counts and at most
// MaxErrorSample document errors, so every event stays small: never
// document text, never a credential.
type Event struct {
	// Seq is the position in the event stream, set by the bus on delivery.
	Seq     uint64    `json:"seq,omitempty"`
	ID      string    `json:"id"`
	Type    EventType `json:"type"`
	Account AccountID `json:"account_id"`
	Job     JobID     `json:"job_id"`
	// Connection is the OAuth connection of a connection.* event.
	Connection string          `json:"connection_id,omitempty"`
	Status     JobStatus       `json:"status"`
	Counts     Counts          `json:"counts"`
	Errors     []DocumentError `json:"errors,omitempty"`
	Time       time.Time       `json:"time"`
}

// FinalEventID is the id of a job's one final event (succeeded, failed or
// canceled). Whoever publishes it uses this id, so that the bus drops a
// second publish of the same final event.
func FinalEventID(job JobID) string { return "evt_" + string(job) + "_final" }

// NewJobEvent returns the event of type typ for job's current state. A final
// event (succeeded, failed, canceled) gets the job's FinalEventID, so that
// publishing it twice stores it once.
func NewJobEvent(job Job, typ EventType) Event {
	id := RandomID("evt_")
	if typ.Final() {
		id = FinalEventID(job.ID)
	}
	return Event{
		ID:      id,
		Type:    typ,
		Account: job.Account,
		Job:     job.ID,
		Status:  job.Status,
		Counts:  job.Counts,
		Errors:  job.Errors[:min(len(job.Errors), MaxErrorSample)],
		Time:    time.Now().UTC(),
	}
}
