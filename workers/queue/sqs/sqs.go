// Package sqs is the queue port on Amazon SQS (a standard queue and its
// dead-letter queue).
//
// Jobs are JSON apiary.JobMessage values, one SQS message each. The lease of
// a delivery is its visibility timeout (Config.Lease, passed on every
// ReceiveMessage); Extend resets it with ChangeMessageVisibility, Nack sets it
// to the retry delay, Ack deletes the message. A delivery's Attempt is SQS's
// ApproximateReceiveCount, its Enqueued the message's SentTimestamp (a
// Nack changes the visibility of the same message, so both go on).
//
// Batches: EnqueueBatch (queue.BatchEnqueuer) sends 10 messages per
// SendMessageBatch call. Acks that arrive within Config.AckBatchWindow of
// each other are coalesced into one DeleteMessageBatch of up to 10 entries;
// each Ack still waits for, and returns, the result of its own entry. Close
// flushes the acks waiting for a batch; Acks after Close are sent one by one.
//
// New creates the queue and its dead-letter queue "<Queue>-dlq" when they
// are missing, with a redrive policy that parks a message after
// Config.MaxReceiveCount receives, so that a job whose worker keeps crashing
// is not redelivered forever (an existing queue's lower count is raised). Term sends the message to the dead-letter
// queue itself, with the reason in the message attribute "apiary-reason",
// and then deletes it. A message body that is not a JobMessage is
// dead-lettered the same way by Receive and never handed to a worker.
//
// SQS bounds a message's visibility to 12 hours after it was received:
// Extend and Nack past that point are capped, and Extend fails with
// apiary.KindConflict once nothing is left.
//
// Errors are translated into the root package's kinds: throttling is
// KindUnavailable with a RetryAfter hint, a missing queue KindNotFound, a
// receipt that is no longer in flight KindConflict.
package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Limits that SQS imposes.
const (
	// MaxVisibility is the longest a message stays invisible after it was
	// received, counting every ChangeMessageVisibility.
	MaxVisibility = 12 * time.Hour
	// maxBatch is the most messages one ReceiveMessage returns, and the
	// most entries of one SendMessageBatch or DeleteMessageBatch.
	maxBatch = 10
	// maxWait is the longest long poll.
	maxWait = 20 * time.Second
	// pollGrace is the network's share of a long poll's deadline: a poll
	// that has not answered WaitTime+pollGrace after it was sent is given up.
	pollGrace = 5 * time.Second
	// dlqRetention keeps dead letters as long as SQS allows (14 days).
	dlqRetention = 14 * 24 * time.Hour
	// maxAckBatchWindow bounds Config.AckBatchWindow: an ack held longer
	// eats into the lease for little gain.
	maxAckBatchWindow = time.Second
)

// Message attributes set on dead letters.
const (
	// ReasonAttribute holds the reason given to Term.
	ReasonAttribute = "apiary-reason"
	// AttemptAttribute holds the delivery's Attempt when it was terminated.
	AttemptAttribute = "apiary-attempt"
)

// throttleRetryAfter is the RetryAfter hint on a throttling error that the
// SDK's own retries did not absorb.
const throttleRetryAfter = 2 * time.Second

var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// Config configures a Queue. Client and Queue are required.
type Config struct {
	// Client talks to SQS (see NewClient). Required.
	Client *awssqs.Client
	// Queue is the name of the job queue; created when missing. Required.
	Queue string
	// DeadLetterQueue is the name of its dead-letter queue; created when
	// missing. Default Queue + "-dlq".
	DeadLetterQueue string
	// MaxReceiveCount is how many receives SQS allows a message before its
	// redrive policy moves it to the dead-letter queue. New sets it on the
	// queue it creates, and raises an existing queue's to it (never lowers
	// it). Default 10.
	MaxReceiveCount int
	// Lease is the visibility timeout of every delivery: whole seconds,
	// 1 s to 12 h. Default 60 s.
	Lease time.Duration
	// WaitTime is how long Receive long-polls for a first message: whole
	// seconds, 1 s to 20 s. Default 5 s.
	WaitTime time.Duration
	// AckBatchWindow is how long an Ack waits for others to share one
	// DeleteMessageBatch call: a batch of 10 is sent at once, a smaller one
	// when the window of its first Ack ends (a lone Ack as DeleteMessage).
	// At most 1 s. Default (0) 20 ms; a negative value disables coalescing,
	// so that every Ack is its own DeleteMessage call at once.
	AckBatchWindow time.Duration
}

