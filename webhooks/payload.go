package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// JobEvents are the event types an endpoint may subscribe to; an endpoint
// with no events gets all of them.
var JobEvents = []apiary.EventType{
	apiary.EventJobQueued, apiary.EventJobStarted, apiary.EventJobProgress,
	apiary.EventJobSucceeded, apiary.EventJobFailed, apiary.EventJobCanceled,
}

// ParseEvents checks an endpoint's event list: known job event types,
// without duplicates. An empty list (all job events) gives an empty slice.
func ParseEvents(names []string) ([]apiary.EventType, error) {
	out := make([]apiary.EventType, 0, len(names))
	for i, n := range names {
		t := apiary.EventType(n)
		if !slices.Contains(JobEvents, t) {
			return nil, apiary.E(apiary.KindInvalid, "events[%d] %q is not a job event; use any of job.queued, job.started, job.progress, job.succeeded, job.failed, job.canceled, or none for all", i, n)
		}
		if slices.Contains(out, t) {
			return nil, apiary.E(apiary.KindInvalid, "events[%d] %q is listed twice", i, n)
		}
		out = append(out, t)
	}
	return out, nil
}

// Subscribed reports whether an endpoint listening to events gets typ.
func Subscribed(events []apiary.EventType, typ apiary.EventType) bool {
	if !slices.Contains(JobEvents, typ) {
		return false
	}
	return len(events) == 0 || slices.Contains(events, typ)
}

// message is the body of every delivery.
type message struct {
	Type      apiary.EventType `json:"type"`
	ID        string           `json:"id"`
	CreatedAt time.Time        `json:"created_at"`
	Data      any              `json:"data"`
}

type jobData struct {
	JobID  apiary.JobID           `json:"job_id"`
	Status apiary.JobStatus       `json:"status"`
	Counts apiary.Counts          `json:"counts"`
	Errors []apiary.DocumentError `json:"errors"`
}

type testData struct {
	WebhookID string `json:"webhook_id"`
	Message   string `json:"message"`
}

// Payload renders ev as a delivery body: ids, status, counts and document
// errors (ids and reasons), never document text or credentials.
func Payload(ev apiary.Event) ([]byte, error) {
	errs := ev.Errors
	if errs == nil {
		errs = []apiary.DocumentError{}
	}
	return render(message{Type: ev.Type, ID: ev.ID, CreatedAt: ev.Time.UTC(),
		Data: jobData{JobID: ev.Job, Status: ev.Status, Counts: ev.Counts, Errors: errs}})
}

func render(m message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("webhooks: payload of %s: %w", m.ID, err)
	}
	return b, nil
}

// newDelivery is ev on its way to endpoint, due now.
func newDelivery(ev apiary.Event, body []byte, endpoint, url string, now time.Time) records.Delivery {
	return records.Delivery{
		ID:            records.DeliveryIDFor(endpoint, ev.ID),
		Account:       ev.Account,
		Endpoint:      endpoint,
		URL:           url,
		EventID:       ev.ID,
		EventType:     ev.Type,
		Payload:       body,
		Status:        records.DeliveryPending,
		Attempts:      []records.Attempt{},
		NextAttemptAt: &now,
		CreatedAt:     now,
		UpdatedAt:     now,
		Job:           ev.Job,
	}
}

// Deliveries is where deliveries are kept (records.DeliveryStore).
type Deliveries interface {
	CreateDelivery(ctx context.Context, d records.Delivery) error
	UpdateDelivery(ctx context.Context, account apiary.AccountID, endpoint, id string, fn func(*records.Delivery) error) (records.Delivery, error)
}

// Enqueue stores a delivery of ev to endpoint (at url for a job's
// webhook_url, "" for an endpoint record), due now. A delivery that already
// exists (the same event handed over again) is left as it is.
func Enqueue(ctx context.Context, recs Deliveries, ev apiary.Event, endpoint, url string) error {
	body, err := Payload(ev)
	if err != nil {
		return err
	}
	d := newDelivery(ev, body, endpoint, url, time.Now().UTC())
	if err := recs.CreateDelivery(ctx, d); err != nil && !errors.Is(err, apiary.ErrConflict) {
		return err
	}
	return nil
}

// SendTest queues a webhook.test event to endpoint w, due now, and returns
// its delivery. The dispatcher sends it at its next scheduling round.
func SendTest(ctx context.Context, recs Deliveries, w records.Webhook) (records.Delivery, error) {
	now := time.Now().UTC()
	ev := apiary.Event{ID: apiary.RandomID("evt_"), Type: apiary.EventWebhookTest, Account: w.Account, Time: now}
	body, err := render(message{Type: ev.Type, ID: ev.ID, CreatedAt: now,
		Data: testData{WebhookID: w.ID, Message: "This is a test delivery from Apiary."}})
	if err != nil {
		return records.Delivery{}, err
	}
	d := newDelivery(ev, body, w.ID, "", now)
	if err := recs.CreateDelivery(ctx, d); err != nil {
		return d, err
	}
	return d, nil
}

// Redeliver starts a new round of attempts of a delivery that is no longer
// pending, due now, with the same webhook-id. A pending one is a Conflict.
func Redeliver(ctx context.Context, recs Deliveries, account apiary.AccountID, endpoint, id string) (records.Delivery, error) {
	return recs.UpdateDelivery(ctx, account, endpoint, id, func(d *records.Delivery) error {
		if d.Status == records.DeliveryPending {
			return apiary.E(apiary.KindConflict, "delivery %s is still pending; its next attempt is already scheduled", d.ID)
		}
		now := time.Now().UTC()
		d.Status, d.Tries, d.Error, d.NextAttemptAt, d.UpdatedAt = records.DeliveryPending, 0, "", &now, now
		return nil
	})
}
