package webhook

import (
	"context"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/webhooks"
)

// Records is what the dispatcher reads and writes of the record store
// (records.Store): an account's endpoints and default secret, a job's
// webhook_url, and the deliveries with their due index.
type Records interface {
	webhooks.DefaultSecrets
	webhooks.Deliveries
	Webhook(ctx context.Context, account apiary.AccountID, id string) (records.Webhook, error)
	Webhooks(ctx context.Context, account apiary.AccountID) ([]records.Webhook, error)
	UpdateWebhook(ctx context.Context, account apiary.AccountID, id string, fn func(*records.Webhook) error) (records.Webhook, error)
	Job(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error)
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]records.DueDelivery, error)
	ClaimDelivery(ctx context.Context, due records.DueDelivery, now time.Time, lease time.Duration) (records.Delivery, bool, error)
}

var _ Records = (*records.Store)(nil)