func (c *Config) setDefaults() {
	if c.DeadLetterQueue == "" && c.Queue != "" {
		c.DeadLetterQueue = c.Queue + "-dlq"
	}
	if c.MaxReceiveCount == 0 {
		c.MaxReceiveCount = 10
	}
	if c.Lease == 0 {
		c.Lease = 60 * time.Second
	}
	if c.WaitTime == 0 {
		c.WaitTime = 5 * time.Second
	}
	if c.AckBatchWindow == 0 {
		c.AckBatchWindow = 20 * time.Millisecond
	}
}

// Validate reports every problem with c (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("sqs: Client is required"))
	}
	if !queueName.MatchString(c.Queue) {
		errs = append(errs, fmt.Errorf("sqs: Queue %q must be 1 to 80 characters of A-Z, a-z, 0-9, '-' and '_' (FIFO queues are not supported)", c.Queue))
	}
	if !queueName.MatchString(c.DeadLetterQueue) {
		errs = append(errs, fmt.Errorf("sqs: DeadLetterQueue %q must be 1 to 80 characters of A-Z, a-z, 0-9, '-' and '_'", c.DeadLetterQueue))
	}
	if c.DeadLetterQueue == c.Queue {
		errs = append(errs, errors.New("sqs: DeadLetterQueue must differ from Queue"))
	}
	if c.MaxReceiveCount < 1 || c.MaxReceiveCount > 1000 {
		errs = append(errs, fmt.Errorf("sqs: MaxReceiveCount %d is not in 1..1000", c.MaxReceiveCount))
	}
	if c.Lease < time.Second || c.Lease > MaxVisibility || c.Lease%time.Second != 0 {
		errs = append(errs, fmt.Errorf("sqs: Lease %s is not whole seconds in 1s..12h", c.Lease))
	}
	if c.WaitTime < time.Second || c.WaitTime > maxWait || c.WaitTime%time.Second != 0 {
		errs = append(errs, fmt.Errorf("sqs: WaitTime %s is not whole seconds in 1s..20s", c.WaitTime))
	}
	if c.AckBatchWindow > maxAckBatchWindow {
		errs = append(errs, fmt.Errorf("sqs: AckBatchWindow %s is over %s", c.AckBatchWindow, maxAckBatchWindow))
	}
	return errors.Join(errs...)
}

