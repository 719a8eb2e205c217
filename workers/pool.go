package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Handler runs one job delivery. Its error decides what becomes of the
// delivery: nil acks it, an apiary.IsPermanent error gives up on it, any
// other error retries it (after apiary.RetryDelay(err) when set), up to
// PoolConfig.MaxAttempts, and past them while an apiary.KindUnavailable one
// (an outage) is within PoolConfig.OutageGiveUp. Handle must return soon
// after ctx ends.
type Handler interface {
	Handle(ctx context.Context, d *queue.Delivery) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, d *queue.Delivery) error

// Handle calls f(ctx, d).
func (f HandlerFunc) Handle(ctx context.Context, d *queue.Delivery) error { return f(ctx, d) }

// PoolConfig configures a Pool. The zero value is usable.
type PoolConfig struct {
	// Concurrency is the most handlers running at once. Default 4.
	Concurrency int
	// MaxAttempts is how many deliveries of one job are tried before the
	// pool gives up on it; an outage does not spend them (OutageGiveUp).
	// Default 5.
	MaxAttempts int
	// OutageGiveUp bounds how long a job is retried past MaxAttempts
	// while it fails because a dependency is down (an error of kind
	// apiary.KindUnavailable: Milvus, the embedder, the KMS unreachable or
	// throttling). It is measured from when the job's message was first
	// enqueued (queue.Delivery.Enqueued): the queue records that time and
	// keeps it across redeliveries, in whatever process receives them, so
	// the bound needs no state of the pool's. It is not the outage's own
	// length: a job that waited in a backlog has less of it left, but never
	// fewer than MaxAttempts attempts. A queue that does not say when a
	// message was enqueued gets no outage allowance. Past MaxAttempts, an
	// error of any other kind ends the job at once. Default 1 h.
	OutageGiveUp time.Duration
	// BackoffBase is the retry delay after the first failed attempt; it
	// doubles with each attempt, up to BackoffMax, ±25% jitter. Defaults 1 s
	// and 5 min. Past MaxAttempts an outage is retried after the longer of
	// the backoff and the error's apiary.RetryDelay, but by the end of its
	// OutageGiveUp window.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// ExtendEvery is how often a running delivery's lease is renewed.
	// Default a third of the queue's lease; it must be shorter than the lease.
	ExtendEvery time.Duration
	// SettleTimeout bounds each Ack, Nack, Term and OnGiveUp. Default 10 s.
	SettleTimeout time.Duration
	// OnGiveUp, when set, is called once before a delivery is terminated,
	// with the error that ended it, so that the job can be marked failed
	// with its reason. It runs under a context that outlives the pool's.
	// A non-nil error keeps the delivery instead (the job is still running
	// elsewhere and the message is its only one): it is handed back after
	// apiary.RetryDelay of that error, else the backoff.
	OnGiveUp func(ctx context.Context, d *queue.Delivery, err error) error
	// Fair shares the slots among accounts (see FairConfig).
	Fair FairConfig
	// Logger receives the pool's logs: ids, attempts and errors, never
	// payloads. Default slog.Default().
	Logger *slog.Logger
}

func (c *PoolConfig) setDefaults(lease time.Duration) {
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.OutageGiveUp == 0 {
		c.OutageGiveUp = time.Hour
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.ExtendEvery == 0 {
		c.ExtendEvery = lease / 3
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Fair.setDefaults(c.Concurrency)
}

// Validate reports every problem with c (after defaults) for a queue whose
// lease is lease.
func (c *PoolConfig) Validate(lease time.Duration) error {
	var errs []error
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("workers: Concurrency %d is under 1", c.Concurrency))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("workers: MaxAttempts %d is under 1", c.MaxAttempts))
	}
	if c.OutageGiveUp < 0 {
		errs = append(errs, fmt.Errorf("workers: OutageGiveUp %s is negative", c.OutageGiveUp))
	}
	if c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase {
		errs = append(errs, fmt.Errorf("workers: need 0 < BackoffBase (%s) <= BackoffMax (%s)", c.BackoffBase, c.BackoffMax))
	}
	if c.ExtendEvery <= 0 || c.ExtendEvery >= lease {
		errs = append(errs, fmt.Errorf("workers: ExtendEvery %s must be in (0, lease %s)", c.ExtendEvery, lease))
	}
	if c.SettleTimeout <= 0 {
		errs = append(errs, errors.New("workers: SettleTimeout must be positive"))
	}
	errs = append(errs, c.Fair.validate(c.Concurrency))
	return errors.Join(errs...)
}

