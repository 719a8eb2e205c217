// Package jetstream is the queue port on a NATS JetStream work-queue stream.
//
// Jobs are JSON apiary.JobMessage values published on one subject of a
// WorkQueuePolicy, file-stored stream and read through one durable pull
// consumer with explicit acks, shared by every worker process. The lease of
// a delivery is the consumer's AckWait. A delivery settles on itself: Extend
// sends +WPI (in progress), Nack with a delay sends -NAK, without one it
// publishes the message again and acks it; Term sends +TERM with the reason. Ack, Nack
// and Term return once the server has confirmed them. A message's Attempt
// is JetStream's delivery count, plus the deliveries before a requeue; its
// Enqueued is the stream's timestamp of the message, or of the first one
// when it was requeued.
//
// Enqueue sets Nats-Msg-Id to the job id, so that publishing the same job
// twice within Config.DuplicateWindow stores it once. EnqueueBatch
// (queue.BatchEnqueuer) publishes its messages concurrently, the same way.
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natserr"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Config configures a Queue. Only Conn is required.
type Config struct {
	// Conn is the NATS connection; the caller owns it and closes it after
	// the Queue is no longer used. Required.
	Conn *nats.Conn
	// Stream is the work-queue stream's name. Default "APIARY_JOBS".
	Stream string
	// Subject is where jobs are published. Default "apiary.jobs".
	Subject string
	// Consumer is the durable consumer shared by all workers. Default
	// "apiary-workers".
	Consumer string
	// Lease is how long a delivery stays with its receiver without Extend
	// (the consumer's AckWait). Default 60 s.
	Lease time.Duration
	// PollWait is how long Receive waits for a first message. Default 1 s.
	PollWait time.Duration
	// Replicas is the stream's replication factor (3 on a cluster). Default 1.
	Replicas int
	// MaxMsgs bounds the number of queued jobs; Enqueue fails with
	// apiary.KindUnavailable when the stream is full. Default 1,000,000.
	MaxMsgs int64
	// MaxBytes bounds the stream's size. Default 1 GiB.
	MaxBytes int64
	// MaxMsgSize bounds one message (ids only). Default 64 KiB.
	MaxMsgSize int32
	// DuplicateWindow is how long a job id is remembered to drop a second
	// publish of the same job. Default 2 min.
	DuplicateWindow time.Duration
	// MaxAckPending bounds deliveries out at once across all workers.
	// Default 10,000.
	MaxAckPending int
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = "APIARY_JOBS"
	}
	if c.Subject == "" {
		c.Subject = "apiary.jobs"
	}
	if c.Consumer == "" {
		c.Consumer = "apiary-workers"
	}
	if c.Lease == 0 {
		c.Lease = 60 * time.Second
	}
	if c.PollWait == 0 {
		c.PollWait = time.Second
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxMsgs == 0 {
		c.MaxMsgs = 1_000_000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = 64 << 10
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 10_000
	}
}

// Validate reports every problem with c (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if c.Conn == nil {
		errs = append(errs, errors.New("jetstream: Conn is required"))
	}
	if c.Lease < time.Second {
		errs = append(errs, fmt.Errorf("jetstream: Lease %s is under 1s", c.Lease))
	}
	if c.PollWait < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("jetstream: PollWait %s is under 10ms", c.PollWait))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("jetstream: Replicas %d is not in 1..5", c.Replicas))
	}
	if c.MaxMsgs < 1 || c.MaxBytes < 1 || c.MaxMsgSize < 1 || c.MaxAckPending < 1 {
		errs = append(errs, errors.New("jetstream: MaxMsgs, MaxBytes, MaxMsgSize and MaxAckPending must be positive"))
	}
	if c.DuplicateWindow < 0 {
		errs = append(errs, errors.New("jetstream: DuplicateWindow must not be negative"))
	}
	return errors.Join(errs...)
}

// Queue is a job queue on a JetStream work-queue stream. Its methods are
// safe for concurrent use.
type Queue struct {
	cfg  Config
	js   jetstream.JetStream
	cons jetstream.Consumer
}

