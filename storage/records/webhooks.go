package records

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// Webhook bucket names.
const (
	bucketWebhooks       = "webhooks"
	bucketWebhookSecrets = "webhook_secrets"
	bucketDeliveries     = "webhook_deliveries"
	bucketDue            = "webhook_due"
)

// MaxAttemptsKept bounds the attempts a delivery record remembers (the
// oldest are dropped first).
const MaxAttemptsKept = 50

// Secrets are a signing secret, sealed with the account's key, and during a
// rotation's grace period the previous one, also sealed. Plaintext secrets
// are never stored.
type Secrets struct {
	Sealed            []byte     `json:"sealed"`
	PreviousSealed    []byte     `json:"previous_sealed,omitempty"`
	PreviousExpiresAt *time.Time `json:"previous_expires_at,omitempty"`
}

// PreviousLive reports whether the previous secret still signs at now.
func (s Secrets) PreviousLive(now time.Time) bool {
	return len(s.PreviousSealed) > 0 && s.PreviousExpiresAt != nil && now.Before(*s.PreviousExpiresAt)
}

// Webhook is an account's webhook endpoint.
type Webhook struct {
	ID          string           `json:"id"`
	Account     apiary.AccountID `json:"account_id"`
	URL         string           `json:"url"`
	Description string           `json:"description,omitempty"`
	// Events lists the event types sent here; empty means every job event.
	Events  []apiary.EventType `json:"events"`
	Enabled bool               `json:"enabled"`
	// DisabledReason says why the service disabled the endpoint (410, or
	// failing for too long); empty when a person disabled it or it is enabled.
	DisabledReason string `json:"disabled_reason,omitempty"`
	Secrets
	// FailingSince is the time of the first failed attempt since the last
	// success; nil while deliveries succeed.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// DefaultSecret is an account's default signing secret, used for the
// webhook_url of single jobs. Revealed is set once an admin has seen it.
type DefaultSecret struct {
	Account apiary.AccountID `json:"account_id"`
	Secrets
	Revealed  bool      `json:"revealed"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DeliveryStatus is where a delivery is in its life.
type DeliveryStatus string

const (
	DeliveryPending   DeliveryStatus = "pending"   // waiting for its next attempt
	DeliverySucceeded DeliveryStatus = "succeeded" // a 2xx answer
	DeliveryFailed    DeliveryStatus = "failed"    // given up early: 410, endpoint disabled or deleted
	DeliveryExhausted DeliveryStatus = "exhausted" // every scheduled attempt failed
)

// Attempt is one try of a delivery.
type Attempt struct {
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code,omitempty"`
	LatencyMS  int64     `json:"latency_ms"`
	Error      string    `json:"error,omitempty"`
}

// Delivery is one event on its way to one endpoint. Its id derives from
// (endpoint, event id), so an event handed over twice makes one delivery.
type Delivery struct {
	ID      string           `json:"id"`
	Account apiary.AccountID `json:"account_id"`
	// Endpoint is the webhook id, or JobURLEndpoint(job) for a job's own
	// webhook_url.
	Endpoint string `json:"endpoint"`
	// URL is set for a job's webhook_url only; a webhook's URL is read
	// from the webhook at each attempt.
	URL       string           `json:"url,omitempty"`
	EventID   string           `json:"event_id"`
	EventType apiary.EventType `json:"event_type"`
	Job       apiary.JobID     `json:"job_id,omitempty"`
	// Payload is the exact body sent: ids, status and counts only.
	Payload json.RawMessage `json:"payload"`
	Status  DeliveryStatus  `json:"status"`
	// Tries counts the attempts of the current round (a redelivery starts
	// a new round); it picks the next delay of the retry schedule.
	Tries    int       `json:"tries"`
	Attempts []Attempt `json:"attempts"`
	// NextAttemptAt is when a pending delivery is due (ms precision).
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	Error         string     `json:"error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

// DeliveryIDFor derives a delivery's id from its endpoint and event.
func DeliveryIDFor(endpoint, eventID string) string {
	return "dlv_" + shortHash(endpoint, eventID)
}

// JobURLEndpoint is the endpoint key of deliveries to job's own
// webhook_url. It derives from the job, not the URL: a hash of the URL,
// stored in the clear, would let whoever guesses the URL confirm it.
func JobURLEndpoint(job apiary.JobID) string { return "url_" + shortHash(string(job)) }

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// --- webhooks ---

// WebhookStore keeps accounts' webhook endpoints and default signing
// secrets.
type WebhookStore struct {
	webhooks, secrets storage.KV
	fields            *fieldSealer
}

// CreateWebhook stores a new endpoint; Conflict if the id is taken.
func (s *WebhookStore) CreateWebhook(ctx context.Context, w Webhook) error {
	if w.Account == "" || w.ID == "" {
		return apiary.E(apiary.KindInvalid, "webhook needs an account and an id")
	}
	if err := s.fields.sealWebhook(ctx, &w); err != nil {
		return err
	}
	return create(ctx, s.webhooks, scopedKey(w.Account, w.ID), "webhook", w)
}

// Webhook returns account's endpoint id; NotFound for another account's.
func (s *WebhookStore) Webhook(ctx context.Context, account apiary.AccountID, id string) (Webhook, error) {
	if id == "" {
		return Webhook{}, apiary.E(apiary.KindNotFound, "no such webhook")
	}
	return s.getWebhook(ctx, scopedKey(account, id))
}

// getWebhook reads the endpoint at key, its sealed fields open.
func (s *WebhookStore) getWebhook(ctx context.Context, key string) (Webhook, error) {
	w, _, err := get[Webhook](ctx, s.webhooks, key, "webhook")
	if err != nil {
		return w, err
	}
	return w, s.fields.openWebhook(ctx, &w)
}

// Webhooks lists account's endpoints, oldest first.
func (s *WebhookStore) Webhooks(ctx context.Context, account apiary.AccountID) ([]Webhook, error) {
	ids, err := scopedIDs(ctx, s.webhooks, account, "", false)
	if err != nil {
		return nil, err
	}
	out := []Webhook{}
	for _, id := range ids {
		w, err := s.getWebhook(ctx, scopedKey(account, id))
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// UpdateWebhook applies fn to account's endpoint id and stores the result,
// retrying on concurrent writes; ErrNoChange from fn writes nothing.
func (s *WebhookStore) UpdateWebhook(ctx context.Context, account apiary.AccountID, id string, fn func(*Webhook) error) (Webhook, error) {
	if id == "" {
		return Webhook{}, apiary.E(apiary.KindNotFound, "no such webhook")
	}
	return updateSealed(ctx, s.webhooks, scopedKey(account, id), "webhook", fn, s.fields.openWebhook, s.fields.sealWebhook)
}

// DeleteWebhook removes account's endpoint id; NotFound if there is none.
// Its pending deliveries end as failed when they come due.
func (s *WebhookStore) DeleteWebhook(ctx context.Context, account apiary.AccountID, id string) error {
	if _, err := s.Webhook(ctx, account, id); err != nil {
		return err
	}
	if err := s.webhooks.Delete(ctx, scopedKey(account, id)); err != nil {
		return fmt.Errorf("records: delete webhook: %w", err)
	}
	return nil
}

// --- default secret ---

// DefaultSecret returns account's default signing secret; NotFound if it
// was never created.
func (s *WebhookStore) DefaultSecret(ctx context.Context, account apiary.AccountID) (DefaultSecret, error) {
	d, _, err := get[DefaultSecret](ctx, s.secrets, encodeID(string(account)), "default webhook secret")
	return d, err
}

// CreateDefaultSecret stores account's default secret; Conflict if it exists.
func (s *WebhookStore) CreateDefaultSecret(ctx context.Context, d DefaultSecret) error {
	if err := d.Account.Validate(); err != nil {
		return err
	}
	return create(ctx, s.secrets, encodeID(string(d.Account)), "default webhook secret", d)
}

// UpdateDefaultSecret applies fn to account's default secret (see UpdateWebhook).
func (s *WebhookStore) UpdateDefaultSecret(ctx context.Context, account apiary.AccountID, fn func(*DefaultSecret) error) (DefaultSecret, error) {
	return update(ctx, s.secrets, encodeID(string(account)), "default webhook secret", fn)
}

// --- deliveries and their due index ---
//
// A pending delivery has a due-index entry keyed
// "<ms>.<account>.<endpoint>.<id>" (ms zero-padded, so keys sort by due
// time): the scheduler lists the index, never the deliveries. The delivery
// record is the truth; an index entry that does not match its record (left
// by a crash between the two writes) is dropped when it comes due. A new
// entry is written before the record and the old one deleted after it, so
// a pending delivery is never without one.

// DeliveryStore keeps webhook deliveries and the index of when each pending
// one is due.
type DeliveryStore struct {
	deliveries, due storage.KV
	fields          *fieldSealer
}

func deliveryPrefix(account apiary.AccountID, endpoint string) string {
	return scopePrefix(account) + encodeID(endpoint) + "."
}

func deliveryKey(account apiary.AccountID, endpoint, id string) string {
	return deliveryPrefix(account, endpoint) + encodeID(id)
}

func dueKey(d Delivery) string {
	if d.Status != DeliveryPending || d.NextAttemptAt == nil {
		return ""
	}
	return fmt.Sprintf("%015d.%s", d.NextAttemptAt.UnixMilli(), deliveryKey(d.Account, d.Endpoint, d.ID))
}

// normalize keeps NextAttemptAt only while pending, in UTC at ms precision
// (the precision of the index).
func (d *Delivery) normalize() {
	if d.Status != DeliveryPending {
		d.NextAttemptAt = nil
		return
	}
	if d.NextAttemptAt != nil {
		t := d.NextAttemptAt.UTC().Truncate(time.Millisecond)
		d.NextAttemptAt = &t
	}
	if n := len(d.Attempts); n > MaxAttemptsKept {
		d.Attempts = append([]Attempt(nil), d.Attempts[n-MaxAttemptsKept:]...)
	}
}

func (s *DeliveryStore) putDue(ctx context.Context, key string) error {
	if key == "" {
		return nil
	}
	if _, err := s.due.Put(ctx, key, []byte("1")); err != nil {
		return fmt.Errorf("records: schedule delivery: %w", err)
	}
	return nil
}

// CreateDelivery stores a new delivery and schedules it at NextAttemptAt
// when pending. When one with the same id exists it returns a Conflict
// error after making sure the existing one is still scheduled (a crash
// between the record and its index entry heals here).
func (s *DeliveryStore) CreateDelivery(ctx context.Context, d Delivery) error {
	if d.Account == "" || d.Endpoint == "" || d.ID == "" {
		return apiary.E(apiary.KindInvalid, "delivery needs an account, an endpoint and an id")
	}
	d.normalize()
	key := deliveryKey(d.Account, d.Endpoint, d.ID)
	if err := s.fields.sealDelivery(ctx, &d); err != nil {
		return err
	}
	err := create(ctx, s.deliveries, key, "delivery", d)
	if errors.Is(err, apiary.ErrConflict) {
		prev, _, gerr := get[Delivery](ctx, s.deliveries, key, "delivery")
		if gerr != nil {
			return gerr
		}
		if perr := s.putDue(ctx, dueKey(prev)); perr != nil {
			return perr
		}
		return err
	}
	if err != nil {
		return err
	}
	return s.putDue(ctx, dueKey(d))
}

// Delivery returns account's delivery id to endpoint.
func (s *DeliveryStore) Delivery(ctx context.Context, account apiary.AccountID, endpoint, id string) (Delivery, error) {
	if endpoint == "" || id == "" {
		return Delivery{}, apiary.E(apiary.KindNotFound, "no such delivery")
	}
	return s.getDelivery(ctx, deliveryKey(account, endpoint, id))
}

// getDelivery reads the delivery at key, its sealed fields open.
func (s *DeliveryStore) getDelivery(ctx context.Context, key string) (Delivery, error) {
	d, _, err := get[Delivery](ctx, s.deliveries, key, "delivery")
	if err != nil {
		return d, err
	}
	return d, s.fields.openDelivery(ctx, &d)
}

// UpdateDelivery applies fn to a delivery and stores it, retrying on
// concurrent writes, and moves its due-index entry along with
// NextAttemptAt and Status.
func (s *DeliveryStore) UpdateDelivery(ctx context.Context, account apiary.AccountID, endpoint, id string, fn func(*Delivery) error) (Delivery, error) {
	if endpoint == "" || id == "" {
		return Delivery{}, apiary.E(apiary.KindNotFound, "no such delivery")
	}
	var oldKey, newKey string
	d, err := updateSealed(ctx, s.deliveries, deliveryKey(account, endpoint, id), "delivery", func(d *Delivery) error {
		oldKey = dueKey(*d)
		newKey = oldKey // unchanged unless fn changes it
		if err := fn(d); err != nil {
			return err
		}
		d.normalize()
		newKey = dueKey(*d)
		if newKey != oldKey {
			return s.putDue(ctx, newKey)
		}
		return nil
	}, s.fields.openDelivery, s.fields.sealDelivery)
	if err != nil {
		return d, err
	}
	if oldKey != "" && oldKey != newKey {
		if err := s.due.Delete(ctx, oldKey); err != nil {
			return d, fmt.Errorf("records: unschedule delivery: %w", err)
		}
	}
	return d, nil
}

// Deliveries lists account's deliveries to endpoint, newest first, and
// returns the cursor of the next page ("" when there is none).
func (s *DeliveryStore) Deliveries(ctx context.Context, account apiary.AccountID, endpoint string, limit int, cursor string) ([]Delivery, string, error) {
	if endpoint == "" {
		return nil, "", apiary.E(apiary.KindNotFound, "no such webhook")
	}
	var afterNS int64
	var afterID string
	if cursor != "" {
		c, err := decodeID(cursor)
		ns, id, ok := strings.Cut(c, "_")
		n, perr := strconv.ParseInt(ns, 10, 64)
		if err != nil || !ok || perr != nil {
			return nil, "", apiary.E(apiary.KindInvalid, "cursor is not one this API returned")
		}
		afterNS, afterID = n, id
	}
	prefix := deliveryPrefix(account, endpoint)
	keys, err := s.deliveries.Keys(ctx, prefix)
	if err != nil {
		return nil, "", fmt.Errorf("records: list deliveries: %w", err)
	}
	all := make([]Delivery, 0, len(keys))
	for _, k := range keys {
		d, err := s.getDelivery(ctx, k)
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		all = append(all, d)
	}
	newer := func(a, b Delivery) bool { // a before b in the listing
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.ID > b.ID
	}
	sort.Slice(all, func(i, j int) bool { return newer(all[i], all[j]) })
	limit = clampLimit(limit)
	out := []Delivery{}
	for _, d := range all {
		if cursor != "" && !newer(Delivery{CreatedAt: time.Unix(0, afterNS), ID: afterID}, d) {
			continue
		}
		if len(out) == limit {
			last := out[len(out)-1]
			return out, encodeID(strconv.FormatInt(last.CreatedAt.UnixNano(), 10) + "_" + last.ID), nil
		}
		out = append(out, d)
	}
	return out, "", nil
}

// DueDelivery is an entry of the due index.
type DueDelivery struct {
	At       time.Time
	Account  apiary.AccountID
	Endpoint string
	ID       string
	key      string
}

// DueDeliveries returns up to limit index entries due at or before now,
// soonest first.
func (s *DeliveryStore) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]DueDelivery, error) {
	keys, err := s.due.Keys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("records: list due deliveries: %w", err)
	}
	nowMS := now.UnixMilli()
	var out []DueDelivery
	for _, k := range keys {
		if len(out) >= limit {
			break
		}
		parts := strings.Split(k, ".")
		if len(parts) != 4 {
			_ = s.due.Delete(ctx, k) // not ours: never due
			continue
		}
		ms, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			_ = s.due.Delete(ctx, k)
			continue
		}
		if ms > nowMS {
			break // keys sort by due time
		}
		account, err1 := decodeID(parts[1])
		endpoint, err2 := decodeID(parts[2])
		id, err3 := decodeID(parts[3])
		if err := errors.Join(err1, err2, err3); err != nil {
			_ = s.due.Delete(ctx, k)
			continue
		}
		out = append(out, DueDelivery{At: time.UnixMilli(ms).UTC(), Account: apiary.AccountID(account), Endpoint: endpoint, ID: id, key: k})
	}
	return out, nil
}

// ClaimDelivery takes a due entry for one attempt: when the delivery is
// still pending at that due time, it moves NextAttemptAt to now+lease (so
// that a crash mid-attempt retries after the lease, and another process
// does not take it meanwhile) and returns it with ok true. A stale entry
// is dropped and ok is false.
func (s *DeliveryStore) ClaimDelivery(ctx context.Context, due DueDelivery, now time.Time, lease time.Duration) (d Delivery, ok bool, err error) {
	d, err = s.UpdateDelivery(ctx, due.Account, due.Endpoint, due.ID, func(d *Delivery) error {
		ok = false // the callback reruns after a lost race: only the winning write claims
		if d.Status != DeliveryPending || d.NextAttemptAt == nil || d.NextAttemptAt.UnixMilli() != due.At.UnixMilli() {
			return ErrNoChange
		}
		until := now.Add(lease)
		d.NextAttemptAt = &until
		ok = true
		return nil
	})
	if errors.Is(err, apiary.ErrNotFound) {
		err = nil
	}
	if err != nil {
		return d, false, err
	}
	if !ok && due.key != "" {
		if err := s.due.Delete(ctx, due.key); err != nil {
			return d, false, fmt.Errorf("records: drop stale due entry: %w", err)
		}
	}
	return d, ok, nil
}
