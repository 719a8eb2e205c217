package webhook_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/internal/safehttp"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/pipeline/lexical"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/webhooks"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/webhook"
)

const waitFor = 30 * time.Second

// rig is a real NATS server with the event bus, the records and a keyring:
// what a dispatcher runs over, and what survives its restart.
type rig struct {
	t    *testing.T
	bus  *natsbus.Bus
	recs *records.Store
	keys *keyring.Keyring
}

func newRig(t *testing.T) *rig {
	t.Helper()
	nc, err := nats.Connect(natstest.Start(t))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	bus, err := natsbus.New(t.Context(), natsbus.Config{Conn: nc})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	recs, err := records.Open(t.Context(), natskv.NewKVStore(js, natskv.Config{}))
	require.NoError(t, err)
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	keys, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: root})
	require.NoError(t, err)
	for _, a := range []apiary.AccountID{"acme", "beta"} {
		require.NoError(t, keys.CreateAccountKey(t.Context(), a))
	}
	// Webhook URLs sealed in the records, as serve keeps them.
	recs.SealFields(lexical.NewKeys(keys, recs, lexical.KeysConfig{}).Derived("record fields"))
	return &rig{t: t, bus: bus, recs: recs, keys: keys}
}

// fast is a test configuration: private targets allowed, a short schedule.
func fast(cfg webhook.Config) webhook.Config {
	cfg.AllowPrivate = true
	if cfg.Schedule == nil {
		cfg.Schedule = []time.Duration{0, 50 * time.Millisecond, 50 * time.Millisecond}
	}
	cfg.PollInterval = 20 * time.Millisecond
	return cfg
}

// start runs a dispatcher until the returned stop is called (or the test ends).
func (r *rig) start(cfg webhook.Config) (stop func()) {
	r.t.Helper()
	d, err := webhook.New(cfg, r.recs, r.keys, r.bus)
	require.NoError(r.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(r.t, err)
			case <-time.After(waitFor):
				r.t.Error("dispatcher did not stop")
			}
		})
	}
	r.t.Cleanup(stop)
	return stop
}

// endpoint registers a webhook of account to u and returns it and its secret.
func (r *rig) endpoint(account apiary.AccountID, u string, events ...apiary.EventType) (records.Webhook, string) {
	r.t.Helper()
	id := apiary.RandomID("wh_")
	secret, sealed, err := webhooks.NewSecrets(r.t.Context(), r.keys, account, id)
	require.NoError(r.t, err)
	now := time.Now().UTC()
	w := records.Webhook{ID: id, Account: account, URL: u, Events: events, Enabled: true, Secrets: sealed, CreatedAt: now, UpdatedAt: now}
	require.NoError(r.t, r.recs.CreateWebhook(r.t.Context(), w))
	return w, secret
}

// runJob records a job of account that went through its life, publishing
// each event as the API and a worker would, and returns it.
func (r *rig) runJob(account apiary.AccountID, webhookURL string) apiary.Job {
	r.t.Helper()
	now := time.Now().UTC()
	j := apiary.Job{ID: apiary.NewJobID(), Account: account, Status: apiary.JobQueued, Errors: []apiary.DocumentError{},
		Counts: apiary.Counts{DocumentsTotal: 2}, WebhookURL: webhookURL, CreatedAt: now, UpdatedAt: now}
	require.NoError(r.t, r.recs.CreateJob(r.t.Context(), j))
	r.publish(j, apiary.EventJobQueued)
	j.Status = apiary.JobRunning
	r.publish(j, apiary.EventJobStarted)
	j.Counts.DocumentsDone, j.Counts.DocumentsFailed, j.Counts.Chunks = 1, 1, 5
	j.Errors = []apiary.DocumentError{{DocumentID: "b.txt", Reason: "unsupported content type"}}
	r.publish(j, apiary.EventJobProgress)
	_, err := r.recs.UpdateJob(r.t.Context(), account, j.ID, func(cur *apiary.Job) error {
		cur.Status, cur.Counts, cur.Errors = apiary.JobSucceeded, j.Counts, j.Errors
		return nil
	})
	require.NoError(r.t, err)
	j.Status = apiary.JobSucceeded
	r.publish(j, apiary.EventJobSucceeded)
	return j
}