// MaxDeliveries is the most deliveries the pool lets one job have (after
// defaults): MaxAttempts, then as many outage retries as OutageGiveUp holds
// at the shortest backoff, three quarters of BackoffBase·2^(n-1) (at most of
// BackoffMax) after attempt n. A delivery past it is given up without
// running, as one past MaxAttempts is once OutageGiveUp has passed. A queue
// with its own cap on deliveries (SQS's redrive policy) must allow more.
func (c PoolConfig) MaxDeliveries() int {
	c.setDefaults(0)
	n, waited := c.MaxAttempts, time.Duration(0)
	for waited < c.OutageGiveUp {
		b := c.backoffAt(n)
		step := max(b-b/4, 1)
		if b == c.BackoffMax {
			// Every step from here on is the same: count them at once.
			n += int((c.OutageGiveUp - waited + step - 1) / step)
			break
		}
		waited += step
		n++
	}
	return n
}

// backoffAt is BackoffBase·2^(attempt-1), at most BackoffMax, before jitter.
func (c *PoolConfig) backoffAt(attempt int) time.Duration {
	d := c.BackoffBase
	for i := 1; i < attempt && d < c.BackoffMax; i++ {
		d *= 2
	}
	return min(d, c.BackoffMax)
}

// ErrHardStop is the cause of a handler's context when the pool is stopped
// before the handler finished.
var ErrHardStop = errors.New("workers: pool hard stop")

// errSoftStop is the cause of the receive context on Stop.
var errSoftStop = errors.New("workers: pool stopping")

// Pool pulls deliveries from a queue and runs them through a Handler with
// bounded concurrency. Run it once; Stop it from another goroutine.
type Pool struct {
	q   queue.Queue
	h   Handler
	cfg PoolConfig
	log *slog.Logger
	// maxDeliveries is cfg.MaxDeliveries().
	maxDeliveries int
	sem           chan struct{} // one token per running handler
	fair          *fairness
	wg            sync.WaitGroup
	done          chan struct{} // closed when Run has returned

	mu       sync.Mutex
	state    int                     // idle, running or stopped
	stopRecv context.CancelCauseFunc // soft stop: no more Receive
	stopWork context.CancelCauseFunc // hard stop: cancel handlers
}

const (
	idle = iota
	running
	stopped
)

// NewPool returns a pool that runs h on deliveries from q.
func NewPool(q queue.Queue, h Handler, cfg PoolConfig) (*Pool, error) {
	if q == nil || h == nil {
		return nil, apiary.E(apiary.KindInvalid, "workers: queue and handler are required")
	}
	cfg.setDefaults(q.Lease())
	if err := cfg.Validate(q.Lease()); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "workers: pool config")
	}
	return &Pool{
		q:   q,
		h:   h,
		cfg: cfg,
		log: cfg.Logger,

		maxDeliveries: cfg.MaxDeliveries(),
		sem:           make(chan struct{}, cfg.Concurrency),
		fair:          newFairness(q, cfg),
		done:          make(chan struct{}),
	}, nil
}

// Run receives and handles deliveries until Stop is called or ctx ends, and
// returns once every handler has finished and its delivery is settled. It
// returns nil after Stop, ctx's cause when ctx ended (a hard stop). A pool
// runs once: a Run after Stop returns nil at once, a second concurrent Run
// an error.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	switch p.state {
	case running:
		p.mu.Unlock()
		return errors.New("workers: pool is already running")
	case stopped:
		p.mu.Unlock()
		return nil
	}
	workCtx, stopWork := context.WithCancelCause(ctx)
	recvCtx, stopRecv := context.WithCancelCause(workCtx)
	p.stopWork, p.stopRecv, p.state = stopWork, stopRecv, running
	p.mu.Unlock()
	defer close(p.done)
	defer stopWork(nil)
	defer stopRecv(nil)

	p.wg.Go(func() { p.fair.keepLeases(recvCtx) })
	p.receive(recvCtx, workCtx)
	for _, d := range p.fair.drain() {
		p.settle(workCtx, d, outcome{action: actNack})
	}
	p.wg.Wait()

	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// receive takes free slots, then at most that many deliveries, and starts
