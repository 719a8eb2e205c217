package sqs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/apiaryhq/apiary"
)

// flushTimeout bounds one DeleteMessageBatch call made for waiting Acks: it
// serves several callers, so it runs under none of their contexts.
const flushTimeout = 30 * time.Second

// EnqueueBatch sends msgs with SendMessageBatch, 10 per call, and returns
// once SQS has stored all of them. Entries SQS refuses, or whose call
// fails, are sent once more; see queue.BatchEnqueuer for the rest.
func (q *Queue) EnqueueBatch(ctx context.Context, msgs []apiary.JobMessage) error {
	entries := make([]types.SendMessageBatchRequestEntry, len(msgs))
	for i, msg := range msgs {
		body, err := encode(msg)
		if err != nil {
			return fmt.Errorf("sqs: enqueue batch: message %d: %w", i, err)
		}
		// The entry id is the message's index in msgs, in every call.
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body)}
	}
	failed := q.sendBatches(ctx, msgs, entries)
	if len(failed) > 0 && ctx.Err() == nil {
		retry := make([]types.SendMessageBatchRequestEntry, 0, len(failed))
		for _, i := range slices.Sorted(maps.Keys(failed)) {
			retry = append(retry, entries[i])
		}
		failed = q.sendBatches(ctx, msgs, retry)
	}
	if len(failed) == 0 {
		return nil
	}
	first := slices.Min(slices.Collect(maps.Keys(failed)))
	return fmt.Errorf("sqs: enqueue batch: %d of %d messages not stored: %w", len(failed), len(msgs), failed[first])
}

// sendBatches sends entries, 10 per call, and returns the error of each
// entry that was not stored, by its index in msgs.
func (q *Queue) sendBatches(ctx context.Context, msgs []apiary.JobMessage, entries []types.SendMessageBatchRequestEntry) map[int]error {
	failed := map[int]error{}
	for group := range slices.Chunk(entries, maxBatch) {
		out, err := q.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: &q.url, Entries: group})
		if err != nil {
			for _, e := range group {
				i := entryIndex(e.Id)
				failed[i] = classify(ctx, err, "message %d (%s)", i, msgs[i].Job)
			}
			continue
		}
		refused := make(map[string]types.BatchResultErrorEntry, len(out.Failed))
		for _, f := range out.Failed {
			refused[aws.ToString(f.Id)] = f
		}
		stored := make(map[string]bool, len(out.Successful))
		for _, s := range out.Successful {
			stored[aws.ToString(s.Id)] = true
		}
		for _, e := range group {
			id := aws.ToString(e.Id)
			if stored[id] {
				continue
			}
			i := entryIndex(e.Id)
			failed[i] = entryError(ctx, refused[id], "message %d (%s)", i, msgs[i].Job)
		}
	}
	return failed
}

// entryIndex reads back an entry id made by strconv.Itoa.
func entryIndex(id *string) int {
	i, _ := strconv.Atoi(aws.ToString(id))
	return i
}

// entryError classifies the failure of one batch entry like the error of a
// single call. An entry SQS reported neither way (a zero e) is unavailable.
func entryError(ctx context.Context, e types.BatchResultErrorEntry, format string, args ...any) error {
	if e.Code == nil {
		return apiary.E(apiary.KindUnavailable, "%s: no result in the batch response", fmt.Sprintf(format, args...))
	}
	fault := smithy.FaultServer
	if e.SenderFault {
		fault = smithy.FaultClient
	}
	return classify(ctx, &smithy.GenericAPIError{Code: aws.ToString(e.Code), Message: aws.ToString(e.Message), Fault: fault}, format, args...)
}

// ackBatcher coalesces concurrent Acks into DeleteMessageBatch calls.
//
// The first Ack of a batch opens it and starts a goroutine that waits for
// the window to end, or for the batch to fill or the Queue to close, and
// then sends it. So no goroutine runs while no Ack waits; wg counts those
// that do, and close waits for them.
type ackBatcher struct {
	q      *Queue
	window time.Duration

	mu     sync.Mutex // guards open and closed
	open   *ackBatch  // the batch new Acks join; nil when none is open
	closed bool       // Acks are no longer queued
	wg     sync.WaitGroup
}

// ackBatch is one DeleteMessageBatch call in the making.
type ackBatch struct {
	reqs []*ackReq
	// send is closed when the batch must go before its window ends: it is
	// full, or the Queue is closing. Whoever closes it also detaches the
	// batch from ackBatcher.open.
	send chan struct{}
}

type ackReq struct {
	handle string
	job    apiary.JobID
	done   chan error // buffered: the sender never waits for the Ack
}

// ack queues a delete of handle and waits for its result. queued is false
// when the batcher is closed: the caller deletes on its own then.
func (b *ackBatcher) ack(ctx context.Context, handle string, job apiary.JobID) (queued bool, err error) {
	req := &ackReq{handle: handle, job: job, done: make(chan error, 1)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false, nil
	}
	if b.open == nil {
		batch := &ackBatch{send: make(chan struct{})}
		b.open = batch
		b.wg.Go(func() { b.run(batch) })
	}
	b.open.reqs = append(b.open.reqs, req)
	if len(b.open.reqs) == maxBatch {
		close(b.open.send)
		b.open = nil
	}
	b.mu.Unlock()

	select {
	case err := <-req.done:
		return true, err
	case <-ctx.Done():
		return true, fmt.Errorf("sqs: ack %s: %w", job, context.Cause(ctx))
	}
}

// run sends batch when its window ends, or earlier when told to.
func (b *ackBatcher) run(batch *ackBatch) {
	t := time.NewTimer(b.window)
	select {
	case <-t.C:
	case <-batch.send:
		t.Stop()
	}
	b.mu.Lock()
	if b.open == batch {
		b.open = nil
	}
	reqs := batch.reqs // no Ack joins a detached batch
	b.mu.Unlock()
	b.flush(reqs)
}

// flush deletes the messages of reqs and hands each Ack its own result.
func (b *ackBatcher) flush(reqs []*ackReq) {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if len(reqs) == 1 {
		reqs[0].done <- b.q.deleteMessage(ctx, reqs[0].handle, reqs[0].job)
		return
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(reqs))
	for i, r := range reqs {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r.handle)}
	}
	out, err := b.q.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: &b.q.url, Entries: entries})
	if err != nil {
		for _, r := range reqs {
			r.done <- classify(ctx, err, "sqs: ack %s", r.job)
		}
		return
	}
	results := make(map[string]error, len(reqs))
	for _, s := range out.Successful {
		results[aws.ToString(s.Id)] = nil
	}
	for _, f := range out.Failed {
		i := entryIndex(f.Id)
		if i >= 0 && i < len(reqs) {
			results[aws.ToString(f.Id)] = entryError(ctx, f, "sqs: ack %s", reqs[i].job)
		}
	}
	for i, r := range reqs {
		err, ok := results[strconv.Itoa(i)]
		if !ok {
			err = entryError(ctx, types.BatchResultErrorEntry{}, "sqs: ack %s", r.job)
		}
		r.done <- err
	}
}

// close sends the open batch at once and waits for every batch in flight.
// Later Acks are not queued.
func (b *ackBatcher) close() {
	b.mu.Lock()
	b.closed = true
	if b.open != nil {
		close(b.open.send)
		b.open = nil
	}
	b.mu.Unlock()
	b.wg.Wait()
}
