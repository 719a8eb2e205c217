// Package natsbus is the events port on NATS JetStream.
//
// An event of job J in account A is published as JSON on the subject
// apiary.events.A.J and kept in one file-stored stream (default
// "APIARY_EVENTS") capturing apiary.events.>, for Config.MaxAge and within
// Config.MaxBytes (the oldest events go first). Publish
// waits for the stream's ack and sets Nats-Msg-Id to the event id, so a
// republished event is stored once.
//
// An event's Seq is its account's own sequence, kept in the Apiary-Seq
// header: it grows by one with each event of the account and says nothing
// of other accounts. Publish reads the account's last event and stores the
// next with Nats-Expected-Last-Subject-Sequence over apiary.events.A.*, so
// that concurrent publishers, in any process, never take the same number;
// a publisher that loses the race reads again. An account with no event
// kept (none yet, or all expired) starts from the clock in microseconds, so
// its numbers only ever grow. Replay and Follow after a Seq find where to
// start by a binary search over the account's events.
//
// Replay and Follow read through an ordered consumer filtered on
// apiary.events.A.J (or apiary.events.A.* for a whole account), so one
// account's reader can never see another's events: account and job ids are
// checked to be plain subject tokens before they become part of a subject.
//
// Consume (events.Consumer) reads every account's events through a durable
// pull consumer with explicit acks, so a consumer that restarts resumes
// where it stopped and an event whose handler failed comes again.
//
// AnnounceDeleted and OnDeleted (events.Deletions) carry a deleted
// account's id on the core NATS subject apiary.accounts.deleted, outside
// the stream: nothing is stored, every connection subscribed gets it, and
// one not connected then never does.
package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natserr"
	"github.com/apiaryhq/apiary/workers/events"
)

// SubjectPrefix is the first two tokens of every event subject.
const SubjectPrefix = "apiary.events"

// noJob is the subject token of an event that belongs to no job.
const noJob = "_"

// replayBatch bounds one fetch of Replay.
const replayBatch = 256

// Config configures a Bus. Only Conn is required.
type Config struct {
	// Conn is the NATS connection; the caller owns it and closes it after
	// the Bus is no longer used. Required.
	Conn *nats.Conn
	// Stream is the event stream's name. Default "APIARY_EVENTS".
	Stream string
	// MaxAge is how long events are kept for replay. Default 7 days.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size: past it the oldest events are
	// dropped, whatever their age. Default 1 GiB; at least 64 KiB.
	MaxBytes int64
	// Replicas is the stream's replication factor (3 on a cluster). Default 1.
	Replicas int
	// DuplicateWindow is how long an event id is remembered to drop a
	// republished event. Default 2 min.
	DuplicateWindow time.Duration
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = "APIARY_EVENTS"
	}
	if c.MaxAge == 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
}

// minMaxBytes is the least MaxBytes: room for a few hundred events.
const minMaxBytes = 64 << 10

// Validate reports every problem with c (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if c.Conn == nil {
		errs = append(errs, errors.New("natsbus: Conn is required"))
	}
	if c.MaxAge < time.Minute {
		errs = append(errs, fmt.Errorf("natsbus: MaxAge %s is under 1m", c.MaxAge))
	}
	if c.MaxBytes < minMaxBytes {
		errs = append(errs, fmt.Errorf("natsbus: MaxBytes %d is under %d", c.MaxBytes, minMaxBytes))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("natsbus: Replicas %d is not in 1..5", c.Replicas))
	}
	if c.DuplicateWindow < 0 || c.DuplicateWindow > c.MaxAge {
		errs = append(errs, fmt.Errorf("natsbus: DuplicateWindow %s is not in 0..MaxAge", c.DuplicateWindow))
	}
	return errors.Join(errs...)
}

// Bus is the event bus on a JetStream stream. Its methods are safe for
// concurrent use.
type Bus struct {
	cfg    Config
	js     jetstream.JetStream
	stream jetstream.Stream
}

var (
	_ events.Bus        = (*Bus)(nil)
	_ events.Consumer   = (*Bus)(nil)
	_ events.DurableBus = (*Bus)(nil)
)

