package api

import (
	"context"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/webhooks"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// Records is what the API reads and writes of the record store
// (records.Store), one part per group of routes.
type Records interface {
	AccountRecords
	JobRecords
	DocumentRecords
	WebhookRecords
	AuditRecords
	connections.Records // OAuth connections (records.ConnectionStore)
}

// AccountRecords are accounts and their tokens (records.AccountStore):
// authentication, the account and token routes, Bootstrap.
type AccountRecords interface {
	CreateAccount(ctx context.Context, a apiary.Account) error
	Account(ctx context.Context, id apiary.AccountID) (apiary.Account, error)
	HasAccounts(ctx context.Context) (bool, error)
	CreateToken(ctx context.Context, t apiary.Token) error
	TokenByHash(ctx context.Context, hash string) (apiary.Token, error)
	Tokens(ctx context.Context, account apiary.AccountID) ([]apiary.Token, error)
	DeleteToken(ctx context.Context, account apiary.AccountID, id apiary.TokenID) error
	// DeleteAccountTokens deletes every token of the account (the first
	// step of its deletion).
	DeleteAccountTokens(ctx context.Context, account apiary.AccountID) error
	// DeleteAccountRecords deletes every record of the account (account deletion).
	DeleteAccountRecords(ctx context.Context, account apiary.AccountID) error
	// AccountLeft reports whether anything of the account is left to delete
	// and whether it holds an operator token, opening no sealed field.
	AccountLeft(ctx context.Context, account apiary.AccountID) (left, operator bool, err error)
	RotateToken(ctx context.Context, account apiary.AccountID, next apiary.Token, now, graceUntil time.Time) error
	TouchToken(ctx context.Context, account apiary.AccountID, id apiary.TokenID, now time.Time, every time.Duration) error
	TokenUses(ctx context.Context, account apiary.AccountID) (map[apiary.TokenID]time.Time, error)
}

// AuditRecords are the accounts' audit logs (records.AuditStore).
type AuditRecords interface {
	AppendAudit(ctx context.Context, e records.AuditEntry) (records.AuditEntry, error)
	AuditLog(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]records.AuditEntry, string, error)
}

// JobRecords are jobs, their outcomes and Idempotency-Keys
// (records.JobStore): what the job service writes (jobs.Records) and what the
// job routes read.
type JobRecords interface {
	jobs.Records
	Jobs(ctx context.Context, account apiary.AccountID, f records.JobFilter) ([]apiary.Job, string, error)
	JobErrors(ctx context.Context, account apiary.AccountID, job apiary.JobID, limit int, cursor string) ([]apiary.DocumentError, string, error)
}

// DocumentRecords are ingested documents' records (records.DocumentStore):
// the document routes.
type DocumentRecords interface {
	Document(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) (apiary.DocumentRecord, error)
	Documents(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]apiary.DocumentRecord, string, error)
	DeleteDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) error
}

// WebhookRecords are endpoints, default secrets and deliveries
// (records.WebhookStore and records.DeliveryStore): the webhook routes.
type WebhookRecords interface {
	webhooks.DefaultSecrets
	webhooks.Deliveries
	CreateWebhook(ctx context.Context, w records.Webhook) error
	Webhook(ctx context.Context, account apiary.AccountID, id string) (records.Webhook, error)
	Webhooks(ctx context.Context, account apiary.AccountID) ([]records.Webhook, error)
	UpdateWebhook(ctx context.Context, account apiary.AccountID, id string, fn func(*records.Webhook) error) (records.Webhook, error)
	DeleteWebhook(ctx context.Context, account apiary.AccountID, id string) error
	UpdateDefaultSecret(ctx context.Context, account apiary.AccountID, fn func(*records.DefaultSecret) error) (records.DefaultSecret, error)
	Deliveries(ctx context.Context, account apiary.AccountID, endpoint string, limit int, cursor string) ([]records.Delivery, string, error)
}

var _ Records = (*records.Store)(nil)
