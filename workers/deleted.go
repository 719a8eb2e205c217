package workers

import (
	"context"
	"sync"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// DefaultDeletedAccounts is how many deleted accounts a DeletedAccounts
// remembers by default.
const DefaultDeletedAccounts = 4096

// DeletedAccounts stops the work of accounts announced deleted: Forget
// (called when a deletion is announced, in every process) cancels the
// account's running jobs, and its Middleware gives up on them, and on any
// job of the account delivered later, with the reason "account … is
// deleted", instead of letting them run on until their next use of the
// erased key fails. It remembers the most recent deletions only (a bound):
// a job of an account deleted longer ago fails on its key. Safe for
// concurrent use.
type DeletedAccounts struct {
	max int

	mu      sync.Mutex
	deleted map[apiary.AccountID]bool
	order   []apiary.AccountID // deleted, oldest first
	running map[apiary.AccountID]map[*context.CancelCauseFunc]bool
}

// NewDeletedAccounts remembers up to max deleted accounts (0:
// DefaultDeletedAccounts).
func NewDeletedAccounts(max int) *DeletedAccounts {
	if max <= 0 {
		max = DefaultDeletedAccounts
	}
	return &DeletedAccounts{max: max, deleted: map[apiary.AccountID]bool{}, running: map[apiary.AccountID]map[*context.CancelCauseFunc]bool{}}
}

// accountDeleted is the reason a job of a deleted account is given up.
func accountDeleted(account apiary.AccountID) error {
	return apiary.Permanent(apiary.E(apiary.KindPermanent, "account %s is deleted", account))
}

// Forget marks account deleted and cancels its running jobs.
func (g *DeletedAccounts) Forget(account apiary.AccountID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.deleted[account] {
		g.deleted[account] = true
		g.order = append(g.order, account)
		if len(g.order) > g.max {
			delete(g.deleted, g.order[0])
			g.order = g.order[1:]
		}
	}
	for cancel := range g.running[account] {
		(*cancel)(accountDeleted(account))
	}
}

// Middleware gives up on a job of a deleted account before it runs, and
// on one running when its account is deleted.
func (g *DeletedAccounts) Middleware(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, d *queue.Delivery) error {
		account := d.Msg.Account
		jobCtx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		if !g.start(account, &cancel) {
			return accountDeleted(account)
		}
		defer g.end(account, &cancel) // also when the handler panics
		err := next.Handle(jobCtx, d)
		if err != nil && ctx.Err() == nil && jobCtx.Err() != nil {
			return context.Cause(jobCtx) // stopped by Forget
		}
		return err
	})
}

// start registers a running job's cancel, unless its account is deleted.
func (g *DeletedAccounts) start(account apiary.AccountID, cancel *context.CancelCauseFunc) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deleted[account] {
		return false
	}
	if g.running[account] == nil {
		g.running[account] = map[*context.CancelCauseFunc]bool{}
	}
	g.running[account][cancel] = true
	return true
}

func (g *DeletedAccounts) end(account apiary.AccountID, cancel *context.CancelCauseFunc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.running[account], cancel)
	if len(g.running[account]) == 0 {
		delete(g.running, account)
	}
}
