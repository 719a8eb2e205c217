package apiary

import (
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
}

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
}

// DocumentError says why one document of a job failed. Reason never holds
// document text or credentials.
type DocumentError struct {
	DocumentID DocumentID `json:"document_id"`
	Reason     string     `json:"reason"`
}

// Job is an ingestion job's record, stored as JSON. The API renders it
// through its own view, which leaves out the internal fields.
type Job struct {
	ID      JobID     `json:"id"`
	Account AccountID `json:"account_id"`
	Status  JobStatus `json:"status"`
	Counts  Counts    `json:"counts"`
	// Errors lists the documents that failed, each with its reason.
	Errors []DocumentError `json:"errors"`
	// Error is the job-level reason when the whole job failed or was canceled.
	Error    string `json:"error,omitempty"`
	Attempts int    `json:"attempts"`
	// Version is the document version this job writes; chunk ids derive from it,
	// so every attempt of the job writes the same ids.
	Version uint64 `json:"version"`
	// Source says where the documents come from ("upload").
	Source string `json:"source"`
	// Done lists the documents already finished, so that a redelivered job
	// skips them and its counts stay exact.
	Done []DocumentID `json:"done,omitempty"`
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

// JobMessage is all a queue message carries: identifiers, never document
// text, never a credential.
type JobMessage struct {
	Account AccountID `json:"account"`
	Job     JobID     `json:"job"`
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
	WrappedKey  []byte     `json:"wrapped_key"`
	Sealed      []byte     `json:"sealed,omitempty"` // title + metadata, sealed with the data key
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
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
)

// Event is one job state change. It carries ids, status and counts: never
// document text, never a credential.
type Event struct {
	// Seq is the position in the event stream, set by the bus on delivery.
	Seq     uint64          `json:"seq,omitempty"`
	ID      string          `json:"id"`
	Type    EventType       `json:"type"`
	Account AccountID       `json:"account_id"`
	Job     JobID           `json:"job_id"`
	Status  JobStatus       `json:"status"`
	Counts  Counts          `json:"counts"`
	Errors  []DocumentError `json:"errors,omitempty"`
	Time    time.Time       `json:"time"`
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
	switch typ {
	case EventJobSucceeded, EventJobFailed, EventJobCanceled:
		id = FinalEventID(job.ID)
	}
	return Event{
		ID:      id,
		Type:    typ,
		Account: job.Account,
		Job:     job.ID,
		Status:  job.Status,
		Counts:  job.Counts,
		Errors:  job.Errors,
		Time:    time.Now().UTC(),
	}
}