// New creates (or updates to cfg) the event stream and returns a Bus on it.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "natsbus: config")
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, classify(err, "natsbus: new")
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "Apiary job events, kept for replay",
		Subjects:    []string{SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		Discard:     jetstream.DiscardOld,
		Duplicates:  cfg.DuplicateWindow,
	})
	if err != nil {
		return nil, classify(err, "natsbus: create stream %s", cfg.Stream)
	}
	return &Bus{cfg: cfg, js: js, stream: stream}, nil
}

// Subject returns the subject of job's events in account; an empty job
// gives the subject of the account's job-less events. It fails with
// apiary.KindInvalid when an id is not a plain subject token.
func Subject(account apiary.AccountID, job apiary.JobID) (string, error) {
	if err := account.Validate(); err != nil {
		return "", err
	}
	if job == "" {
		return SubjectPrefix + "." + string(account) + "." + noJob, nil
	}
	if err := validToken(string(job)); err != nil {
		return "", err
	}
	return SubjectPrefix + "." + string(account) + "." + string(job), nil
}

// filterSubject is what Replay and Follow read: one job, or every job of
// the account.
func filterSubject(f events.Filter) (string, error) {
	if f.Job != "" {
		return Subject(f.Account, f.Job)
	}
	if err := f.Account.Validate(); err != nil {
		return "", err
	}
	return SubjectPrefix + "." + string(f.Account) + ".*", nil
}

// validToken accepts 1 to 128 characters of a-z, A-Z, 0-9, '_' and '-':
// never '.', '*', '>' or white space, which would change the subject.
func validToken(s string) error {
	if s == "" || len(s) > 128 {
		return apiary.E(apiary.KindInvalid, "job id must be 1 to 128 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return apiary.E(apiary.KindInvalid, "job id may hold only a-z, A-Z, 0-9, '_' and '-'")
		}
	}
	return nil
}

// seqHeader holds an event's Seq: its account's sequence.
const seqHeader = "Apiary-Seq"

// Publish stores ev and returns once the stream has acked it. ev.Seq is
// ignored: the bus numbers the account's events. An empty ev.ID disables
// duplicate suppression for ev.
func (b *Bus) Publish(ctx context.Context, ev apiary.Event) error {
	subj, err := Subject(ev.Account, ev.Job)
	if err != nil {
		return fmt.Errorf("natsbus: publish: %w", err)
	}
	ev.Seq = 0
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("natsbus: publish %s: %w", ev.Type, err)
	}
	account := accountSubject(ev.Account)
	for {
		last, err := b.last(ctx, account)
		if err != nil {
			return fmt.Errorf("natsbus: publish %s of job %s: %w", ev.Type, ev.Job, err)
		}
		next := last.seq + 1
		if last.streamSeq == 0 || last.seq == last.streamSeq {
			// No event kept, or only one from before per-account numbers.
			next = max(next, uint64(time.Now().UnixMicro()))
		}
		msg := nats.NewMsg(subj)
		msg.Data = data
		msg.Header.Set(seqHeader, strconv.FormatUint(next, 10))
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last.streamSeq, 10))
		msg.Header.Set(expectedLastSubjSeqSubjHeader, account)
		if ev.ID != "" {
			msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
		}
		_, err = b.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(b.cfg.Stream))
		if err == nil {
			return nil
		}
		if !wrongLastSequence(err) || ctx.Err() != nil {
			return classify(err, "natsbus: publish %s of job %s", ev.Type, ev.Job)
		}
		// Another event of the account came first: number after it.
	}
}

// expectedLastSubjSeqSubjHeader names the subject (here a wildcard over an
// account's events) whose last sequence Nats-Expected-Last-Subject-Sequence
// is checked against.
const expectedLastSubjSeqSubjHeader = "Nats-Expected-Last-Subject-Sequence-Subject"

func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// position is where an account's event sits: its stream sequence and its
// account sequence. The zero position is "no event".
type position struct{ streamSeq, seq uint64 }

// accountSubject is the subject of all of account's events (valid account).
func accountSubject(account apiary.AccountID) string {
	return SubjectPrefix + "." + string(account) + ".*"
}

