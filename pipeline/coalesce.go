package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/embed"
)

// batcher coalesces the chunks of many documents into full embedder calls.
//
// Short documents are the common case: one or two chunks each. Embedding
// them one document at a time pays a model call per document and pads
// nothing together, which leaves most of a batched model's throughput
// unused. Ingest calls therefore queue their texts here, and runners (as
// many as the embedder budget) each take up to a batch of queued texts,
// from every waiting document, into one Embed call.
//
// What it promises:
//
//   - Full batches, bounded wait. A runner takes a batch as soon as a full
//     one is queued; otherwise it waits for the oldest queued request to be
//     `wait` old, then takes what there is.
//   - Fairness among accounts. A batch is filled from the waiting accounts
//     in turn, one request (up to the room left) from each, starting after
//     the account served last, so one account's backlog does not keep
//     another account's documents out of the batches.
//   - A request larger than a batch is split over several; its vectors come
//     back in its own order.
//   - Cancellation. A request whose ctx ends while it is queued is removed
//     and gets ctx's cause; once in a running batch, its batch completes
//     and its vectors are dropped.
//   - An error of the embedder fails every request that had texts in that
//     batch (and only those).
//   - No idle goroutines: a runner starts when texts are queued and fewer
//     than the budget run, and ends when nothing is left to take.
type batcher struct {
	emb   embed.Embedder
	batch int
	wait  time.Duration

	runners int // most runners at once

	mu      sync.Mutex
	queues  map[apiary.AccountID][]*embedRequest // waiting requests per account, oldest first
	order   []apiary.AccountID                   // accounts with waiting requests, in turn order
	pending int                                  // texts queued and not yet taken
	running int                                  // runners started and not ended
	last    apiary.AccountID                     // the account whose texts a batch took last
	wake    chan struct{}                        // signalled (non-blocking) when texts are queued
}

type embedRequest struct {
	account apiary.AccountID
	texts   []string
	vecs    [][]float32
	next    int       // texts before next are taken into batches
	left    int       // texts taken whose vectors have not come back
	queued  time.Time // when the request was queued
	err     error
	done    chan struct{} // closed once every vector is in, or on err
	gone    bool          // the caller gave up
}

func newBatcher(emb embed.Embedder, batch, runners int, wait time.Duration) *batcher {
	return &batcher{
		emb:     emb,
		batch:   batch,
		wait:    wait,
		runners: runners,
		queues:  make(map[apiary.AccountID][]*embedRequest),
		wake:    make(chan struct{}, 1),
	}
}

