package api

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/semaphore"

	"github.com/apiaryhq/apiary"
)

// A body takes budget in steps as it is read: as much as it has read so
// far, at least bodyFirstStep, at most bodyMaxStep, never past its size.
// It so holds at most what it has sent plus one step: a stalled body that
// declared 32 MiB holds 64 KiB, not 32 MiB.
const (
	bodyFirstStep = 64 << 10
	bodyMaxStep   = 1 << 20
)

// bodyBudget bounds the bytes of request bodies held in memory at once,
// across all callers: the bytes read so far (and the step each body reads
// into next), from the first Read until the handler returns. Safe for
// concurrent use; its zero value is not ready, use newBodyBudget.
type bodyBudget struct {
	sem   *semaphore.Weighted
	limit int64 // the largest body
	wait  time.Duration
	// perAccount is the most one account may hold: all but one largest
	// body when the budget has room for two, so that one account's bodies
	// never take all of it.
	perAccount int64

	mu    sync.Mutex
	n     int64                      // bytes held, for tests and metrics
	held  map[apiary.AccountID]int64 // bytes held per account
	freed chan struct{}              // closed when bytes are given back; nil while no account waits for its share
}

func newBodyBudget(total, bodyLimit int64, wait time.Duration) *bodyBudget {
	per := total
	if total >= 2*bodyLimit {
		per = total - bodyLimit
	}
	return &bodyBudget{sem: semaphore.NewWeighted(total), limit: bodyLimit, wait: wait, perAccount: per, held: map[apiary.AccountID]int64{}}
}

func (b *bodyBudget) inFlight() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

var (
	// errBodiesBusy answers a body that found no room in the budget
	// within BodyWait.
	errBodiesBusy = &apiary.Error{
		Kind:       apiary.KindUnavailable,
		Msg:        "the server is reading as many request bodies as it may at once; retry after the number of seconds in Retry-After",
		RetryAfter: time.Second,
	}
	// errAccountBodiesBusy answers a body that found no room in its
	// account's share within BodyWait.
	errAccountBodiesBusy = &apiary.Error{
		Kind:       apiary.KindRateLimited,
		Msg:        "this account is sending as many request bodies as it may at once; retry after the number of seconds in Retry-After",
		RetryAfter: time.Second,
	}
)

// take adds n bytes to what account holds, waiting at most BodyWait for
// room in its share, then in the budget. It fails with errAccountBodiesBusy
// or errBodiesBusy, or ctx's error when the request is gone.
func (b *bodyBudget) take(ctx context.Context, account apiary.AccountID, n int64) error {
	wctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if err := b.takeShare(wctx, account, n); err != nil {
		return refusal(ctx, errAccountBodiesBusy)
	}
	if err := b.sem.Acquire(wctx, n); err != nil {
		b.mu.Lock()
		b.giveShareLocked(account, n)
		b.mu.Unlock()
		return refusal(ctx, errBodiesBusy)
	}
	b.mu.Lock()
	b.n += n
	b.mu.Unlock()
	return nil
}

// refusal is err, or ctx's error when the request itself is over (the
// client went away): that is no refusal.
func refusal(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// takeShare adds n to account's share once it has room, or fails when ctx
// is done first.
func (b *bodyBudget) takeShare(ctx context.Context, account apiary.AccountID, n int64) error {
	b.mu.Lock()
	for b.held[account]+n > b.perAccount {
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
	}
	b.held[account] += n
	b.mu.Unlock()
	return nil
}

// giveShareLocked takes n off account's share and wakes the accounts
// waiting for theirs. b.mu is held.
func (b *bodyBudget) giveShareLocked(account apiary.AccountID, n int64) {
	if b.held[account] -= n; b.held[account] <= 0 {
		delete(b.held, account)
	}
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
}

// give returns n bytes that account took.
func (b *bodyBudget) give(account apiary.AccountID, n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.n -= n
	b.giveShareLocked(account, n)
	b.mu.Unlock()
	b.sem.Release(n)
}

// admitBody counts the request's body against the body budget as it is
// read (bodyReader) and gives back all it took when the handler returns:
// the bytes read are in memory until then. A body that cannot have its
// next step within BodyWait fails its Read with 503 and Retry-After (the
// budget is full) or 429 (its account's share is). A request without a
// body takes nothing.
func (s *Server) admitBody(next echo.HandlerFunc) echo.HandlerFunc {
	b := s.bodies
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength == 0 || req.Body == nil || req.Body == http.NoBody {
			return next(c)
		}
		size := req.ContentLength
		if size < 0 || size > b.limit {
			size = b.limit // bodyLimit stops it there
		}
		r := &bodyReader{ReadCloser: req.Body, ctx: req.Context(), b: b, account: principal(c).Account, size: size}
		req.Body = r
		defer r.release()
		return next(c)
	}
}

// bodyReader is a request body that takes its bytes of the body budget
// before it reads them (see bodyFirstStep). Not safe for concurrent use;
// release runs after the handler, the body's only reader, has returned.
type bodyReader struct {
	io.ReadCloser
	ctx     context.Context // the request's, for Read, which takes none
	b       *bodyBudget
	account apiary.AccountID
	size    int64 // the most it may need: Content-Length, or the body limit when unknown
	held    int64 // taken of the budget
	read    int64
	err     error // a refusal, returned by every later Read
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.read >= r.held && r.held < r.size {
		step := min(max(r.held, bodyFirstStep), bodyMaxStep, r.size-r.held)
		if err := r.b.take(r.ctx, r.account, step); err != nil {
			r.err = err
			return 0, err
		}
		r.held += step
	}
	// At its size a body can only end (net/http stops it at its
	// Content-Length, bodyLimit at the limit): a one-byte read asks.
	if room := max(r.held-r.read, 1); int64(len(p)) > room {
		p = p[:room]
	}
	n, err := r.ReadCloser.Read(p)
	r.read += int64(n)
	if r.read > r.held {
		// Longer than its Content-Length said, which only a request
		// built in process can be: read on as a body of unknown length.
		r.size = r.b.limit
	}
	if err == io.EOF && r.held > r.read {
		r.b.give(r.account, r.held-r.read) // the rest of the last step
		r.held = r.read
	}
	return n, err
}

// release gives back all the body took.
func (r *bodyReader) release() {
	r.b.give(r.account, r.held)
	r.held = 0
}
