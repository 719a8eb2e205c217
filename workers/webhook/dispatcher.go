package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/safehttp"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/webhooks"
	"github.com/apiaryhq/apiary/workers/events"
)

// DefaultSchedule is the delay before each attempt of a delivery: at once,
// then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h later.
var DefaultSchedule = []time.Duration{
	0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Config configures a Dispatcher. The zero value of each field is its default.
type Config struct {
	// AllowPrivate lets deliveries reach private, loopback and link-local
	// addresses (--allow-private-webhooks). Default false.
	AllowPrivate bool
	// Schedule is the delay before each attempt; Schedule[0] applies to the
	// first. After the last the delivery is exhausted. Default DefaultSchedule.
	Schedule []time.Duration
	// Jitter spreads each delay by ± this fraction. Default 0.2; negative: none.
	Jitter float64
	// Timeout bounds one attempt, body included. Default 15 s.
	Timeout time.Duration
	// PerEndpoint bounds the attempts in flight to one endpoint. Default 4.
	PerEndpoint int
	// Concurrency bounds the attempts in flight in all. Default 64.
	Concurrency int
	// PerAccount bounds the attempts in flight for one account, so that one
	// account's slow or dead endpoints cannot hold every slot. Default a
	// quarter of Concurrency, but at least PerEndpoint+1 (one slow endpoint
	// leaves its account a slot) and at most Concurrency.
	PerAccount int
	// PollInterval is how often the due index is read. Default 1 s.
	PollInterval time.Duration
	// Lease is how long a claimed delivery is held before another round
	// (or process) may try it again, should this one die. Default Timeout+30 s.
	Lease time.Duration
	// DisableAfter disables an endpoint whose deliveries failed without a
	// success for this long. Default 5 days.
	DisableAfter time.Duration
	// MaxRetryAfter caps a Retry-After answer. Default 24 h.
	MaxRetryAfter time.Duration
	// Durable is the event consumer's durable name. Default "apiary-webhooks".
	Durable string
	// LookupHost replaces name resolution of the HTTP client (tests).
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Logger gets one line per failed attempt (ids and status, never URLs
	// or secrets). Default: discard.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Schedule == nil {
		c.Schedule = DefaultSchedule
	}
	if c.Jitter == 0 {
		c.Jitter = 0.2
	}
	if c.Jitter < 0 {
		c.Jitter = 0
	}
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	if c.PerEndpoint == 0 {
		c.PerEndpoint = 4
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.PerAccount == 0 {
		c.PerAccount = min(c.Concurrency, max(c.Concurrency/4, c.PerEndpoint+1))
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.Lease == 0 {
		c.Lease = c.Timeout + 30*time.Second
	}
	if c.DisableAfter == 0 {
		c.DisableAfter = 5 * 24 * time.Hour
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = 24 * time.Hour
	}
	if c.Durable == "" {
		c.Durable = "apiary-webhooks"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with c (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if len(c.Schedule) == 0 {
		errs = append(errs, errors.New("webhook: Schedule needs at least one attempt"))
	}
	for i, d := range c.Schedule {
		if d < 0 {
			errs = append(errs, fmt.Errorf("webhook: Schedule[%d] is negative", i))
		}
	}
	if c.Jitter >= 1 {
		errs = append(errs, errors.New("webhook: Jitter must be under 1"))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"Timeout", c.Timeout}, {"PollInterval", c.PollInterval}, {"Lease", c.Lease}, {"DisableAfter", c.DisableAfter}, {"MaxRetryAfter", c.MaxRetryAfter}} {
		if f.d <= 0 {
			errs = append(errs, fmt.Errorf("webhook: %s must be positive", f.name))
		}
	}
	if c.Lease <= c.Timeout {
		errs = append(errs, errors.New("webhook: Lease must exceed Timeout"))
	}
	if c.PerEndpoint < 1 || c.Concurrency < 1 {
		errs = append(errs, errors.New("webhook: PerEndpoint and Concurrency must be at least 1"))
	}
	if c.PerAccount < 1 || c.PerAccount > c.Concurrency {
		errs = append(errs, errors.New("webhook: PerAccount must be from 1 to Concurrency"))
	}
	return errors.Join(errs...)
}

// Dispatcher turns job events into signed deliveries and sends them.
type Dispatcher struct {
	cfg    Config
	recs   Records
	keys   encrypt.KeyProvider
	bus    events.Consumer
	client *http.Client
	kick   chan struct{}

	mu       sync.Mutex
	inflight map[string]bool // delivery keys being attempted
	perEP    map[string]int  // attempts in flight per account+endpoint
	perAcct  map[apiary.AccountID]int
	total    int
	wg       sync.WaitGroup
}

// New returns a Dispatcher; Run starts it.
func New(cfg Config, recs Records, keys encrypt.KeyProvider, bus events.Consumer) (*Dispatcher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "webhook: config")
	}
	if recs == nil || keys == nil || bus == nil {
		return nil, apiary.E(apiary.KindInvalid, "webhook: records, keys and bus are required")
	}
	return &Dispatcher{
		cfg:  cfg,
		recs: recs,
		keys: keys,
		bus:  bus,
		client: safehttp.NewClient(safehttp.Config{
			AllowPrivate: cfg.AllowPrivate, Timeout: cfg.Timeout, LookupHost: cfg.LookupHost,
		}),
		kick:     make(chan struct{}, 1),
		inflight: make(map[string]bool),
		perEP:    make(map[string]int),
		perAcct:  make(map[apiary.AccountID]int),
	}, nil
}

// Run consumes job events and sends due deliveries until ctx ends, then
// waits for the attempts in flight (each bounded by Timeout) and returns nil.
// An attempt cut short by a crash is retried after its Lease.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.consume(ctx)
	}()
	d.schedule(ctx)
	wg.Wait()
	d.wg.Wait()
	d.client.CloseIdleConnections()
	return nil
}