// NewClient returns an SQS client for awsCfg (region, credentials, HTTP
// client). A non-empty endpoint replaces the regional one: an emulator or a
// VPC endpoint.
func NewClient(awsCfg aws.Config, endpoint string) *awssqs.Client {
	return awssqs.NewFromConfig(awsCfg, func(o *awssqs.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// Queue is a job queue on SQS. Its methods are safe for concurrent use.
// Call Close when done with it.
type Queue struct {
	cfg    Config
	client *awssqs.Client
	url    string      // job queue
	dlqURL string      // dead-letter queue
	acks   *ackBatcher // nil when coalescing is disabled
}

var (
	_ queue.Queue         = (*Queue)(nil)
	_ queue.BatchEnqueuer = (*Queue)(nil)
	_ queue.Settler       = (*receipt)(nil)
)

// New finds the queue and its dead-letter queue, creating whichever is
// missing, and returns a Queue on them. An existing queue is used with the
// attributes it has (its deliveries still get Config.Lease), but for a
// redrive backstop below Config.MaxReceiveCount, which is raised.
func New(ctx context.Context, cfg Config) (*Queue, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "sqs: config")
	}
	q := &Queue{cfg: cfg, client: cfg.Client}
	var err error
	q.dlqURL, err = q.ensureQueue(ctx, cfg.DeadLetterQueue, map[string]string{
		string(types.QueueAttributeNameMessageRetentionPeriod): seconds(dlqRetention),
	})
	if err != nil {
		return nil, err
	}
	attrs, err := q.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl:       &q.dlqURL,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return nil, classify(ctx, err, "sqs: get attributes of %s", cfg.DeadLetterQueue)
	}
	dlqARN := attrs.Attributes[string(types.QueueAttributeNameQueueArn)]
	if dlqARN == "" {
		return nil, apiary.E(apiary.KindUnavailable, "sqs: queue %s has no ARN", cfg.DeadLetterQueue)
	}
	redrive, err := json.Marshal(map[string]any{
		"deadLetterTargetArn": dlqARN,
		"maxReceiveCount":     cfg.MaxReceiveCount,
	})
	if err != nil {
		return nil, fmt.Errorf("sqs: redrive policy: %w", err)
	}
	q.url, err = q.ensureQueue(ctx, cfg.Queue, map[string]string{
		string(types.QueueAttributeNameVisibilityTimeout):             seconds(cfg.Lease),
		string(types.QueueAttributeNameReceiveMessageWaitTimeSeconds): seconds(cfg.WaitTime),
		string(types.QueueAttributeNameRedrivePolicy):                 string(redrive),
	})
	if err != nil {
		return nil, err
	}
	if err := q.raiseRedrive(ctx); err != nil {
		return nil, err
	}
	if cfg.AckBatchWindow > 0 {
		q.acks = &ackBatcher{q: q, window: cfg.AckBatchWindow}
	}
	return q, nil
}

// raiseRedrive raises the job queue's redrive backstop to
// Config.MaxReceiveCount when it is lower (a queue made earlier, for fewer
// deliveries than the workers now allow a job on an outage): SQS would
// otherwise park a job in the dead-letter queue before the workers give up
// on it and mark it failed. A higher backstop, or none, is left as it is.
// Raising it needs sqs:SetQueueAttributes; without it New fails, saying so.
func (q *Queue) raiseRedrive(ctx context.Context) error {
	name := types.QueueAttributeNameRedrivePolicy
	out, err := q.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: &q.url, AttributeNames: []types.QueueAttributeName{name},
	})
	if err != nil {
		return classify(ctx, err, "sqs: get attributes of %s", q.cfg.Queue)
	}
	raw := out.Attributes[string(name)]
	if raw == "" {
		return nil
	}
	var policy map[string]any
	if err := json.Unmarshal([]byte(raw), &policy); err != nil {
		return fmt.Errorf("sqs: redrive policy of %s: %w", q.cfg.Queue, err)
	}
	// A number, or a string holding one.
	n, err := strconv.Atoi(fmt.Sprint(policy["maxReceiveCount"]))
	if err != nil || n >= q.cfg.MaxReceiveCount {
		return nil
	}
	policy["maxReceiveCount"] = q.cfg.MaxReceiveCount
	raised, err := json.Marshal(policy)
	if err != nil {
		return fmt.Errorf("sqs: redrive policy of %s: %w", q.cfg.Queue, err)
	}
	if _, err := q.client.SetQueueAttributes(ctx, &awssqs.SetQueueAttributesInput{
		QueueUrl: &q.url, Attributes: map[string]string{string(name): string(raised)},
	}); err != nil {
		return classify(ctx, err, "sqs: queue %s moves a message to its dead-letter queue after %d receives, fewer than the %d the workers may need; raise its maxReceiveCount", q.cfg.Queue, n, q.cfg.MaxReceiveCount)
	}
	return nil
}