var (
	_ queue.Queue         = (*Queue)(nil)
	_ queue.BatchEnqueuer = (*Queue)(nil)
	_ queue.Settler       = (*settler)(nil)
)

// batchPublishers bounds the publishes of one EnqueueBatch awaiting their
// acks at once.
const batchPublishers = 32

// New creates (or updates to cfg) the stream and the durable consumer and
// returns a Queue on them.
func New(ctx context.Context, cfg Config) (*Queue, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "jetstream: config")
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, classify(err, "jetstream: new")
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "Apiary job queue: one message per job, ids only",
		Subjects:    []string{cfg.Subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxMsgs:     cfg.MaxMsgs,
		MaxBytes:    cfg.MaxBytes,
		MaxMsgSize:  cfg.MaxMsgSize,
		Discard:     jetstream.DiscardNew, // a full queue refuses jobs, never drops them
		Duplicates:  cfg.DuplicateWindow,
	})
	if err != nil {
		return nil, classify(err, "jetstream: create stream %s", cfg.Stream)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "Apiary workers",
		FilterSubject: cfg.Subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.Lease,
		MaxDeliver:    -1, // workers.Pool bounds attempts and terms the rest
		MaxAckPending: cfg.MaxAckPending,
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return nil, classify(err, "jetstream: create consumer %s", cfg.Consumer)
	}
	return &Queue{cfg: cfg, js: js, cons: cons}, nil
}

// Lease is the consumer's AckWait.
func (q *Queue) Lease() time.Duration { return q.cfg.Lease }

// Enqueue publishes msg and returns once the stream has stored it. A second
// Enqueue of the same job within the duplicate window is dropped by the
// server and reports success.
func (q *Queue) Enqueue(ctx context.Context, msg apiary.JobMessage) error {
	data, err := encode(msg)
	if err != nil {
		return fmt.Errorf("jetstream: enqueue: %w", err)
	}
	if err := q.publish(ctx, msg.Job, data); err != nil {
		return classify(err, "jetstream: enqueue %s", msg.Job)
	}
	return nil
}

// EnqueueBatch publishes msgs, up to 32 awaiting their acks at once, and
// returns once the stream has stored all of them. A publish that fails is
// tried once more; the job id as Nats-Msg-Id makes that harmless. See
// queue.BatchEnqueuer for the rest.
func (q *Queue) EnqueueBatch(ctx context.Context, msgs []apiary.JobMessage) error {
	data := make([][]byte, len(msgs))
	for i, msg := range msgs {
		var err error
		if data[i], err = encode(msg); err != nil {
			return fmt.Errorf("jetstream: enqueue batch: message %d: %w", i, err)
		}
	}
	errs := make([]error, len(msgs))
	var g errgroup.Group
	g.SetLimit(batchPublishers)
	for i, msg := range msgs {
		g.Go(func() error {
			err := q.publish(ctx, msg.Job, data[i])
			if err != nil && ctx.Err() == nil {
				err = q.publish(ctx, msg.Job, data[i])
			}
			if err != nil {
				errs[i] = classify(err, "message %d (%s)", i, msg.Job)
			}
			return nil
		})
	}
	_ = g.Wait() // every error is in errs
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("jetstream: enqueue batch: %d of %d messages not stored: %w", failed, len(msgs), first)
	}
	return nil
}

// encode checks that msg carries its ids and returns its message body.
func encode(msg apiary.JobMessage) ([]byte, error) {
	if err := msg.Account.Validate(); err != nil {
		return nil, err
	}
	if msg.Job == "" {
		return nil, apiary.E(apiary.KindInvalid, "job id is required")
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", msg.Job, err)
	}
	return data, nil
}

// publish stores one job's message, deduplicated by its job id.
func (q *Queue) publish(ctx context.Context, job apiary.JobID, data []byte) error {
	_, err := q.js.Publish(ctx, q.cfg.Subject, data, jetstream.WithMsgID(string(job)))
	return err
}