// last is the position of the last kept event on subj.
func (b *Bus) last(ctx context.Context, subj string) (position, error) {
	m, err := b.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return position{}, nil
	}
	if err != nil {
		return position{}, classify(err, "natsbus: last event")
	}
	return position{streamSeq: m.Sequence, seq: accountSeq(m.Header, m.Sequence)}, nil
}

// nextFrom is the position of the first kept event on subj at or after
// stream sequence from.
func (b *Bus) nextFrom(ctx context.Context, subj string, from uint64) (position, error) {
	m, err := b.stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subj))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return position{}, nil
	}
	if err != nil {
		return position{}, classify(err, "natsbus: find event")
	}
	return position{streamSeq: m.Sequence, seq: accountSeq(m.Header, m.Sequence)}, nil
}

// accountSeq is the Seq of the event stored at streamSeq with headers h. An
// event stored before Seq was per account has no header: its stream
// sequence stands in, which is below every number the clock seeds.
func accountSeq(h nats.Header, streamSeq uint64) uint64 {
	if n, err := strconv.ParseUint(h.Get(seqHeader), 10, 64); err == nil && n > 0 {
		return n
	}
	return streamSeq
}

// startAfter returns the stream sequence from which the events on subj
// with an account sequence above after begin: a binary search over the
// stream, whose events of one account are numbered in stream order.
func (b *Bus) startAfter(ctx context.Context, subj string, after uint64) (uint64, error) {
	last, err := b.last(ctx, subj)
	if err != nil || last.streamSeq == 0 {
		return 1, err
	}
	if last.seq <= after {
		return last.streamSeq + 1, nil // nothing yet: from the next one
	}
	// The least stream sequence from which the first event on subj is
	// numbered above after lies in [lo, hi].
	lo, hi := uint64(1), last.streamSeq
	for lo < hi {
		mid := lo + (hi-lo)/2
		p, err := b.nextFrom(ctx, subj, mid)
		if err != nil {
			return 0, err
		}
		if p.streamSeq != 0 && p.seq > after {
			hi = mid
		} else {
			lo = max(mid+1, p.streamSeq+1) // no event up to p is above after
		}
	}
	return lo, nil
}

// consumer opens an ordered consumer on f's subject from f.AfterSeq+1.
func (b *Bus) consumer(ctx context.Context, f events.Filter) (jetstream.Consumer, error) {
	subj, err := filterSubject(f)
	if err != nil {
		return nil, err
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{subj},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
		MaxResetAttempts:  3,
	}
	if f.AfterSeq > 0 {
		start, err := b.startAfter(ctx, subj, f.AfterSeq)
		if err != nil {
			return nil, err
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	c, err := b.js.OrderedConsumer(ctx, b.cfg.Stream, cfg)
	if err != nil {
		return nil, classify(err, "natsbus: consumer on %s", b.cfg.Stream)
	}
	return c, nil
}

// deleteConsumer removes an ordered consumer's current server-side
// consumer at once instead of leaving it to its inactivity timeout.
func (b *Bus) deleteConsumer(c jetstream.Consumer) {
	info := c.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.js.DeleteConsumer(ctx, b.cfg.Stream, info.Name)
}

// decode turns a stream message into an event with its Seq, and says how
// many matching messages the stream held after it.
func decode(m jetstream.Msg) (ev apiary.Event, pending uint64, err error) {
	meta, err := m.Metadata()
	if err != nil {
		return ev, 0, fmt.Errorf("natsbus: event metadata: %w", err)
	}
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		return ev, 0, fmt.Errorf("natsbus: event %d: %w", meta.Sequence.Stream, err)
	}
	ev.Seq = accountSeq(m.Headers(), meta.Sequence.Stream)
	return ev, meta.NumPending, nil
}

// Replay returns up to limit stored events matching f, oldest first. limit
// must be positive.
func (b *Bus) Replay(ctx context.Context, f events.Filter, limit int) ([]apiary.Event, error) {
	if limit <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "natsbus: replay: limit must be positive")
	}
	c, err := b.consumer(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("natsbus: replay: %w", err)
	}
	var out []apiary.Event
	defer func() { b.deleteConsumer(c) }()
	for len(out) < limit {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("natsbus: replay: %w", err)
		}
		batch, err := c.FetchNoWait(min(limit-len(out), replayBatch))
		if err != nil {
			return nil, classify(err, "natsbus: replay")
		}
		got, pending := 0, uint64(1)
		for m := range batch.Messages() {
			ev, left, err := decode(m)
			if err != nil {
				return nil, err
			}
			pending = left
			out = append(out, ev)
			got++
		}
		if err := batch.Error(); err != nil {
			return nil, classify(err, "natsbus: replay")
		}
		if got == 0 || pending == 0 {
			break
		}
	}
	return out, nil
}