// consume runs the durable event consumer, restarting it after a failure.
func (d *Dispatcher) consume(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := d.bus.Consume(ctx, d.cfg.Durable, d.HandleEvent)
		if err == nil || ctx.Err() != nil {
			return
		}
		d.cfg.Logger.Warn("webhook event consumer stopped; restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// HandleEvent makes the deliveries of one job event: one per enabled
// endpoint of the account subscribed to its type and, for a final event,
// one to the job's own webhook_url. It is idempotent: delivery ids derive
// from (endpoint, event id).
func (d *Dispatcher) HandleEvent(ctx context.Context, ev apiary.Event) error {
	if !webhooks.Subscribed(nil, ev.Type) || ev.Account == "" {
		return nil
	}
	hooks, err := d.recs.Webhooks(ctx, ev.Account)
	if err != nil {
		return err
	}
	queued := false
	for _, w := range hooks {
		if !w.Enabled || !webhooks.Subscribed(w.Events, ev.Type) {
			continue
		}
		if err := webhooks.Enqueue(ctx, d.recs, ev, w.ID, ""); err != nil {
			return err
		}
		queued = true
	}
	if ev.Type.Final() && ev.Job != "" {
		job, err := d.recs.Job(ctx, ev.Account, ev.Job)
		switch {
		case errors.Is(err, apiary.ErrNotFound):
		case err != nil:
			return err
		case job.WebhookURL != "":
			if err := webhooks.Enqueue(ctx, d.recs, ev, records.JobURLEndpoint(job.ID), job.WebhookURL); err != nil {
				return err
			}
			queued = true
		}
	}
	if queued {
		d.Kick()
	}
	return nil
}

// Kick makes the scheduler look at the due index now.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// schedule starts the due deliveries every PollInterval (or when kicked)
// until ctx ends.
func (d *Dispatcher) schedule(ctx context.Context) {
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for {
		d.startDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
	}
}

// startDue starts an attempt for each due delivery whose endpoint and
// account have a free slot, while the global limit allows. A busy
// endpoint's or account's deliveries are skipped, not waited for, so they
// delay no one else.
func (d *Dispatcher) startDue(ctx context.Context) {
	// Bounded: a listing that gets no answer (a store still recovering after
	// a restart) must not stall the scheduler; the next tick tries again.
	lctx, cancel := context.WithTimeout(ctx, d.cfg.PollInterval+10*time.Second)
	due, err := d.recs.DueDeliveries(lctx, time.Now(), 10000)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			d.cfg.Logger.Warn("list due webhook deliveries", "err", err)
		}
		return
	}
	for _, e := range due {
		if ctx.Err() != nil {
			return
		}
		key := string(e.Account) + "/" + e.Endpoint + "/" + e.ID
		ep := string(e.Account) + "/" + e.Endpoint
		d.mu.Lock()
		if d.total >= d.cfg.Concurrency {
			d.mu.Unlock()
			return
		}
		if d.inflight[key] || d.perEP[ep] >= d.cfg.PerEndpoint || d.perAcct[e.Account] >= d.cfg.PerAccount {
			d.mu.Unlock()
			continue
		}
		d.inflight[key] = true
		d.perEP[ep]++
		d.perAcct[e.Account]++
		d.total++
		d.mu.Unlock()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() {
				d.mu.Lock()
				delete(d.inflight, key)
				if d.perEP[ep]--; d.perEP[ep] <= 0 {
					delete(d.perEP, ep)
				}
				if d.perAcct[e.Account]--; d.perAcct[e.Account] <= 0 {
					delete(d.perAcct, e.Account)
				}
				d.total--
				d.mu.Unlock()
			}()
			d.attempt(ctx, e)
		}()
	}
}