// ensureQueue returns the URL of queue name, creating it with attrs when it
// does not exist.
func (q *Queue) ensureQueue(ctx context.Context, name string, attrs map[string]string) (string, error) {
	get := func() (string, error) {
		out, err := q.client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: &name})
		if err != nil {
			return "", classify(ctx, err, "sqs: get queue %s", name)
		}
		return aws.ToString(out.QueueUrl), nil
	}
	url, err := get()
	if apiary.KindOf(err) != apiary.KindNotFound {
		return url, err
	}
	out, err := q.client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: &name, Attributes: attrs})
	if err != nil {
		if apiary.KindOf(classify(ctx, err, "")) == apiary.KindConflict {
			return get() // created meanwhile by another process, with other attributes
		}
		return "", classify(ctx, err, "sqs: create queue %s", name)
	}
	return aws.ToString(out.QueueUrl), nil
}

// URL is the job queue's URL.
func (q *Queue) URL() string { return q.url }

// DeadLetterURL is the dead-letter queue's URL.
func (q *Queue) DeadLetterURL() string { return q.dlqURL }

// Lease is the visibility timeout given to every delivery.
func (q *Queue) Lease() time.Duration { return q.cfg.Lease }

// Enqueue sends msg and returns once SQS has stored it.
func (q *Queue) Enqueue(ctx context.Context, msg apiary.JobMessage) error {
	body, err := encode(msg)
	if err != nil {
		return fmt.Errorf("sqs: enqueue: %w", err)
	}
	if _, err := q.client.SendMessage(ctx, &awssqs.SendMessageInput{
		QueueUrl:    &q.url,
		MessageBody: &body,
	}); err != nil {
		return classify(ctx, err, "sqs: enqueue %s", msg.Job)
	}
	return nil
}

// encode checks that msg carries its ids and returns its message body.
func encode(msg apiary.JobMessage) (string, error) {
	if err := msg.Account.Validate(); err != nil {
		return "", err
	}
	if msg.Job == "" {
		return "", apiary.E(apiary.KindInvalid, "job id is required")
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return "", fmt.Errorf("%s: %w", msg.Job, err)
	}
	return string(data), nil
}

// receipt settles one delivery (queue.Settler): handle is its SQS receipt
// handle.
type receipt struct {
	q        *Queue
	handle   string
	body     string
	received time.Time // before the ReceiveMessage call: the 12 h bound starts no later
	job      apiary.JobID
	attempt  int
}

// Receive returns up to max deliveries: it long-polls up to WaitTime for
// the first ones, then takes what is ready without waiting, 10 per call.
// If ctx ends, Receive returns when the poll in flight ends (WaitTime at
// most) with ctx's error, and hands back what it received.
func (q *Queue) Receive(ctx context.Context, max int) ([]*queue.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqs: receive: %w", err)
	}
	var out []*queue.Delivery
	wait := int32(q.cfg.WaitTime / time.Second)
	for len(out) < max && ctx.Err() == nil {
		n := min(max-len(out), maxBatch)
		start := time.Now()
		// The long poll is not cut short when ctx ends: SQS would still hand
		// it messages, in flight and invisible to everyone until their lease
		// ran out. Receive waits for the poll to end instead (WaitTime at
		// most) and hands back what it brought.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(wait)*time.Second+pollGrace)
		res, err := q.client.ReceiveMessage(pctx, &awssqs.ReceiveMessageInput{
			QueueUrl:            &q.url,
			MaxNumberOfMessages: int32(n),
			WaitTimeSeconds:     wait,
			VisibilityTimeout:   int32(q.cfg.Lease / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount,
				types.MessageSystemAttributeNameSentTimestamp,
			},
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if len(out) > 0 {
				return out, nil // the next Receive meets the error again
			}
			return nil, classify(ctx, err, "sqs: receive")
		}
		for _, m := range res.Messages {
			r := &receipt{q: q, handle: aws.ToString(m.ReceiptHandle), body: aws.ToString(m.Body), received: start}
			d, err := r.delivery(m.Attributes)
			if err != nil {
				// Never handed to a worker: park it with the reason. If that
				// fails, the redrive policy parks it after MaxReceiveCount.
				_ = q.deadLetter(ctx, r, 0, "apiary: malformed job message")
				continue
			}
			out = append(out, d)
		}
		if len(res.Messages) < n {
			break
		}
		wait = 0
	}
	if err := ctx.Err(); err != nil {
		q.handBack(out)
		return nil, fmt.Errorf("sqs: receive: %w", err)
	}
	return out, nil
}

