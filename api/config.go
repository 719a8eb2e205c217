package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Config tunes the API. The zero value of each field means its default.
type Config struct {
	// Now is the clock of token expiry, rotation grace and last use.
	// Default time.Now.
	Now func() time.Time
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
	// AccountRateLimit is each account's sustained budget per second, in
	// cost units shared by all of its tokens: a request costs 1, plus 1 per
	// MiB of body; a search costs 1 + top_k/10 (+1 for hybrid, which
	// searches twice), ten times that with a metadata filter. Default 200.
	AccountRateLimit float64
	// AccountRateBurst is the most cost units an account may spend at once.
	// Default 400.
	AccountRateBurst int
	// MaxSearchesPerAccount is the most searches (POST /v1/query) one
	// account may run at once; one more gets 429 at once. Default 4.
	MaxSearchesPerAccount int
	// RefusalDelay is how long a 429 of a budget or of the search cap is
	// held before it is sent (never longer than its Retry-After), so that a
	// client that retries at once cannot spin on refusals. Default 250 ms;
	// negative: none.
	RefusalDelay time.Duration
	// Model is the embedding model queries search with (the pipeline's),
	// shown by GET /v1/account beside the model the account's chunks are
	// known to be of. Zero: not shown.
	Model apiary.EmbeddingModel
	// MaxTokensPerAccount is the most tokens one account may hold; creating
	// one more gets 409. Default 100.
	MaxTokensPerAccount int
	// MaxWebhooksPerAccount is the most webhooks one account may register;
	// one more gets 409. Default 50.
	MaxWebhooksPerAccount int
	// MaxBodyBytesInFlight bounds the bytes of request bodies held at once,
	// across all callers, from their first byte until their handler
	// returns. A body is counted as it arrives, not as declared: before
	// reading on it takes its next step (as much as it has read, 64 KiB to
	// 1 MiB, never past its Content-Length or BodyLimit), so a slow or
	// stalled body holds only what it has sent and one step. One account
	// may hold all of it but one BodyLimit (429 beyond), so that its bodies
	// leave room for other accounts. Default 3 × BodyLimit; at least
	// BodyLimit.
	MaxBodyBytesInFlight int64
	// BodyWait is how long a body waits for its next step: for room in its
	// account's share (429 after it), then in MaxBodyBytesInFlight (503
	// with Retry-After after it). Default 2 s.
	BodyWait time.Duration
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
	// AllowPrivateSources lets an ingestion source's URL (web) name
	// private, loopback and link-local addresses (--allow-private-sources:
	// self-hosted sites, tests). The workers' connectors are configured
	// alike. Default false.
	AllowPrivateSources bool
	// DrivePickedOnly says the Google Drive OAuth scope is drive.file
	// (--gdrive-scope): Drive sources must name their items, since such a
	// grant reaches only the files the user picked.
	DrivePickedOnly bool
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

	DefaultAccountRateLimit      = 200
	DefaultAccountRateBurst      = 400
	DefaultMaxSearchesPerAccount = 4
	DefaultMaxTokensPerAccount   = 100
	DefaultMaxWebhooksPerAccount = 50
	DefaultBodyWait              = 2 * time.Second
	DefaultRefusalDelay          = 250 * time.Millisecond

	DefaultSSEHeartbeat         = 15 * time.Second
	DefaultMaxStreamsPerAccount = 20
)

func (c *Config) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
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
	if c.AccountRateLimit == 0 {
		c.AccountRateLimit = DefaultAccountRateLimit
	}
	if c.AccountRateBurst == 0 {
		c.AccountRateBurst = DefaultAccountRateBurst
	}
	if c.MaxSearchesPerAccount == 0 {
		c.MaxSearchesPerAccount = DefaultMaxSearchesPerAccount
	}
	if c.MaxTokensPerAccount == 0 {
		c.MaxTokensPerAccount = DefaultMaxTokensPerAccount
	}
	if c.MaxWebhooksPerAccount == 0 {
		c.MaxWebhooksPerAccount = DefaultMaxWebhooksPerAccount
	}
	if c.MaxBodyBytesInFlight == 0 {
		c.MaxBodyBytesInFlight = 3 * c.BodyLimit
	}
	if c.BodyWait == 0 {
		c.BodyWait = DefaultBodyWait
	}
	if c.RefusalDelay == 0 {
		c.RefusalDelay = DefaultRefusalDelay
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
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"AccountRateLimit", c.AccountRateLimit < 0},
		{"AccountRateBurst", c.AccountRateBurst < 0},
		{"MaxSearchesPerAccount", c.MaxSearchesPerAccount < 0},
		{"MaxTokensPerAccount", c.MaxTokensPerAccount < 0},
		{"MaxWebhooksPerAccount", c.MaxWebhooksPerAccount < 0},
		{"BodyWait", c.BodyWait < 0},
	} {
		if f.bad {
			errs = append(errs, fmt.Errorf("api: %s must be positive", f.name))
		}
	}
	if c.MaxBodyBytesInFlight < c.BodyLimit {
		errs = append(errs, errors.New("api: MaxBodyBytesInFlight must be at least BodyLimit"))
	}
	if c.SSEHeartbeat < 0 {
		errs = append(errs, errors.New("api: SSEHeartbeat must be positive"))
	}
	if c.MaxStreamsPerAccount < 0 {
		errs = append(errs, errors.New("api: MaxStreamsPerAccount must be positive"))
	}
	return errors.Join(errs...)
}

// Searcher answers queries and reads and deletes ingested documents
// (pipeline.Pipeline).
type Searcher interface {
	Search(ctx context.Context, account apiary.AccountID, q pipeline.Query) ([]pipeline.Result, error)
	DeleteDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) error
	// DeleteAccount deletes every chunk of the account (account deletion).
	DeleteAccount(ctx context.Context, account apiary.AccountID) error
	Describe(ctx context.Context, rec apiary.DocumentRecord) (pipeline.DocumentInfo, error)
}

// Deps are the API's collaborators. All are required but Ready. The API
// submits and cancels jobs through a job service (workers/jobs) over
// Records, Queue, Events and Stager; it writes no job record itself.
type Deps struct {
	Records Records
	Queue   queue.Queue
	Events  events.Bus
	// Stager keeps an upload's documents, sealed, until a worker takes
	// the job (connectors/upload.Stager).
	Stager jobs.Stage
	Search Searcher
	Keys   encrypt.KeyProvider
	// Connections runs OAuth connections; nil: one over Records and Keys
	// with no provider configured (every provider answers 400).
	Connections *connections.Service
	// Ready reports whether the process can serve (GET /readyz); nil means
	// always ready.
	Ready func(context.Context) error
	// Custody holds ephemeral tokens sent with ingest requests, in memory
	// (connectors/custody.Custody); nil refuses them.
	Custody Custody
	// Deletions tells every process that an account is deleted, once its
	// key is erased, so that each drops the account's keys from memory.
	Deletions events.Deletions
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
		{"Deletions", d.Deletions != nil},
	} {
		if !m.ok {
			errs = append(errs, fmt.Errorf("api: Deps.%s is required", m.name))
		}
	}
	return errors.Join(errs...)
}