// attempt claims one due delivery, sends it once and records the outcome.
// Its record writes outlive ctx (bounded by their own timeout), so a stop
// never loses an answer already received.
func (d *Dispatcher) attempt(ctx context.Context, e records.DueDelivery) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.Timeout+30*time.Second)
	defer cancel()
	log := d.cfg.Logger.With("account", e.Account, "endpoint", e.Endpoint, "delivery", e.ID)
	if ctx.Err() != nil {
		return
	}
	del, ok, err := d.recs.ClaimDelivery(wctx, e, time.Now(), d.cfg.Lease)
	if err != nil {
		log.Warn("claim webhook delivery", "err", err)
		return
	}
	if !ok {
		return
	}
	target, err := d.resolve(wctx, del)
	if err != nil {
		var gone *giveUp
		if errors.As(err, &gone) {
			d.finish(wctx, log, del, records.Attempt{At: time.Now().UTC(), Error: gone.reason}, outcome{final: records.DeliveryFailed, reason: gone.reason})
			return
		}
		log.Warn("prepare webhook delivery; retried after the lease", "err", err)
		return
	}
	at := time.Now()
	res := d.send(wctx, target, del, at)
	d.finish(wctx, log, del, res.attempt, res.outcome)
	if target.webhook != nil {
		d.endpointOutcome(wctx, log, *target.webhook, res, at)
	}
}

// giveUp is a reason to fail a delivery without sending it.
type giveUp struct{ reason string }

func (g *giveUp) Error() string { return g.reason }

// target is where and how one delivery is sent.
type target struct {
	url     string
	secrets []string
	webhook *records.Webhook // nil for a job's webhook_url
}

func (d *Dispatcher) resolve(ctx context.Context, del records.Delivery) (target, error) {
	now := time.Now()
	if del.URL != "" && strings.HasPrefix(del.Endpoint, "url_") {
		ds, _, _, err := webhooks.EnsureDefaultSecret(ctx, d.recs, d.keys, del.Account, false)
		if err != nil {
			return target{}, err
		}
		secrets, err := webhooks.LiveSecrets(ctx, d.keys, del.Account, webhooks.DefaultSecretID, ds.Secrets, now)
		if err != nil {
			return target{}, err
		}
		return target{url: del.URL, secrets: secrets}, d.checkURL(del.URL)
	}
	w, err := d.recs.Webhook(ctx, del.Account, del.Endpoint)
	if errors.Is(err, apiary.ErrNotFound) {
		return target{}, &giveUp{"the webhook was deleted"}
	}
	if err != nil {
		return target{}, err
	}
	if !w.Enabled {
		return target{}, &giveUp{"the webhook is disabled"}
	}
	secrets, err := webhooks.LiveSecrets(ctx, d.keys, del.Account, w.ID, w.Secrets, now)
	if err != nil {
		return target{}, err
	}
	return target{url: w.URL, secrets: secrets, webhook: &w}, d.checkURL(w.URL)
}

func (d *Dispatcher) checkURL(u string) error {
	if err := safehttp.CheckURL(u, d.cfg.AllowPrivate); err != nil {
		return &giveUp{"the URL is refused: " + publicMessage(err)}
	}
	return nil
}

// outcome is what an attempt means for its delivery.
type outcome struct {
	final      records.DeliveryStatus // "" while retrying
	reason     string
	retryAfter time.Duration // from the answer, 0 when none
	gone       bool          // 410: disable the endpoint
}

type result struct {
	attempt records.Attempt
	outcome
}

// maxAnswer bounds how much of an answer is read (then dropped).
const maxAnswer = 64 << 10