// handBack makes ds visible again at once, best effort: whatever fails
// comes back when its lease runs out.
func (q *Queue) handBack(ds []*queue.Delivery) {
	if len(ds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, d := range ds {
		_ = d.Nack(ctx, 0)
	}
}

// delivery reads r's job message, attempt and enqueue time.
func (r *receipt) delivery(attrs map[string]string) (*queue.Delivery, error) {
	var msg apiary.JobMessage
	if err := json.Unmarshal([]byte(r.body), &msg); err != nil {
		return nil, err
	}
	if msg.Job == "" || msg.Account.Validate() != nil {
		return nil, errors.New("sqs: job message without ids")
	}
	attempt, err := strconv.Atoi(attrs[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if err != nil || attempt < 1 {
		attempt = 1
	}
	r.job, r.attempt = msg.Job, attempt
	d := queue.NewDelivery(msg, attempt, r)
	if ms, err := strconv.ParseInt(attrs[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil && ms > 0 {
		d.Enqueued = time.UnixMilli(ms).UTC()
	}
	return d, nil
}

// Ack deletes the message from the queue. Concurrent Acks share
// DeleteMessageBatch calls (see Config.AckBatchWindow); each returns its
// own entry's result. An Ack whose ctx ends while it waits returns ctx's
// error, and the message may still be deleted.
func (r *receipt) Ack(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqs: ack %s: %w", r.job, err)
	}
	if r.q.acks != nil {
		if queued, err := r.q.acks.ack(ctx, r.handle, r.job); queued {
			return err
		}
	}
	return r.q.deleteMessage(ctx, r.handle, r.job)
}

// deleteMessage deletes the message with receipt handle on its own.
func (q *Queue) deleteMessage(ctx context.Context, handle string, job apiary.JobID) error {
	if _, err := q.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: &q.url, ReceiptHandle: &handle}); err != nil {
		return classify(ctx, err, "sqs: ack %s", job)
	}
	return nil
}

// Close sends the acks waiting for a batch and waits for every batch in
// flight. Acks after Close are sent one by one; the other methods are not
// affected, and Close does not close the client. Close may be called more
// than once; it always returns nil.
func (q *Queue) Close() error {
	if q.acks != nil {
		q.acks.close()
	}
	return nil
}

// Nack makes the message visible again after delay (at once when delay ≤
// 0), rounded up to whole seconds and capped at 12 h after it was received.
func (r *receipt) Nack(ctx context.Context, delay time.Duration) error {
	secs := ceilSeconds(delay)
	if left := visibilityLeft(r.received, time.Now()); secs > left {
		secs = left
	}
	return r.q.changeVisibility(ctx, r, secs, "sqs: nack %s", r.job)
}

// Extend resets the message's visibility timeout to the lease, capped at
// 12 h after it was received; past that it fails with apiary.KindConflict.
func (r *receipt) Extend(ctx context.Context) error {
	secs := int32(r.q.cfg.Lease / time.Second)
	if left := visibilityLeft(r.received, time.Now()); secs > left {
		if left < 1 {
			return apiary.E(apiary.KindConflict, "sqs: extend %s: a lease cannot run past %s after receipt", r.job, MaxVisibility)
		}
		secs = left
	}
	return r.q.changeVisibility(ctx, r, secs, "sqs: extend %s", r.job)
}

func (q *Queue) changeVisibility(ctx context.Context, r *receipt, secs int32, format string, args ...any) error {
	if _, err := q.client.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{
		QueueUrl:          &q.url,
		ReceiptHandle:     &r.handle,
		VisibilityTimeout: secs,
	}); err != nil {
		return classify(ctx, err, format, args...)
	}
	return nil
}

// Term sends the message to the dead-letter queue with reason and then
// deletes it. If the delete fails after the send, it may be delivered and
// terminated again: the dead-letter queue can then hold it twice.
func (r *receipt) Term(ctx context.Context, reason string) error {
	if err := r.q.deadLetter(ctx, r, r.attempt, reason); err != nil {
		return fmt.Errorf("sqs: term %s: %w", r.job, err)
	}
	return nil
}

func (q *Queue) deadLetter(ctx context.Context, r *receipt, attempt int, reason string) error {
	if reason == "" {
		reason = "terminated"
	}
	attrs := map[string]types.MessageAttributeValue{
		ReasonAttribute: {DataType: aws.String("String"), StringValue: aws.String(queue.Reason(reason))},
	}
	if attempt > 0 {
		attrs[AttemptAttribute] = types.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(attempt))}
	}
	if _, err := q.client.SendMessage(ctx, &awssqs.SendMessageInput{
		QueueUrl:          &q.dlqURL,
		MessageBody:       &r.body,
		MessageAttributes: attrs,
	}); err != nil {
		return classify(ctx, err, "dead-letter")
	}
	if _, err := q.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: &q.url, ReceiptHandle: &r.handle}); err != nil {
		return classify(ctx, err, "delete")
	}
	return nil
}