// Follow calls fn for each stored event matching f, then for each new one,
// until fn returns false (Follow returns nil), fn returns an error (Follow
// returns it) or ctx ends (Follow returns ctx's error).
func (b *Bus) Follow(ctx context.Context, f events.Filter, fn func(apiary.Event) (more bool, err error)) error {
	c, err := b.consumer(ctx, f)
	if err != nil {
		return fmt.Errorf("natsbus: follow: %w", err)
	}
	it, err := c.Messages()
	if err != nil {
		return classify(err, "natsbus: follow")
	}
	defer func() {
		it.Stop()
		b.deleteConsumer(c)
	}()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("natsbus: follow: %w", ctx.Err())
			}
			return classify(err, "natsbus: follow")
		}
		ev, _, err := decode(m)
		if err != nil {
			return err
		}
		more, err := fn(ev)
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// Consume runs a durable pull consumer named durable on the event stream,
// created on first use with DeliverAll (so the first start hands over every
// event still kept), and calls fn for each event in stream order. fn
// returning nil acks the event (double ack: the ack is confirmed by the
// server); an error naks it with a backoff growing with its deliveries
// (1 s, 2 s, 4 s ... 1 min), after which it comes again, also to another
// process consuming under the same name. An event that does not decode is
// terminated. Consume returns nil when ctx ends.
func (b *Bus) Consume(ctx context.Context, durable string, fn func(context.Context, apiary.Event) error) error {
	if !validDurable(durable) {
		return apiary.E(apiary.KindInvalid, "natsbus: consume: durable name %q may hold only A-Z, a-z, 0-9, '_' and '-'", durable)
	}
	c, err := b.js.CreateOrUpdateConsumer(ctx, b.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "Apiary durable event consumer " + durable,
		FilterSubject: SubjectPrefix + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       consumeAckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1024,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return classify(err, "natsbus: consume %s", durable)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return classify(err, "natsbus: consume %s", durable)
	}
	defer stopConsuming(it)
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return classify(err, "natsbus: consume %s", durable)
		}
		ev, _, err := decode(m)
		if err != nil {
			_ = m.Term()
			continue
		}
		if err := fn(ctx, ev); err != nil {
			delivered := uint64(1)
			if meta, merr := m.Metadata(); merr == nil {
				delivered = meta.NumDelivered
			}
			_ = m.NakWithDelay(consumeBackoff(delivered))
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = m.DoubleAck(ackCtx) // a lost ack only means the event comes again
		cancel()
	}
}

// stopConsuming ends a durable consumer's iterator so that the next
// Consume of the same name gets every event at once: it hands back the
// events already fetched but not handled (nak: redelivered now, not after
// AckWait) and waits until the subscription is gone, so that the server
// sends no later event to it.
func stopConsuming(it jetstream.MessagesContext) {
	it.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			break
		}
		_ = m.Nak()
	}
	if c, ok := it.(interface{ Closed() <-chan struct{} }); ok {
		select {
		case <-c.Closed():
		case <-ctx.Done():
		}
	}
}

// consumeAckWait is how long an event handed to Consume's fn stays with it
// before the server hands it out again.
const consumeAckWait = 30 * time.Second

// consumeBackoff is the delay before an event that fn refused comes again.
func consumeBackoff(delivered uint64) time.Duration {
	d := time.Second
	for i := uint64(1); i < delivered && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

func validDurable(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// classify translates a NATS error into the root package's kinds, as every
// NATS adapter does (internal/natserr).
func classify(err error, format string, args ...any) error {
	return natserr.Wrap(err, format, args...)
}