func (d *Dispatcher) send(ctx context.Context, t target, del records.Delivery, at time.Time) result {
	res := result{attempt: records.Attempt{At: at.UTC()}}
	sig, err := Sign(del.EventID, at, del.Payload, t.secrets...)
	if err != nil {
		res.attempt.Error = "could not sign the delivery"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(del.Payload))
	if err != nil {
		res.attempt.Error = "the URL does not make a request"
		res.final, res.reason = records.DeliveryFailed, res.attempt.Error
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Apiary-Webhooks/1")
	req.Header.Set(HeaderID, del.EventID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := d.client.Do(req)
	res.attempt.LatencyMS = time.Since(at).Milliseconds()
	if err != nil {
		res.attempt.Error = transportError(err)
		if errors.Is(err, safehttp.ErrForbiddenAddress) {
			res.final, res.reason = records.DeliveryFailed, res.attempt.Error
		}
		return res
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	res.attempt.StatusCode = resp.StatusCode
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		res.final = records.DeliverySucceeded
	case code == http.StatusGone:
		res.attempt.Error = "the endpoint answered 410 Gone; it is disabled"
		res.final, res.reason, res.gone = records.DeliveryFailed, res.attempt.Error, true
	default:
		res.attempt.Error = fmt.Sprintf("the endpoint answered %d", code)
		if code == http.StatusTooManyRequests || code >= 500 {
			res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	return res
}

// transportError describes a failed request without its URL (which may
// carry the receiver's own tokens).
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case errors.Is(err, safehttp.ErrForbiddenAddress):
		return "refused: " + publicMessage(err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "could not resolve the host name"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return "could not connect: " + opErr.Err.Error()
	}
	return "request failed: " + err.Error()
}

// publicMessage is the caller-safe message of err's outermost classified
// error, or err's text when it has none.
func publicMessage(err error) string {
	var ae *apiary.Error
	if errors.As(err, &ae) && ae.Msg != "" {
		return ae.Msg
	}
	return err.Error()
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(365*24*3600))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// nextDelay is the delay before attempt tries+1, or false when the
// schedule is spent.
func (d *Dispatcher) nextDelay(tries int, retryAfter time.Duration) (time.Duration, bool) {
	if tries >= len(d.cfg.Schedule) {
		return 0, false
	}
	delay := d.cfg.Schedule[tries]
	if j := d.cfg.Jitter; j > 0 && delay > 0 {
		delay = time.Duration(float64(delay) * (1 + j*(2*rand.Float64()-1)))
	}
	return max(delay, min(retryAfter, d.cfg.MaxRetryAfter)), true
}

// finish records an attempt and what follows from it.
func (d *Dispatcher) finish(ctx context.Context, log *slog.Logger, del records.Delivery, a records.Attempt, o outcome) {
	_, err := d.recs.UpdateDelivery(ctx, del.Account, del.Endpoint, del.ID, func(cur *records.Delivery) error {
		now := time.Now().UTC()
		cur.Attempts = append(cur.Attempts, a)
		cur.Tries++
		cur.UpdatedAt = now
		switch {
		case o.final != "":
			cur.Status, cur.Error = o.final, o.reason
		default:
			delay, ok := d.nextDelay(cur.Tries, o.retryAfter)
			if !ok {
				cur.Status, cur.Error = records.DeliveryExhausted, fmt.Sprintf("gave up after %d attempts", cur.Tries)
				return nil
			}
			next := now.Add(delay)
			cur.NextAttemptAt = &next
		}
		return nil
	})
	if err != nil {
		log.Error("record webhook attempt; retried after the lease", "err", err)
		return
	}
	if o.final != records.DeliverySucceeded {
		log.Info("webhook attempt failed", "status_code", a.StatusCode, "error", a.Error)
	}
}

// endpointOutcome disables an endpoint that answered 410 or has failed
// for DisableAfter without a success, and clears its failing streak on a
// success.
func (d *Dispatcher) endpointOutcome(ctx context.Context, log *slog.Logger, w records.Webhook, res result, at time.Time) {
	ok := res.final == records.DeliverySucceeded
	if ok && w.FailingSince == nil {
		return
	}
	_, err := d.recs.UpdateWebhook(ctx, w.Account, w.ID, func(w *records.Webhook) error {
		now := time.Now().UTC()
		switch {
		case ok:
			if w.FailingSince == nil {
				return records.ErrNoChange
			}
			w.FailingSince = nil
		case res.gone:
			w.Enabled, w.DisabledReason = false, "the endpoint answered 410 Gone"
		default:
			if w.FailingSince == nil {
				t := at.UTC()
				w.FailingSince = &t
			} else if now.Sub(*w.FailingSince) >= d.cfg.DisableAfter && w.Enabled {
				w.Enabled = false
				w.DisabledReason = fmt.Sprintf("every delivery failed since %s", w.FailingSince.Format(time.RFC3339))
			} else {
				return records.ErrNoChange
			}
		}
		w.UpdatedAt = now
		return nil
	})
	if err != nil && !errors.Is(err, apiary.ErrNotFound) {
		log.Warn("update webhook after attempt", "err", err)
	}
}
