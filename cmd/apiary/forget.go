package main

import (
	"context"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
)

// A deleted account is forgotten by every process at once. The process
// that deletes it (DELETE /v1/accounts/{id} or /v1/account, in the API)
// erases its key and then announces its id on the bus
// (events.Deletions); every process, whatever its role, listens from its
// start and, told, drops every key of the account it keeps in memory (the
// caches gathered in forgets) and stops the account's jobs running in its
// pool (workers.DeletedAccounts, also in forgets). A process that misses the signal
// (stopped, or cut off from NATS at that moment) learns the deletion from
// its tombstone at its next sweep (below) and forgets the account then;
// failing that, its keys expire as before: within --kek-max-age (10 min),
// the lexical keys' cache lifetime (10 min) and KMS data keys' (5 min).
//
// The record store is one of the forgetters: told, it refuses every
// further write of the account (storage/records, deleted.go). The
// deletion also leaves a durable tombstone, which every process reads
// when it opens the store and every deletionSweepEvery
// (deletedSweeperComponent): a process that missed the signal refuses the
// account's writes from then on, and what it wrote in between is deleted.

// forgetter is a cache of accounts' keys that can drop one account's, or
// anything else that must let go of a deleted account.
type forgetter interface{ Forget(apiary.AccountID) }

// forgets is every forgetter of a process: each cache of account keys it
// holds, and its workers' DeletedAccounts.
type forgets struct {
	mu  sync.Mutex
	all []forgetter
}

// add makes f one of the caches forget drops.
func (fs *forgets) add(f forgetter) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.all = append(fs.all, f)
}

// forget drops account's keys from every cache.
func (fs *forgets) forget(account apiary.AccountID) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, f := range fs.all {
		f.Forget(account)
	}
}

// listenForDeletions has this process forget each account another (or
// this) process announces deleted, from now until the app closes.
func (a *app) listenForDeletions() error {
	stop, err := a.bus.OnDeleted(func(account apiary.AccountID) {
		a.forgets.forget(account)
		a.log.Info("deleted account's keys dropped from memory", "account", account)
	})
	if err != nil {
		return err
	}
	a.lc.start(context.Background(), closer("deletion listener", stop))
	return nil
}

// deletionSweepEvery is how often every process reads the tombstones of
// deleted accounts; deletionSweepWindow is how long after its deletion an
// account's records are deleted again at each sweep, for what a process
// wrote before it was told (a process that missed the announcement sweeps
// the account when it reads its tombstone, however old).
const (
	deletionSweepEvery  = time.Minute
	deletionSweepWindow = 10 * time.Minute
)

// deletedSweeperComponent sweeps after account deletions (see above).
func (a *app) deletedSweeperComponent() component {
	return component{name: "deleted account sweeper", run: func(ctx context.Context) error {
		t := time.NewTicker(deletionSweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			if err := a.sweepDeletedAccounts(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("sweeping after account deletions failed; retrying at the next interval", "err", err)
			}
		}
	}}
}

// sweepDeletedAccounts runs one sweep after account deletions, and
// forgets everywhere the deletions it learns of (this process missed
// their announcement), as the announcement would have.
func (a *app) sweepDeletedAccounts(ctx context.Context) error {
	_, learned, err := a.recs.SweepDeletedAccounts(ctx, time.Now().Add(-deletionSweepWindow))
	for _, account := range learned {
		a.forgets.forget(account)
		a.log.Info("deleted account's keys dropped from memory, its deletion learned from its tombstone", "account", account)
	}
	return err
}