// one goroutine per delivery, until recvCtx ends.
func (p *Pool) receive(recvCtx, workCtx context.Context) {
	failures := 0
	for {
		// Wait for one free slot, then take whatever else is free.
		select {
		case p.sem <- struct{}{}:
		case <-recvCtx.Done():
			return
		}
		if recvCtx.Err() != nil {
			p.release(1)
			return
		}
		slots := 1
	more:
		for slots < cap(p.sem) {
			select {
			case p.sem <- struct{}{}:
				slots++
			default:
				break more
			}
		}

		ds, err := p.fair.receive(recvCtx, slots)
		if len(ds) > slots {
			// A queue that breaks its contract: hand back the excess.
			p.log.Error("workers: queue returned more deliveries than asked", "asked", slots, "got", len(ds))
			for _, d := range ds[slots:] {
				p.settle(workCtx, d, outcome{action: actNack})
			}
			ds = ds[:slots]
		}
		if recvCtx.Err() != nil {
			// Received as the pool stopped: hand them back at once rather
			// than start work on them (as drain does with a pull that was
			// still in flight).
			for _, d := range ds {
				p.settle(workCtx, d, outcome{action: actNack})
				p.fair.done(d)
			}
			ds = nil
		}
		for _, d := range ds {
			p.wg.Add(1)
			go p.work(workCtx, d)
		}
		p.release(slots - len(ds))

		switch {
		case recvCtx.Err() != nil:
			return
		case err != nil:
			failures++
			wait := p.backoff(failures)
			p.log.Warn("workers: receive failed", "err", err, "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-recvCtx.Done():
				t.Stop()
				return
			}
		default:
			failures = 0
		}
	}
}

func (p *Pool) release(n int) {
	for range n {
		<-p.sem
	}
}

// work runs one delivery and settles it; it owns the lease-extending
// goroutine and waits for it.
func (p *Pool) work(workCtx context.Context, d *queue.Delivery) {
	defer p.wg.Done()
	defer p.release(1)
	defer p.fair.done(d)

	if d.Attempt > p.deliveryLimit(d) {
		// Delivered past the limit without ever failing in a handler: the
		// earlier attempts died with their process (or were retried on an
		// outage for as long as OutageGiveUp allows). Give up without
		// running it again, so a job that crashes its worker cannot do so
		// forever.
		p.settle(workCtx, d, p.decide(d, errTooManyDeliveries, false))
		return
	}

	hctx, cancel := context.WithCancelCause(workCtx)
	defer cancel(nil)
	extendDone := make(chan struct{})
	var extender sync.WaitGroup
	extender.Go(func() { p.extend(hctx, d, extendDone) })

	err := p.call(hctx, d)
	close(extendDone)
	extender.Wait()

	p.settle(workCtx, d, p.decide(d, err, workCtx.Err() != nil))
}

// extend renews d's lease every ExtendEvery until done is closed.
func (p *Pool) extend(ctx context.Context, d *queue.Delivery, done <-chan struct{}) {
	t := time.NewTicker(p.cfg.ExtendEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if err := d.Extend(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("workers: extend lease failed", logAttrs(d, "err", err)...)
			}
		}
	}
}

// call runs the handler, turning a panic into an error.
func (p *Pool) call(ctx context.Context, d *queue.Delivery) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		// The panic value may hold anything the handler touched; only a
		// runtime error's text is known to be safe to keep.
		what := fmt.Sprintf("%T", r)
		if re, ok := r.(runtime.Error); ok {
			what = re.Error()
		}
		p.log.Error("workers: handler panicked", logAttrs(d, "panic", what, "stack", string(debug.Stack()))...)
		err = fmt.Errorf("workers: handler panicked: %s", what)
	}()
	return p.h.Handle(ctx, d)
}

// errTooManyDeliveries is the reason of a job delivered more often than
// deliveryLimit allows, its earlier attempts lost with their processes or
// retried on an outage until OutageGiveUp.
var errTooManyDeliveries = apiary.Permanent(apiary.E(apiary.KindPermanent,
	"the job's earlier attempts ended with their worker, or met an outage for as long as allowed; it was not started again"))

// inOutageWindow reports whether d's message was enqueued no more than
// OutageGiveUp ago, so that an outage does not spend its attempts. A
// delivery whose queue does not say when it was enqueued is not.
func (p *Pool) inOutageWindow(d *queue.Delivery) bool {
	return !d.Enqueued.IsZero() && time.Since(d.Enqueued) <= p.cfg.OutageGiveUp
}

// deliveryLimit is the most deliveries of d's job the pool runs.
// Redeliveries past MaxAttempts are run while the job is in its outage
// window, because the pool cannot tell a delivery retried on an outage from
// one whose worker died; those are bounded by MaxDeliveries and, for jobs
// run through the job service, by apiary.MaxInterrupted.
func (p *Pool) deliveryLimit(d *queue.Delivery) int {
	if p.inOutageWindow(d) {
		return p.maxDeliveries
	}
	return p.cfg.MaxAttempts
}

// action is what becomes of a delivery.
type action int

const (
	actAck action = iota
	actNack
	actGiveUp
)

// outcome is the decision about one delivery.
type outcome struct {
	action action
	delay  time.Duration // for actNack
	err    error         // the handler's error, for actGiveUp and the logs
	reason string        // for actGiveUp: why the delivery is terminated
}

