package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Config tunes the API. The zero value of each field means its default.
type Config struct {
	// BodyLimit is the largest request body in bytes; larger bodies get 413.
	// Default 32 MiB.
	BodyLimit int64
	// MaxDocuments is the most documents one ingest request may carry.
	// Default 1000.
	MaxDocuments int
	// MaxDocumentIDLen is the longest document id in bytes. Default and
	// maximum apiary.MaxDocumentIDLen.
	MaxDocumentIDLen int
	// RateLimit is each token's sustained request rate per second. Default 50.
	RateLimit float64
	// RateBurst is how many requests a token may make at once. Default 100.
	RateBurst int
	// Logger receives one line per request and the causes of 5xx answers.
	// Default slog.Default().
	Logger *slog.Logger
	// SSEHeartbeat is how often an event stream (GET /v1/jobs/{id}/events)
	// gets a keep-alive comment; a stream of a final job whose final event
	// has not come for a whole heartbeat also ends then. Default 15 s.
	SSEHeartbeat time.Duration
	// MaxStreamsPerAccount is the most event streams one account may hold
	// open at once; beyond it the answer is 429. Default 20.
	MaxStreamsPerAccount int
	// AllowPrivateWebhooks lets webhook URLs name private, loopback and
	// link-local addresses (--allow-private-webhooks: self-hosted installs,
	// tests). Default false.
	AllowPrivateWebhooks bool
	// WebhookSecretGrace is how long a rotated-out webhook secret keeps
	// signing deliveries beside the new one. Default 24 h; negative: none.
	WebhookSecretGrace time.Duration
}

// Defaults.
const (
	DefaultBodyLimit    = 32 << 20
	DefaultMaxDocuments = 1000
	DefaultRateLimit    = 50
	DefaultRateBurst    = 100

	DefaultSSEHeartbeat         = 15 * time.Second
	DefaultMaxStreamsPerAccount = 20
)

func (c *Config) setDefaults() {
	if c.BodyLimit == 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.MaxDocuments == 0 {
		c.MaxDocuments = DefaultMaxDocuments
	}
	if c.MaxDocumentIDLen == 0 {
		c.MaxDocumentIDLen = apiary.MaxDocumentIDLen
	}
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst == 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.SSEHeartbeat == 0 {
		c.SSEHeartbeat = DefaultSSEHeartbeat
	}
	if c.MaxStreamsPerAccount == 0 {
		c.MaxStreamsPerAccount = DefaultMaxStreamsPerAccount
	}
}

// Validate reports every problem with c (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if c.BodyLimit < 0 {
		errs = append(errs, errors.New("api: BodyLimit must be positive"))
	}
	if c.MaxDocuments < 0 {
		errs = append(errs, errors.New("api: MaxDocuments must be positive"))
	}
	if c.MaxDocumentIDLen < 0 || c.MaxDocumentIDLen > apiary.MaxDocumentIDLen {
		errs = append(errs, fmt.Errorf("api: MaxDocumentIDLen must be 1 to %d", apiary.MaxDocumentIDLen))
	}
	if c.RateLimit < 0 {
		errs = append(errs, errors.New("api: RateLimit must be positive"))
	}
	if c.RateBurst < 0 {
		errs = append(errs, errors.New("api: RateBurst must be positive"))
	}
	if c.SSEHeartbeat < 0 {
		errs = append(errs, errors.New("api: SSEHeartbeat must be positive"))
	}
	if c.MaxStreamsPerAccount < 0 {
		errs = append(errs, errors.New("api: MaxStreamsPerAccount must be positive"))
	}
	return errors.Join(errs...)
}

// Stager keeps an upload's documents, sealed, until a worker takes the job
// (connectors/upload.Stager).
type Stager interface {
	Stage(ctx context.Context, account apiary.AccountID, job apiary.JobID, docs []apiary.Document) error
	Drop(ctx context.Context, account apiary.AccountID, job apiary.JobID) error
}

// Searcher answers queries and reads and deletes ingested documents
// (pipeline.Pipeline).
type Searcher interface {
	Search(ctx context.Context, account apiary.AccountID, q pipeline.Query) ([]pipeline.Result, error)
	DeleteDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) error
	Describe(ctx context.Context, rec apiary.DocumentRecord) (pipeline.DocumentInfo, error)
}

// Deps are the API's collaborators. All are required but Ready.
type Deps struct {
	Records Records
	Queue   queue.Queue
	Events  events.Bus
	Stager  Stager
	Search  Searcher
	Keys    encrypt.KeyProvider
	// Ready reports whether the process can serve (GET /readyz); nil means
	// always ready.
	Ready func(context.Context) error
}

func (d Deps) validate() error {
	var errs []error
	for _, m := range []struct {
		name string
		ok   bool
	}{
		{"Records", d.Records != nil},
		{"Queue", d.Queue != nil},
		{"Events", d.Events != nil},
		{"Stager", d.Stager != nil},
		{"Search", d.Search != nil},
		{"Keys", d.Keys != nil},
	} {
		if !m.ok {
			errs = append(errs, fmt.Errorf("api: Deps.%s is required", m.name))
		}
	}
	return errors.Join(errs...)
}