// visibilityLeft is how many whole seconds of visibility SQS still allows a
// message received at received.
func visibilityLeft(received, now time.Time) int32 {
	left := MaxVisibility - now.Sub(received)
	if left <= 0 {
		return 0
	}
	return int32(left / time.Second)
}

func ceilSeconds(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	if d >= MaxVisibility {
		return int32(MaxVisibility / time.Second)
	}
	return int32((d + time.Second - 1) / time.Second)
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// classify translates an SDK error into the root package's kinds.
func classify(ctx context.Context, err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%s: %w", msg, cerr)
		}
		return fmt.Errorf("%s: %w", msg, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "ResourceNotFoundException":
			return apiary.Wrap(err, apiary.KindNotFound, "%s", msg)
		case "ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight",
			"InvalidIdFormat", "QueueNameExists", "QueueAlreadyExists", "AWS.SimpleQueueService.QueueNameExists":
			return apiary.Wrap(err, apiary.KindConflict, "%s", msg)
		case "RequestThrottled", "ThrottlingException", "Throttling", "OverLimit", "KmsThrottled",
			"TooManyRequestsException", "RequestLimitExceeded":
			return &apiary.Error{Kind: apiary.KindUnavailable, Msg: msg + ": throttled", Err: err, RetryAfter: throttleRetryAfter}
		case "QueueDeletedRecently", "AWS.SimpleQueueService.QueueDeletedRecently":
			return &apiary.Error{Kind: apiary.KindUnavailable, Msg: msg + ": queue deleted recently", Err: err, RetryAfter: time.Minute}
		case "AccessDenied", "AccessDeniedException", "KmsAccessDenied", "KmsDisabled", "KmsNotFound",
			"KmsInvalidState", "KmsInvalidKeyUsage", "KmsOptInRequired":
			return apiary.Wrap(err, apiary.KindForbidden, "%s", msg)
		case "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
			"MissingAuthenticationToken", "ExpiredToken", "InvalidSecurity", "IncompleteSignature":
			// Apiary's own AWS credentials, not the caller's: an outage for
			// the caller, a configuration problem for the operator.
			return apiary.Wrap(err, apiary.KindUnavailable, "%s: the service's AWS credentials were refused", msg)
		case "InvalidParameterValue", "InvalidAttributeName", "InvalidAttributeValue", "InvalidMessageContents",
			"MissingParameter", "UnsupportedOperation", "ValidationError", "InvalidAddress":
			return apiary.Wrap(err, apiary.KindInvalid, "%s", msg)
		}
		if apiErr.ErrorFault() == smithy.FaultClient && statusOf(err) < 500 {
			return apiary.Wrap(err, apiary.KindOther, "%s", msg)
		}
	}
	// Server faults, timeouts, refused connections: the caller retries.
	return apiary.Wrap(err, apiary.KindUnavailable, "%s", msg)
}

func statusOf(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.HTTPStatusCode()
	}
	return http.StatusBadRequest
}