// decide maps a handler's result to what becomes of the delivery. It is the
// only place where errors turn into acks, retries and give-ups.
//
// An outage (apiary.KindUnavailable) does not spend the job's attempts:
// past MaxAttempts it is retried, with backoff, while the job is in its
// outage window (see PoolConfig.OutageGiveUp), and given up after that.
func (p *Pool) decide(d *queue.Delivery, err error, hardStopped bool) outcome {
	outage := apiary.KindOf(err) == apiary.KindUnavailable
	switch {
	case err == nil:
		return outcome{action: actAck}
	case hardStopped:
		// Our failure, not the job's: hand it back at once.
		return outcome{action: actNack, err: err}
	case apiary.IsPermanent(err):
		return outcome{action: actGiveUp, err: err, reason: "permanent: " + err.Error()}
	case d.Attempt < p.cfg.MaxAttempts:
		if delay, ok := apiary.RetryDelay(err); ok {
			return outcome{action: actNack, delay: delay, err: err}
		}
		return outcome{action: actNack, delay: p.backoff(d.Attempt), err: err}
	case outage && d.Attempt < p.deliveryLimit(d):
		// Past MaxAttempts: the backoff, however short the error's hint,
		// so that the retries MaxDeliveries counts span the window; and
		// by the window's end, however long the hint (a Retry-After of a
		// day), so that the job is not held past its outage budget.
		delay := p.backoff(d.Attempt)
		if hint, ok := apiary.RetryDelay(err); ok {
			delay = max(delay, hint)
		}
		delay = min(delay, max(p.cfg.OutageGiveUp-time.Since(d.Enqueued), 0))
		return outcome{action: actNack, delay: delay, err: err}
	case outage && !d.Enqueued.IsZero():
		return outcome{action: actGiveUp, err: err,
			reason: fmt.Sprintf("gave up after %d attempts: a dependency was still unavailable %s after the job was queued: %s",
				d.Attempt, time.Since(d.Enqueued).Round(time.Second), err.Error())}
	}
	return outcome{action: actGiveUp, err: err,
		reason: fmt.Sprintf("gave up after %d attempts: %s", d.Attempt, err.Error())}
}

// settle carries out o, under a context that outlives the pool's own.
func (p *Pool) settle(ctx context.Context, d *queue.Delivery, o outcome) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.SettleTimeout)
	defer cancel()
	var err error
	switch o.action {
	case actAck:
		err = d.Ack(ctx)
	case actNack:
		p.log.Info("workers: job will be retried", logAttrs(d, "err", o.err, "delay", o.delay)...)
		err = d.Nack(ctx, o.delay)
	case actGiveUp:
		if p.cfg.OnGiveUp != nil {
			if keep := p.cfg.OnGiveUp(ctx, d, o.err); keep != nil {
				delay, ok := apiary.RetryDelay(keep)
				if !ok {
					delay = p.backoff(d.Attempt)
				}
				p.log.Info("workers: job kept for later", logAttrs(d, "err", keep, "delay", delay)...)
				err = d.Nack(ctx, delay)
				break
			}
		}
		p.log.Warn("workers: giving up on job", logAttrs(d, "err", o.err)...)
		err = d.Term(ctx, queue.Reason(o.reason))
	}
	if err != nil {
		// The lease runs out and the queue delivers it again.
		p.log.Error("workers: settle delivery failed", logAttrs(d, "action", o.action.String(), "err", err)...)
	}
}

func (a action) String() string {
	switch a {
	case actAck:
		return "ack"
	case actNack:
		return "nack"
	default:
		return "give up"
	}
}

// backoff is BackoffBase·2^(attempt-1), at most BackoffMax, ±25%.
func (p *Pool) backoff(attempt int) time.Duration {
	d := p.cfg.backoffAt(attempt)
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return max(d+jitter, 0)
}

// Stop stops taking new deliveries and waits for running handlers to
// finish. If ctx ends first, it cancels the handlers' contexts with cause
// ErrHardStop, waits for them (their deliveries are handed back to the
// queue) and returns ctx's error. Stop before Run makes Run return at once.
func (p *Pool) Stop(ctx context.Context) error {
	p.mu.Lock()
	st := p.state
	if st == idle {
		p.state = stopped
		p.mu.Unlock()
		return nil
	}
	p.state = stopped
	stopRecv, stopWork := p.stopRecv, p.stopWork
	p.mu.Unlock()
	if stopRecv == nil { // stopped before Run ever ran
		return nil
	}

	stopRecv(errSoftStop)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	stopWork(fmt.Errorf("%w: %w", ErrHardStop, context.Cause(ctx)))
	<-p.done
	return ctx.Err()
}

func logAttrs(d *queue.Delivery, kv ...any) []any {
	return append([]any{"account", d.Msg.Account, "job", d.Msg.Job, "attempt", d.Attempt}, kv...)
}
