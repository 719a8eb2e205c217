package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// A deleted account takes no more writes. A request already past
// authentication when its account is deleted, or a worker finishing a
// step, would otherwise leave a record behind the deletion: sealed under
// the erased key, unreadable, and out of reach of the API for good. So
// every write of an account's record (its buckets all but the audit log)
// goes through a guard that refuses it, NotFound "account … is deleted",
// once the account is marked deleted, and takes back a write that landed
// while the mark was being set (it checks again after writing). The mark
// is set in memory by the deletion (DeleteAccountRecords) and, in every
// process, by the deletion's announcement (Store.Forget); it is kept
// durably as a tombstone (keyed by the time of the deletion, then the
// account), which Open loads (a restart still refuses) and
// SweepDeletedAccounts reads (a process that missed the announcement
// learns it, and whatever it wrote meanwhile is deleted). Only the newest
// DefaultDeletedAccounts are remembered: an account deleted before them
// takes writes again (from a request or job of it that many deletions
// late; its tokens, key and jobs are gone), and the sweep prunes its
// tombstone once it is past the sweep's window.

const bucketDeleted = "deleted_accounts"

// DefaultDeletedAccounts is how many deleted accounts a store remembers in
// memory: the most recently deleted.
const DefaultDeletedAccounts = 4096

// tombstone is the durable mark of a deleted account.
type tombstone struct {
	DeletedAt time.Time `json:"deleted_at"`
}

// deletedSet is the bounded in-memory set of deleted accounts.
type deletedSet struct {
	max     int
	mu      sync.RWMutex
	deleted map[apiary.AccountID]bool
	order   []apiary.AccountID // oldest first
}

func newDeletedSet(max int) *deletedSet {
	return &deletedSet{max: max, deleted: map[apiary.AccountID]bool{}}
}

// add marks account deleted; false when it was already.
func (d *deletedSet) add(account apiary.AccountID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.deleted[account] {
		return false
	}
	d.deleted[account] = true
	d.order = append(d.order, account)
	if len(d.order) > d.max {
		delete(d.deleted, d.order[0])
		d.order = d.order[1:]
	}
	return true
}

func (d *deletedSet) bound() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.max
}

func (d *deletedSet) has(account apiary.AccountID) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.deleted[account]
}

// errAccountDeleted is the refusal of a write for a deleted account.
func errAccountDeleted(account apiary.AccountID) error {
	return apiary.E(apiary.KindNotFound, "account %s is deleted", account)
}

// guardedKV refuses the writes of deleted accounts to its bucket. owner
// names the account a write belongs to ("" for none).
type guardedKV struct {
	storage.KV
	owner func(key string, value []byte) apiary.AccountID
	gone  *deletedSet
}

func (g guardedKV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	return g.write(ctx, key, value, func() (uint64, error) { return g.KV.Create(ctx, key, value) })
}

func (g guardedKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	return g.write(ctx, key, value, func() (uint64, error) { return g.KV.Update(ctx, key, value, rev) })
}

func (g guardedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return g.write(ctx, key, value, func() (uint64, error) { return g.KV.Put(ctx, key, value) })
}