// Receive fetches up to max messages, waiting up to PollWait for the first.
// A message whose body is not a JobMessage is terminated and skipped. If ctx
// ends during the wait, Receive returns when the pull ends (PollWait at most)
// with ctx's error, and the messages it brought are handed back at once
// (republished and acked, their attempt not counted: see handBack).
func (q *Queue) Receive(ctx context.Context, max int) ([]*queue.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("jetstream: receive: %w", err)
	}
	if max <= 0 {
		return nil, nil
	}
	// Wait for the first message only, then take whatever else is ready:
	// waiting for a full batch would hold a job back for PollWait whenever
	// fewer than max are queued.
	//
	// The pull is not cut short when ctx ends: the server would go on
	// sending it messages until it expired, to a receiver no longer there,
	// and each would stay leased until its lease ran out. Receive waits for
	// the pull to end instead (PollWait at most) and hands back what it
	// brought.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.cfg.PollWait)
	defer cancel()
	batch, err := q.cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("jetstream: receive: %w", ctx.Err())
		}
		return nil, classify(err, "jetstream: receive")
	}
	out := q.collect(batch, nil)
	if len(out) > 0 && max > 1 && ctx.Err() == nil {
		if more, err := q.cons.FetchNoWait(max - 1); err == nil {
			out = q.collect(more, out)
		}
	}
	if ctx.Err() != nil {
		q.handBack(out)
		return nil, fmt.Errorf("jetstream: receive: %w", ctx.Err())
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && len(out) == 0 {
		return nil, classify(err, "jetstream: receive")
	}
	ds := make([]*queue.Delivery, len(out))
	for i, s := range out {
		ds[i] = queue.NewDelivery(s.msg, s.attempt, s)
		ds[i].Enqueued = s.enqueued
	}
	return ds, nil
}

// handBack returns ss, never handed to a worker, to the stream at once,
// without counting their delivery as an attempt; best effort: whatever
// fails comes back when its lease runs out.
func (q *Queue) handBack(ss []*settler) {
	if len(ss) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	for _, s := range ss {
		_ = s.requeue(ctx, s.attempt-1)
	}
}

// collect appends the messages of batch to out; a message whose body is not
// a JobMessage is terminated and skipped.
func (q *Queue) collect(batch jetstream.MessageBatch, out []*settler) []*settler {
	for m := range batch.Messages() {
		s, err := q.settler(m)
		if err != nil {
			_ = m.TermWithReason("apiary: malformed job message")
			continue
		}
		out = append(out, s)
	}
	return out
}

// settler reads m's job message and attempt.
func (q *Queue) settler(m jetstream.Msg) (*settler, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	var msg apiary.JobMessage
	if err := json.Unmarshal(m.Data(), &msg); err != nil {
		return nil, err
	}
	if msg.Job == "" || msg.Account.Validate() != nil {
		return nil, errors.New("jetstream: job message without ids")
	}
	// The headers are whatever was published (by a requeue, or by anyone
	// who can publish on the subject): bounded, so that they can shorten a
	// job's outage window and attempts but never stretch them.
	attempt := int(meta.NumDelivered)
	if before, err := strconv.Atoi(m.Headers().Get(attemptsHeader)); err == nil && before > 0 {
		attempt += min(before, maxRequeuedAttempts) // a requeued message
	}
	enqueued := meta.Timestamp
	if first, err := strconv.ParseInt(m.Headers().Get(enqueuedHeader), 10, 64); err == nil && first > 0 {
		// A requeued message: its first was stored before it.
		enqueued = time.Unix(0, min(first, meta.Timestamp.UnixNano()))
	}
	return &settler{q: q, m: m, msg: msg, attempt: attempt, enqueued: enqueued.UTC()}, nil
}

// settler settles one delivery: m is the JetStream message it came as.
type settler struct {
	q        *Queue
	m        jetstream.Msg
	msg      apiary.JobMessage
	attempt  int
	enqueued time.Time
}

// Ack removes the message from the stream and waits for the server to
// confirm.
func (s *settler) Ack(ctx context.Context) error {
	if err := s.m.DoubleAck(ctx); err != nil {
		return classify(err, "jetstream: ack %s", s.msg.Job)
	}
	return nil
}