func (r *rig) publish(j apiary.Job, typ apiary.EventType) {
	r.t.Helper()
	require.NoError(r.t, r.bus.Publish(r.t.Context(), apiary.NewJobEvent(j, typ)))
}

func (r *rig) delivery(account apiary.AccountID, endpoint, eventID string) records.Delivery {
	r.t.Helper()
	d, err := r.recs.Delivery(r.t.Context(), account, endpoint, records.DeliveryIDFor(endpoint, eventID))
	require.NoError(r.t, err)
	return d
}

// receiver is a real HTTP endpoint that answers with the given statuses in
// turn (then 200) and keeps what it got.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []received
	statuses []int
	header   http.Header // added to every answer
	block    chan struct{}
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	rc := &receiver{statuses: statuses, header: http.Header{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: body})
		status := http.StatusOK
		if len(rc.statuses) > 0 {
			status, rc.statuses = rc.statuses[0], rc.statuses[1:]
		}
		block := rc.block
		for k, v := range rc.header {
			w.Header()[k] = v
		}
		rc.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func (rc *receiver) waitN(t *testing.T, n int) []received {
	t.Helper()
	require.Eventually(t, func() bool { return len(rc.all()) >= n }, waitFor, 10*time.Millisecond, "the receiver got fewer than %d deliveries", n)
	return rc.all()
}

// body is a delivery body.
type body struct {
	Type      string    `json:"type"`
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Data      struct {
		JobID  apiary.JobID           `json:"job_id"`
		Status apiary.JobStatus       `json:"status"`
		Counts apiary.Counts          `json:"counts"`
		Errors []apiary.DocumentError `json:"errors"`
	} `json:"data"`
}

func decodeBody(t *testing.T, r received) body {
	t.Helper()
	var b body
	require.NoError(t, json.Unmarshal(r.body, &b), string(r.body))
	return b
}

func verify(t *testing.T, secret string, r received) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(r.body, r.header))
}

func TestEndToEndOneSucceededEvent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t)
	w, secret := r.endpoint("acme", rc.URL+"/hook", apiary.EventJobSucceeded, apiary.EventJobFailed)
	r.start(fast(webhook.Config{}))

	job := r.runJob("acme", "")
	// The final event handed over again (a redelivered job) makes no second delivery.
	r.publish(job, apiary.EventJobSucceeded)
	got := rc.waitN(t, 1)
	verify(t, secret, got[0])
	b := decodeBody(t, got[0])
	require.Equal(t, "job.succeeded", b.Type)
	require.Equal(t, job.ID, b.Data.JobID)
	require.Equal(t, apiary.JobSucceeded, b.Data.Status)
	require.Equal(t, apiary.Counts{DocumentsTotal: 2, DocumentsDone: 1, DocumentsFailed: 1, Chunks: 5}, b.Data.Counts)
	require.Equal(t, []apiary.DocumentError{{DocumentID: "b.txt", Reason: "unsupported content type"}}, b.Data.Errors)
	require.Equal(t, apiary.FinalEventID(job.ID), got[0].header.Get("webhook-id"))
	require.Equal(t, "application/json", got[0].header.Get("Content-Type"))

	// Exactly one: the delivery is recorded as succeeded, and nothing else
	// arrives while another job's event goes through.
	r.waitStatus("acme", w.ID, apiary.FinalEventID(job.ID), records.DeliverySucceeded)
	next := r.runJob("acme", "")
	got = rc.waitN(t, 2)
	require.Len(t, got, 2)
	require.Equal(t, next.ID, decodeBody(t, got[1]).Data.JobID)
	d := r.delivery("acme", w.ID, apiary.FinalEventID(job.ID))
	require.Len(t, d.Attempts, 1)
	require.Equal(t, 200, d.Attempts[0].StatusCode)
}

func TestEndToEndRetriesAcrossRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, 500, 500, 200)
	w, secret := r.endpoint("acme", rc.URL+"/hook", apiary.EventJobSucceeded)
	// A long second delay, so that the restart surely falls between attempts.
	cfg := fast(webhook.Config{Schedule: []time.Duration{0, 3 * time.Second, 50 * time.Millisecond, time.Hour}, Jitter: -1})
	stop := r.start(cfg)

	job := r.runJob("acme", "")
	eventID := apiary.FinalEventID(job.ID)
	// Wait for the first (failed) attempt of the final event, then restart.
	require.Eventually(t, func() bool {
		return len(r.delivery0(t, "acme", w.ID, eventID).Attempts) >= 1
	}, waitFor, 5*time.Millisecond)
	stop()
	require.Len(t, r.delivery("acme", w.ID, eventID).Attempts, 1, "the restart happened between attempts")
	r.start(cfg)

	r.waitStatus("acme", w.ID, eventID, records.DeliverySucceeded)
	var finals []received
	for _, g := range rc.all() {
		if g.header.Get("webhook-id") == eventID {
			finals = append(finals, g)
		}
	}
	require.Len(t, finals, 3, "two failures, then the success")
	require.Len(t, rc.all(), 3, "nothing else")
	for _, f := range finals {
		verify(t, secret, f)
		require.Equal(t, eventID, f.header.Get("webhook-id"), "the same webhook-id on every retry")
	}
	d := r.delivery("acme", w.ID, eventID)
	require.Len(t, d.Attempts, 3)
	require.Equal(t, []int{500, 500, 200}, []int{d.Attempts[0].StatusCode, d.Attempts[1].StatusCode, d.Attempts[2].StatusCode})
	require.Equal(t, "the endpoint answered 500", d.Attempts[0].Error)
	list, _, err := r.recs.Deliveries(t.Context(), "acme", w.ID, 100, "")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, d.Attempts, list[0].Attempts)
}

// waitStatus waits until the delivery of eventID to endpoint has status.
func (r *rig) waitStatus(account apiary.AccountID, endpoint, eventID string, status records.DeliveryStatus) {
	r.t.Helper()
	require.Eventually(r.t, func() bool {
		return r.delivery0(r.t, account, endpoint, eventID).Status == status
	}, waitFor, 10*time.Millisecond, "delivery of %s to %s never became %s", eventID, endpoint, status)
}

// waitDisabled waits until the service disabled webhook id, and returns it.
func (r *rig) waitDisabled(account apiary.AccountID, id string) records.Webhook {
	r.t.Helper()
	require.Eventually(r.t, func() bool {
		got, err := r.recs.Webhook(r.t.Context(), account, id)
		return err == nil && !got.Enabled
	}, waitFor, 10*time.Millisecond)
	got, err := r.recs.Webhook(r.t.Context(), account, id)
	require.NoError(r.t, err)
	return got
}

// delivery0 is delivery, or the zero Delivery while there is none.
func (r *rig) delivery0(t *testing.T, account apiary.AccountID, endpoint, eventID string) records.Delivery {
	d, err := r.recs.Delivery(t.Context(), account, endpoint, records.DeliveryIDFor(endpoint, eventID))
	if err != nil {
		return records.Delivery{}
	}
	return d
}

func TestJobWebhookURLUsesDefaultSecret(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t)
	r.start(fast(webhook.Config{}))
	job := r.runJob("acme", rc.URL+"/job-hook?token=abc")
	got := rc.waitN(t, 1)
	b := decodeBody(t, got[0])
	require.Equal(t, "job.succeeded", b.Type, "only the final event goes to a job's webhook_url")
	require.Equal(t, job.ID, b.Data.JobID)

	ds, err := r.recs.DefaultSecret(t.Context(), "acme")
	require.NoError(t, err)
	require.False(t, ds.Revealed, "created on first use, not yet shown")
	secret, err := webhooks.OpenSecret(t.Context(), r.keys, "acme", webhooks.DefaultSecretID, ds.Sealed)
	require.NoError(t, err)
	verify(t, secret, got[0])
	require.Len(t, rc.waitN(t, 1), 1)
}

func TestRotationSignsWithBothSecrets(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t)
	w, oldSecret := r.endpoint("acme", rc.URL, apiary.EventJobSucceeded)
	now := time.Now()
	var newSecret string
	_, err := r.recs.UpdateWebhook(t.Context(), "acme", w.ID, func(w *records.Webhook) error {
		s, next, err := webhooks.Rotate(t.Context(), r.keys, "acme", w.ID, w.Secrets, 24*time.Hour, now)
		newSecret, w.Secrets = s, next
		return err
	})
	require.NoError(t, err)
	r.start(fast(webhook.Config{}))
	r.runJob("acme", "")
	got := rc.waitN(t, 1)
	require.Len(t, strings.Split(got[0].header.Get("webhook-signature"), " "), 2)
	verify(t, oldSecret, got[0])
	verify(t, newSecret, got[0])
}

