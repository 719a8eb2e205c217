package workers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// FairConfig shares a pool's slots among accounts. The queue hands out jobs
// first in, first out across accounts; the pool keeps one account's backlog
// from taking every slot by capping the jobs of one account that run at
// once and, while an account is at its cap, looking further down the queue
// for other accounts' jobs. The jobs it passes over are held, their leases
// renewed, and run in queue order as their account's jobs finish. Holding
// is not an attempt: a held job's delivery count does not change.
type FairConfig struct {
	// MaxPerAccount is the most jobs of one account running at once in
	// this pool; the other slots stay free for other accounts' jobs.
	// Default Concurrency less a quarter of it (at least one slot, when
	// Concurrency allows); Concurrency turns sharing off.
	MaxPerAccount int
	// MaxHeld is the most jobs the pool holds for accounts at their cap.
	// With that many held it stops looking ahead and runs the oldest held
	// job in a free slot rather than leave the slot idle. Default 256.
	MaxHeld int
}

// DefaultMaxHeld is FairConfig.MaxHeld's default.
const DefaultMaxHeld = 256

func (c *FairConfig) setDefaults(concurrency int) {
	if c.MaxPerAccount == 0 {
		c.MaxPerAccount = max(1, concurrency-max(1, concurrency/4))
	}
	if c.MaxHeld == 0 {
		c.MaxHeld = DefaultMaxHeld
	}
}

func (c *FairConfig) validate(concurrency int) error {
	var errs []error
	if c.MaxPerAccount < 1 || c.MaxPerAccount > concurrency {
		errs = append(errs, errors.New("workers: Fair.MaxPerAccount must be from 1 to Concurrency"))
	}
	if c.MaxHeld < 1 {
		errs = append(errs, errors.New("workers: Fair.MaxHeld must be at least 1"))
	}
	return errors.Join(errs...)
}

// fairness picks which received deliveries run, account by account. Safe
// for concurrent use.
type fairness struct {
	q           queue.Queue
	cfg         FairConfig
	extendEvery time.Duration
	log         *slog.Logger

	mu      sync.Mutex
	running map[apiary.AccountID]int
	held    []*queue.Delivery // in the order received
	// wake is closed by done while a receive waits on the queue with
	// deliveries held: one of them may be able to run now.
	wake chan struct{}
	// pending brings the result of the receive from the queue running in
	// the background, if one is. Only the pool's receiving goroutine (and
	// drain, after it) uses it.
	pending chan received
}

func newFairness(q queue.Queue, cfg PoolConfig) *fairness {
	return &fairness{q: q, cfg: cfg.Fair, extendEvery: cfg.ExtendEvery, log: cfg.Logger,
		running: make(map[apiary.AccountID]int)}
}

// receive returns at most slots deliveries to run now. It first runs held
// deliveries whose account is under its cap; then it receives from the
// queue, holding what it may not run yet, until it finds one it may, the
// queue has nothing more for now, or the hold is full (then the oldest held
// run regardless of their cap).
func (f *fairness) receive(ctx context.Context, slots int) ([]*queue.Delivery, error) {
	for {
		f.mu.Lock()
		out := f.take(slots, false)
		room := f.cfg.MaxHeld - len(f.held)
		if len(out) == 0 && room <= 0 {
			out = f.take(slots, true)
		}
		// Made under the same lock as done's count, so that no wake-up
		// between the two is lost.
		var wake chan struct{}
		if len(out) == 0 && len(f.held) > 0 {
			if f.wake == nil {
				f.wake = make(chan struct{})
			}
			wake = f.wake
		}
		f.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		// The queue is asked in the background, so that a held delivery
		// whose account gets room (done) runs at once rather than after
		// the queue's poll wait; the receive is never cut short, which
		// could strand a delivery on its way.
		if f.pending == nil {
			ch := make(chan received, 1)
			f.pending = ch
			n := min(slots, room)
			go func() {
				ds, err := f.q.Receive(ctx, n)
				ch <- received{ds, err}
			}()
		}
		select {
		case r := <-f.pending:
			f.pending = nil
			f.mu.Lock()
			f.held = append(f.held, r.ds...)
			out = f.take(slots, false)
			f.mu.Unlock()
			if len(out) > 0 || len(r.ds) == 0 || r.err != nil {
				return out, r.err
			}
		case <-wake:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// received is what a receive from the queue brought.
type received struct {
	ds  []*queue.Delivery
	err error
}

// take removes up to n held deliveries to run: each time one of the account
// with the fewest jobs running, the oldest first; under the cap unless
// overCap. f.mu must be held.
func (f *fairness) take(n int, overCap bool) []*queue.Delivery {
	var out []*queue.Delivery
	for len(out) < n {
		best := -1
		for i, d := range f.held {
			r := f.running[d.Msg.Account]
			if !overCap && r >= f.cfg.MaxPerAccount {
				continue
			}
			if best < 0 || r < f.running[f.held[best].Msg.Account] {
				best = i
			}
		}
		if best < 0 {
			break
		}
		d := f.held[best]
		f.held = append(f.held[:best], f.held[best+1:]...)
		f.running[d.Msg.Account]++
		out = append(out, d)
	}
	return out
}

// done tells that a delivery returned by receive has been settled.
func (f *fairness) done(d *queue.Delivery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running[d.Msg.Account]--; f.running[d.Msg.Account] <= 0 {
		delete(f.running, d.Msg.Account)
	}
	if f.wake != nil {
		close(f.wake)
		f.wake = nil
	}
}

// keepLeases renews the held deliveries' leases every extendEvery until ctx
// ends.
func (f *fairness) keepLeases(ctx context.Context) {
	t := time.NewTicker(f.extendEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		held := append([]*queue.Delivery(nil), f.held...)
		f.mu.Unlock()
		for _, d := range held {
			if err := d.Extend(ctx); err != nil && ctx.Err() == nil {
				f.log.Warn("workers: extend lease of a held job failed", logAttrs(d, "err", err)...)
			}
		}
	}
}

// drain removes and returns every held delivery, to be handed back.
func (f *fairness) drain() []*queue.Delivery {
	if f.pending != nil {
		r := <-f.pending // the receive ends with the receiving context
		f.pending = nil
		f.mu.Lock()
		f.held = append(f.held, r.ds...)
		f.mu.Unlock()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	held := f.held
	f.held = nil
	return held
}