// write runs w unless key's account is deleted, and takes its value back
// if the account was marked deleted while it ran: either the write ended
// before the mark, and the deletion (which deletes after marking) deletes
// it, or it sees the mark here.
func (g guardedKV) write(ctx context.Context, key string, value []byte, w func() (uint64, error)) (uint64, error) {
	account := g.owner(key, value)
	if account == "" {
		return w()
	}
	if g.gone.has(account) {
		return 0, errAccountDeleted(account)
	}
	rev, err := w()
	if err != nil || !g.gone.has(account) {
		return rev, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if derr := g.KV.Delete(ctx, key); derr != nil {
		return 0, fmt.Errorf("records: take back a deleted account's write: %w", errors.Join(errAccountDeleted(account), derr))
	}
	return 0, errAccountDeleted(account)
}

// Owners of a key, by how a bucket builds its keys.
func scopedOwner(key string, _ []byte) apiary.AccountID {
	tok, _, _ := strings.Cut(key, ".")
	return decodedAccount(tok)
}

func accountKeyOwner(key string, _ []byte) apiary.AccountID { return decodedAccount(key) }

// dueOwner: due entries are keyed by time first.
func dueOwner(key string, _ []byte) apiary.AccountID {
	_, rest, _ := strings.Cut(key, ".")
	return scopedOwner(rest, nil)
}

// tokenOwner: tokens are keyed by their hash; the record names its account.
func tokenOwner(_ string, value []byte) apiary.AccountID {
	var t struct {
		Account apiary.AccountID `json:"account_id"`
	}
	if json.Unmarshal(value, &t) != nil {
		return ""
	}
	return t.Account
}

func decodedAccount(tok string) apiary.AccountID {
	id, err := decodeID(tok)
	if err != nil {
		return ""
	}
	return apiary.AccountID(id)
}

// Forget marks account deleted in this process's memory: its writes are
// refused from now on. Every process calls it when a deletion is
// announced (a forgetter of cmd/apiary).
func (s *Store) Forget(account apiary.AccountID) { s.gone.add(account) }

// tombstoneKey is the key of account's tombstone: the time of its
// deletion first, so that the tombstones list in the order of deletion
// without a read of each.
func tombstoneKey(account apiary.AccountID, at time.Time) string {
	return fmt.Sprintf("%015d.%s", at.UnixMilli(), encodeID(string(account)))
}

// markDeleted marks account deleted, in memory and durably.
func (s *Store) markDeleted(ctx context.Context, account apiary.AccountID, now time.Time) error {
	s.gone.add(account)
	b, err := json.Marshal(tombstone{DeletedAt: now.UTC()})
	if err != nil {
		return fmt.Errorf("records: encode tombstone: %w", err)
	}
	if _, err := s.tombstones.Put(ctx, tombstoneKey(account, now), b); err != nil {
		return fmt.Errorf("records: mark account %s deleted: %w", account, err)
	}
	return nil
}

// loadDeleted marks deleted in memory the accounts whose tombstones are
// stored (the most recently deleted, when there are more than the bound)
// and returns those it had not heard of (learned) and, with them, those
// deleted since since (sweep: all of them, however many, as a bulk
// deletion may delete more accounts within the window than the bound),
// and the keys of the tombstones it read for neither: older than since
// and than the bound's most recent, no store reads them again.
func (s *Store) loadDeleted(ctx context.Context, since time.Time) (sweep, learned []apiary.AccountID, unread []string, err error) {
	keys, err := s.tombstones.Keys(ctx, "") // oldest first
	if err != nil {
		return nil, nil, nil, fmt.Errorf("records: list deleted accounts: %w", err)
	}
	remembered := max(len(keys)-s.gone.bound(), 0) // the first key kept in memory
	after := fmt.Sprintf("%015d.", since.UnixMilli())
	swept := map[apiary.AccountID]bool{}
	for i, k := range keys {
		_, tok, ok := strings.Cut(k, ".")
		a := decodedAccount(tok)
		if !ok || a == "" {
			continue
		}
		if i < remembered && k < after {
			unread = append(unread, k)
			continue
		}
		news := i >= remembered && s.gone.add(a)
		if news {
			learned = append(learned, a)
		}
		if (news || k >= after) && !swept[a] {
			swept[a] = true
			sweep = append(sweep, a)
		}
	}
	return sweep, learned, unread, nil
}

// SweepDeletedAccounts learns the accounts deleted by any process (their
// writes are refused here from now on) and deletes again the records of
// those it had not heard of (it missed the announcement) and of those
// deleted since since: what a process wrote for an account between the
// deletion's pass over its records and its hearing of it. It returns how
// many accounts it swept, and those it learned of: the caller forgets
// them everywhere else, as the announcement it missed would have had it.
func (s *Store) SweepDeletedAccounts(ctx context.Context, since time.Time) (swept int, learned []apiary.AccountID, err error) {
	recent, learned, unread, err := s.loadDeleted(ctx, since)
	if err != nil {
		return 0, nil, err
	}
	// One pass for them all: the tokens and the due deliveries are listed
	// whole, whatever the account.
	if err := s.deleteAccountRecords(ctx, recent...); err != nil {
		return 0, learned, err
	}
	// The tombstones no store reads again go, so that the listing above
	// (every minute, in every process) stays as long as the bound.
	for _, k := range unread {
		if err := s.tombstones.Delete(ctx, k); err != nil && !errors.Is(err, apiary.ErrNotFound) {
			return len(recent), learned, fmt.Errorf("records: prune tombstones: %w", err)
		}
	}
	return len(recent), learned, nil
}