func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, http.StatusGone)
	w, _ := r.endpoint("acme", rc.URL, apiary.EventJobSucceeded)
	r.start(fast(webhook.Config{}))
	job := r.runJob("acme", "")
	got := r.waitDisabled("acme", w.ID)
	require.Contains(t, got.DisabledReason, "410")
	d := r.delivery("acme", w.ID, apiary.FinalEventID(job.ID))
	require.Equal(t, records.DeliveryFailed, d.Status)
	require.Len(t, d.Attempts, 1, "no retry after 410")

	// A disabled endpoint gets nothing more.
	r.runJob("acme", "")
	list, _, err := r.recs.Deliveries(t.Context(), "acme", w.ID, 100, "")
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func TestExhaustedAfterSchedule(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, 500, 503, 500, 500, 500)
	w, _ := r.endpoint("acme", rc.URL, apiary.EventJobSucceeded)
	r.start(fast(webhook.Config{Schedule: []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond}}))
	job := r.runJob("acme", "")
	r.waitStatus("acme", w.ID, apiary.FinalEventID(job.ID), records.DeliveryExhausted)
	d := r.delivery("acme", w.ID, apiary.FinalEventID(job.ID))
	require.Len(t, d.Attempts, 3, "one attempt per schedule entry")
	require.Nil(t, d.NextAttemptAt)
	got, err := r.recs.Webhook(t.Context(), "acme", w.ID)
	require.NoError(t, err)
	require.True(t, got.Enabled, "failing for less than DisableAfter keeps it enabled")
	require.NotNil(t, got.FailingSince)
}

func TestFailingTooLongDisablesEndpoint(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, 500, 500, 500)
	w, _ := r.endpoint("acme", rc.URL, apiary.EventJobSucceeded)
	r.start(fast(webhook.Config{DisableAfter: time.Nanosecond, Schedule: []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond}}))
	r.runJob("acme", "")
	got := r.waitDisabled("acme", w.ID)
	require.Contains(t, got.DisabledReason, "failed since")
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, http.StatusTooManyRequests)
	rc.header.Set("Retry-After", "1")
	w, _ := r.endpoint("acme", rc.URL, apiary.EventJobSucceeded)
	r.start(fast(webhook.Config{Schedule: []time.Duration{0, time.Millisecond, time.Millisecond}}))
	job := r.runJob("acme", "")
	r.waitStatus("acme", w.ID, apiary.FinalEventID(job.ID), records.DeliverySucceeded)
	d := r.delivery("acme", w.ID, apiary.FinalEventID(job.ID))
	require.Len(t, d.Attempts, 2)
	require.Equal(t, 429, d.Attempts[0].StatusCode)
	require.GreaterOrEqual(t, d.Attempts[1].At.Sub(d.Attempts[0].At), time.Second, "the retry waited for Retry-After, not the 1 ms schedule")
}

// A hanging endpoint of one account delays neither another account's
// endpoint nor its own account's other endpoint.
func TestSlowEndpointDelaysNoOne(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	slow := newReceiver(t)
	slow.block = make(chan struct{})
	defer close(slow.block)
	fastA, fastB := newReceiver(t), newReceiver(t)
	r.endpoint("acme", slow.URL)
	r.endpoint("acme", fastA.URL, apiary.EventJobSucceeded)
	r.endpoint("beta", fastB.URL, apiary.EventJobSucceeded)
	r.start(fast(webhook.Config{PerEndpoint: 2, Concurrency: 8}))
	for range 3 { // 12 events for the slow endpoint, 2 in flight at most
		r.runJob("acme", "")
	}
	r.runJob("beta", "")
	slow.waitN(t, 2)
	fastA.waitN(t, 3)
	fastB.waitN(t, 1)
	require.Len(t, slow.all(), 2, "the slow endpoint has at most PerEndpoint attempts in flight")
}