// Nack hands the message back for redelivery after delay, and returns once
// the server has confirmed it. With a delay it sends -NAK; without one it
// requeues the message, so that it is deliverable at once also after a
// restart of the server.
func (s *settler) Nack(ctx context.Context, delay time.Duration) error {
	if delay <= 0 {
		return s.requeue(ctx, s.attempt)
	}
	return s.q.settle(ctx, s.m, fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds()), "jetstream: nack %s", s.msg.Job)
}

// attemptsHeader carries the deliveries a requeued message had before, so
// that its Attempt goes on counting.
const attemptsHeader = "Apiary-Attempts"

// maxRequeuedAttempts bounds the attempts an attemptsHeader can claim, far
// above any pool's limit, so that adding the server's count cannot
// overflow.
const maxRequeuedAttempts = 1 << 20

// enqueuedHeader carries when the first message of a requeued one was
// stored (Unix nanoseconds), so that its Enqueued stays the same.
const enqueuedHeader = "Apiary-Enqueued"

// requeue hands the message back at once: it publishes it again, carrying
// attempts (the deliveries that count so far) and its first Enqueued, then
// acks it. A -NAK does the same while the server runs, but the server keeps
// a nak'd message's redelivery in memory only: when the embedded server
// stops with the worker that handed a job back on SIGTERM, the restarted
// one waits out the whole lease first. If the ack fails after the publish, the job has
// two messages, handled as any redelivery.
func (s *settler) requeue(ctx context.Context, attempts int) error {
	ctx, cancel := settleContext(ctx)
	defer cancel()
	meta, err := s.m.Metadata()
	if err != nil {
		return classify(err, "jetstream: nack %s", s.msg.Job)
	}
	again := nats.NewMsg(s.q.cfg.Subject)
	again.Data = s.m.Data()
	again.Header.Set(attemptsHeader, strconv.Itoa(attempts))
	again.Header.Set(enqueuedHeader, strconv.FormatInt(s.enqueued.UnixNano(), 10))
	// One id per requeued delivery: a retried requeue stores it once.
	again.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s.requeue.%d", s.msg.Job, meta.Sequence.Stream))
	if _, err := s.q.js.PublishMsg(ctx, again, jetstream.WithExpectStream(s.q.cfg.Stream)); err != nil {
		return classify(err, "jetstream: nack %s", s.msg.Job)
	}
	if err := s.m.DoubleAck(ctx); err != nil {
		return classify(err, "jetstream: nack %s", s.msg.Job)
	}
	return nil
}

// settleTimeout bounds a confirmed settle whose ctx has no deadline.
const settleTimeout = 10 * time.Second

// settleContext gives ctx a deadline of settleTimeout when it has none.
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, settleTimeout)
}

// settle sends an ack of kind body for m as a request, so that the server
// confirms it has processed it (as DoubleAck does for +ACK).
func (q *Queue) settle(ctx context.Context, m jetstream.Msg, body, format string, args ...any) error {
	ctx, cancel := settleContext(ctx)
	defer cancel()
	if _, err := q.cfg.Conn.RequestWithContext(ctx, m.Reply(), []byte(body)); err != nil {
		return classify(err, format, args...)
	}
	return nil
}

// Extend resets the message's AckWait timer on the server.
func (s *settler) Extend(context.Context) error {
	if err := s.m.InProgress(); err != nil {
		return classify(err, "jetstream: extend %s", s.msg.Job)
	}
	return nil
}

// Term removes the message for good; reason goes into the server's
// advisory. JetStream has no dead-letter queue: the advisory is the record.
// It returns once the server has confirmed it.
func (s *settler) Term(ctx context.Context, reason string) error {
	body := "+TERM"
	if reason != "" {
		body += " " + reason
	}
	return s.q.settle(ctx, s.m, body, "jetstream: term %s", s.msg.Job)
}

// classify translates a NATS error into the root package's kinds, as every
// NATS adapter does (internal/natserr).
func classify(err error, format string, args ...any) error {
	return natserr.Wrap(err, format, args...)
}
