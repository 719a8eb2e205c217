package local

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage"
)

// AtRestKeys hands the store each account's key for what it keeps at rest
// (Options.Keys).
type AtRestKeys interface {
	// Key returns account's 256-bit key, the same one every time. The store
	// does not change it, and keeps it only while it opens the log or
	// compacts it. An error of kind NotFound says the key is gone for good
	// (the account's key was erased): the store drops the account's
	// records. Any other error fails the operation that asked.
	Key(ctx context.Context, account apiary.AccountID) ([]byte, error)
}

// keyTimeout bounds each key lookup of Open and of a compaction. They run
// under a context of their own: Open takes none, and a compaction runs for
// a write that has already succeeded, whose caller may be gone.
const keyTimeout = 30 * time.Second

// recordAAD is what a record's box is bound to: the account and every field
// that says where the record belongs, so that a box moved to another
// account, chunk, document, version, index or model does not open.
func recordAAD(account apiary.AccountID, r *storage.VectorRecord) []byte {
	return encrypt.AAD("apiary/local/record/v1", string(account), string(r.ChunkID), string(r.Document),
		strconv.FormatUint(r.Version, 10), strconv.Itoa(r.Index), r.Model)
}

// sealRecord seals r's vector and terms under key.
func sealRecord(key []byte, account apiary.AccountID, r *storage.VectorRecord) ([]byte, error) {
	plain := make([]byte, 0, 4*len(r.Vector)+(1+2*len(r.Terms))*binary.MaxVarintLen32)
	plain = appendTerms(appendVector(plain, r.Vector), r.Terms)
	box, err := encrypt.Seal(key, plain, recordAAD(account, r))
	if err != nil {
		return nil, fmt.Errorf("seal record %s: %w", r.ChunkID, err)
	}
	return box, nil
}

// openRecord opens box into r's Vector (of dim) and Terms. A box that does
// not open under key is the error of encrypt.Open (kind Permanent); one
// that opens but does not decode is errDecode.
func openRecord(key []byte, r *storage.VectorRecord, box []byte, dim int) error {
	plain, err := encrypt.Open(key, box, recordAAD(r.Account, r))
	if err != nil {
		return err
	}
	d := &decoder{b: plain}
	r.Vector = d.vector(dim)
	r.Terms = d.terms()
	return d.end()
}

// keyFunc gives an account's key, nil (and no error) when it is gone.
type keyFunc func(apiary.AccountID) ([]byte, error)

// lookupKey asks keys for account's key: nil (and no error) when it is gone.
func lookupKey(keys AtRestKeys, account apiary.AccountID) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyTimeout)
	defer cancel()
	key, err := keys.Key(ctx, account)
	switch {
	case apiary.KindOf(err) == apiary.KindNotFound:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("key for account %s: %w", account, err)
	case len(key) != encrypt.KeySize:
		return nil, apiary.E(apiary.KindInvalid, "key for account %s: %d bytes, want %d", account, len(key), encrypt.KeySize)
	}
	return key, nil
}

// replayKeys opens the records of one Open's replay, asking Options.Keys
// for each account's key once.
type replayKeys struct {
	keys     AtRestKeys // nil: the store keeps records in the clear
	cache    map[apiary.AccountID][]byte
	gone     map[apiary.AccountID]int // records left out: the account's key is gone
	unopened map[apiary.AccountID]int // records left out: they do not open under the key
	clear    bool                     // the log holds records in the clear
}

func newReplayKeys(keys AtRestKeys) *replayKeys {
	return &replayKeys{keys: keys, cache: map[apiary.AccountID][]byte{}, gone: map[apiary.AccountID]int{}, unopened: map[apiary.AccountID]int{}}
}

// key is a keyFunc, remembering every answer.
func (k *replayKeys) key(account apiary.AccountID) ([]byte, error) {
	if key, ok := k.cache[account]; ok {
		return key, nil
	}
	key, err := lookupKey(k.keys, account)
	if err != nil {
		return nil, err
	}
	k.cache[account] = key
	return key, nil
}

// records returns o's records, opened, without those it cannot open.
func (k *replayKeys) records(o op) ([]storage.VectorRecord, error) {
	if k.keys == nil {
		if o.kind == opUpsertSealed {
			return nil, apiary.E(apiary.KindInvalid, "the log holds sealed records: open the store with Options.Keys")
		}
		return o.recs, nil
	}
	key, err := k.key(o.account)
	if err != nil {
		return nil, err
	}
	if key == nil {
		k.gone[o.account] += len(o.recs)
		return nil, nil
	}
	if o.kind != opUpsertSealed {
		k.clear = true
		return o.recs, nil
	}
	kept := o.recs[:0]
	for i := range o.recs {
		err := openRecord(key, &o.recs[i], o.boxes[i], o.dim)
		switch {
		case errors.Is(err, errDecode):
			return nil, fmt.Errorf("record %s: %w", o.recs[i].ChunkID, err)
		case err != nil:
			k.unopened[o.account]++
			continue
		}
		kept = append(kept, o.recs[i])
	}
	return kept, nil
}

// rewrite reports whether the log should be compacted at once: it holds
// records in the clear, or records left out.
func (k *replayKeys) rewrite() bool {
	return k.keys != nil && (k.clear || len(k.gone) > 0 || len(k.unopened) > 0)
}

// warn logs, once per account, the records left out.
func (k *replayKeys) warn(log *slog.Logger, dir string) {
	for _, account := range slices.Sorted(maps.Keys(k.gone)) {
		log.Warn("the account's key is gone: its vectors cannot be opened and are dropped",
			"dir", dir, "account", account, "records", k.gone[account])
	}
	for _, account := range slices.Sorted(maps.Keys(k.unopened)) {
		log.Warn("vectors that do not open under their account's key are dropped",
			"dir", dir, "account", account, "records", k.unopened[account])
	}
}