// URLs that reach a private address are refused at dial time, even when
// they passed the creation check as a name.
func TestPrivateTargetsRefusedAtDialTime(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t)
	u, err := url.Parse(rc.URL)
	require.NoError(t, err)
	named := "http://hooks.example.test:" + u.Port() + "/hook"
	require.NoError(t, safehttp.CheckURL(named, false), "a name passes the creation check")
	wNamed, _ := r.endpoint("acme", named, apiary.EventJobSucceeded)
	wLiteral, _ := r.endpoint("acme", rc.URL, apiary.EventJobSucceeded)
	r.start(webhook.Config{
		PollInterval: 20 * time.Millisecond,
		LookupHost: func(ctx context.Context, host string) ([]string, error) {
			if host == "hooks.example.test" {
				return []string{"127.0.0.1"}, nil
			}
			return net.DefaultResolver.LookupHost(ctx, host)
		},
	})
	job := r.runJob("acme", "http://localhost:"+u.Port()+"/job")
	for _, w := range []records.Webhook{wNamed, wLiteral} {
		r.waitStatus("acme", w.ID, apiary.FinalEventID(job.ID), records.DeliveryFailed)
		d := r.delivery("acme", w.ID, apiary.FinalEventID(job.ID))
		require.Contains(t, d.Error, "refused")
		if w.ID == wNamed.ID {
			// What the name resolved to stays unsaid: no internal-DNS oracle.
			require.NotContains(t, d.Error, "127.0.0.1")
			require.NotContains(t, d.Error, "loopback")
		} else {
			require.Contains(t, d.Error, "loopback", "a literal address is the caller's own")
		}
	}
	ep := records.JobURLEndpoint(job.ID)
	r.waitStatus("acme", ep, apiary.FinalEventID(job.ID), records.DeliveryFailed)
	require.Empty(t, rc.all(), "nothing reached the private receiver")
}

func TestSendTestAndRedeliver(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, 500)
	w, secret := r.endpoint("acme", rc.URL, apiary.EventJobSucceeded)
	r.start(fast(webhook.Config{Schedule: []time.Duration{0}}))
	d, err := webhooks.SendTest(t.Context(), r.recs, w)
	require.NoError(t, err)
	r.waitStatus("acme", w.ID, d.EventID, records.DeliveryExhausted)
	_, err = webhooks.Redeliver(t.Context(), r.recs, "acme", w.ID, d.ID)
	require.NoError(t, err)
	r.waitStatus("acme", w.ID, d.EventID, records.DeliverySucceeded)
	got := rc.all()
	require.Len(t, got, 2)
	require.Equal(t, got[0].header.Get("webhook-id"), got[1].header.Get("webhook-id"), "a redelivery keeps the webhook-id")
	verify(t, secret, got[1])
	require.Contains(t, string(got[1].body), `"type":"webhook.test"`)
	require.Contains(t, string(got[1].body), w.ID)
	full, err := r.recs.Delivery(t.Context(), "acme", w.ID, d.ID)
	require.NoError(t, err)
	require.Len(t, full.Attempts, 2)
	_, err = webhooks.Redeliver(t.Context(), r.recs, "acme", w.ID, "dlv_nope")
	require.ErrorIs(t, err, apiary.ErrNotFound)
}

// One account's slow endpoints take at most its share of the dispatcher's
// slots: another account's delivery goes out while they are still blocked.
func TestSlowAccountDelaysNoOtherAccount(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	release := make(chan struct{})
	defer close(release)
	var slow []*receiver
	for range 20 {
		rc := newReceiver(t)
		rc.block = release
		r.endpoint("acme", rc.URL)
		slow = append(slow, rc)
	}
	quiet := newReceiver(t)
	r.endpoint("beta", quiet.URL, apiary.EventJobSucceeded)
	// Attempts outlast the test's wait: only a free slot lets beta through.
	r.start(fast(webhook.Config{Concurrency: 8, PerAccount: 2, Timeout: time.Hour}))
	r.runJob("acme", "")
	blocked := func() int {
		n := 0
		for _, rc := range slow {
			n += len(rc.all())
		}
		return n
	}
	require.Eventually(t, func() bool { return blocked() >= 2 }, waitFor, 10*time.Millisecond)
	r.runJob("beta", "")
	quiet.waitN(t, 1)
	require.LessOrEqual(t, blocked(), 2, "acme holds at most PerAccount slots")
}