// embed queues texts of account and waits for their vectors.
func (b *batcher) embed(ctx context.Context, account apiary.AccountID, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	r := &embedRequest{
		account: account,
		texts:   texts,
		vecs:    make([][]float32, len(texts)),
		queued:  time.Now(),
		done:    make(chan struct{}),
	}
	b.mu.Lock()
	if len(b.queues[account]) == 0 {
		b.order = append(b.order, account)
	}
	b.queues[account] = append(b.queues[account], r)
	b.pending += len(texts)
	if b.running < b.runners {
		b.running++
		go b.run()
	}
	b.mu.Unlock()
	b.signal()

	select {
	case <-r.done:
		if r.err != nil {
			return nil, r.err
		}
		return r.vecs, nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-r.done: // finished meanwhile
			if r.err != nil {
				return nil, r.err
			}
			return r.vecs, nil
		default:
		}
		r.gone = true
		b.dequeue(r)
		return nil, context.Cause(ctx)
	}
}

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// dequeue removes r's untaken texts from the queue. Called with mu held.
func (b *batcher) dequeue(r *embedRequest) {
	q := b.queues[r.account]
	for i, x := range q {
		if x == r {
			b.pending -= len(r.texts) - r.next
			r.next = len(r.texts)
			b.queues[r.account] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(b.queues[r.account]) == 0 {
		b.dropAccount(r.account)
	}
}

func (b *batcher) dropAccount(account apiary.AccountID) {
	delete(b.queues, account)
	for i, a := range b.order {
		if a == account {
			b.order = append(b.order[:i:i], b.order[i+1:]...)
			return
		}
	}
}

// finish ends r with err (nil: every vector is in). Called with mu held.
func (b *batcher) finish(r *embedRequest, err error) {
	select {
	case <-r.done:
		return
	default:
	}
	r.err = err
	close(r.done)
}

// piece is a run of one request's texts inside a batch.
type piece struct {
	r        *embedRequest
	from, to int // r.texts[from:to]
}

func (b *batcher) run() {
	for {
		pieces, texts, ok := b.take()
		if !ok {
			return
		}
		vecs, err := b.emb.Embed(context.Background(), texts)
		if err == nil && len(vecs) != len(texts) {
			err = fmt.Errorf("%d vectors for %d texts", len(vecs), len(texts))
		}
		b.mu.Lock()
		at := 0
		for _, p := range pieces {
			n := p.to - p.from
			if err != nil {
				b.fail(p.r, err)
			} else if !p.r.gone {
				copy(p.r.vecs[p.from:p.to], vecs[at:at+n])
				p.r.left -= n
				if p.r.left == 0 && p.r.next == len(p.r.texts) {
					b.finish(p.r, nil)
				}
			}
			at += n
		}
		b.mu.Unlock()
	}
}

// fail ends r with err and takes its remaining texts out of the queue.
// Called with mu held.
func (b *batcher) fail(r *embedRequest, err error) {
	if r.next < len(r.texts) {
		b.dequeue(r)
	}
	b.finish(r, err)
}

// take waits for a batch to be worth running and takes it: a full batch at
// once, otherwise what is queued once the oldest request is b.wait old.
// ok is false when nothing is queued: the runner ends.
func (b *batcher) take() (pieces []piece, texts []string, ok bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		if b.pending == 0 {
			b.running--
			b.mu.Unlock()
			return nil, nil, false
		}
		due := b.wait - time.Since(b.oldest())
		if b.pending >= b.batch || due <= 0 {
			pieces, texts = b.fill()
			more := b.pending > 0
			b.mu.Unlock()
			if more {
				b.signal() // another runner may take the rest
			}
			return pieces, texts, true
		}
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(due)
		} else {
			timer.Reset(due)
		}
		select {
		case <-b.wake:
		case <-timer.C:
		}
	}
}

// oldest is when the longest-waiting queued request was queued. Called
// with mu held and pending > 0.
func (b *batcher) oldest() time.Time {
	var t time.Time
	for _, a := range b.order {
		if q := b.queues[a]; len(q) > 0 && (t.IsZero() || q[0].queued.Before(t)) {
			t = q[0].queued
		}
	}
	return t
}

// fill takes up to a batch of texts, one request at a time from each
// waiting account in turn. Called with mu held.
func (b *batcher) fill() ([]piece, []string) {
	var pieces []piece
	texts := make([]string, 0, min(b.pending, b.batch))
	if len(b.order) > 1 && b.order[0] == b.last {
		b.order = append(b.order[1:], b.last) // the turn starts after the account served last
	}
	for len(texts) < b.batch && len(b.order) > 0 {
		account := b.order[0]
		q := b.queues[account]
		r := q[0]
		n := min(len(r.texts)-r.next, b.batch-len(texts))
		pieces = append(pieces, piece{r: r, from: r.next, to: r.next + n})
		texts = append(texts, r.texts[r.next:r.next+n]...)
		r.next += n
		r.left += n
		b.pending -= n
		b.last = account
		if r.next == len(r.texts) {
			q = q[1:]
		}
		// The account goes to the back of the turn, or leaves it.
		b.order = b.order[1:]
		if len(q) == 0 {
			delete(b.queues, account)
		} else {
			b.queues[account] = q
			b.order = append(b.order, account)
		}
	}
	return pieces, texts
}
