package records

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

const bucketKEKs = "keks"

// KEKStore keeps each account's key-encryption keys (package
// pipeline/encrypt/kek), wrapped by the account's key: never a plaintext key.
type KEKStore struct {
	keks storage.KV
}

// KEK is one wrapped key-encryption key of an account.
type KEK struct {
	ID      string    `json:"id"`
	Wrapped []byte    `json:"wrapped"`
	Created time.Time `json:"created"`
}

// CreateKEK stores account's wrapped KEK id; Conflict if the id is taken.
func (s *KEKStore) CreateKEK(ctx context.Context, account apiary.AccountID, id string, wrapped []byte) error {
	if err := account.Validate(); err != nil {
		return err
	}
	if id == "" || len(wrapped) == 0 {
		return apiary.E(apiary.KindInvalid, "records: create key-encryption key: id and wrapped key are required")
	}
	return create(ctx, s.keks, scopedKey(account, id), "key-encryption key",
		KEK{ID: id, Wrapped: wrapped, Created: time.Now().UTC()})
}

// KEK returns account's wrapped KEK id; NotFound for another account's KEK
// or one erased.
func (s *KEKStore) KEK(ctx context.Context, account apiary.AccountID, id string) ([]byte, error) {
	k, _, err := get[KEK](ctx, s.keks, scopedKey(account, id), "key-encryption key")
	return k.Wrapped, err
}

// UpdateKEK replaces account's wrapped KEK id (a re-wrap under a new
// account key version); NotFound if there is none.
func (s *KEKStore) UpdateKEK(ctx context.Context, account apiary.AccountID, id string, fn func(wrapped []byte) ([]byte, error)) error {
	_, err := update(ctx, s.keks, scopedKey(account, id), "key-encryption key", func(k *KEK) error {
		w, err := fn(k.Wrapped)
		if err != nil {
			return err
		}
		k.Wrapped = w
		return nil
	})
	return err
}

// KEKIDs returns the ids of account's KEKs.
func (s *KEKStore) KEKIDs(ctx context.Context, account apiary.AccountID) ([]string, error) {
	keys, err := s.keks.Keys(ctx, scopePrefix(account))
	if err != nil {
		return nil, fmt.Errorf("records: list key-encryption keys: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id, err := decodeID(k[len(scopePrefix(account)):])
		if err != nil {
			return nil, fmt.Errorf("records: list key-encryption keys: bad key: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// DeleteKEKs removes every KEK of account (its erasure); none is not an error.
func (s *KEKStore) DeleteKEKs(ctx context.Context, account apiary.AccountID) error {
	ids, err := s.KEKIDs(ctx, account)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.keks.Delete(ctx, scopedKey(account, id)); err != nil && !errors.Is(err, apiary.ErrNotFound) {
			return fmt.Errorf("records: delete key-encryption key: %w", err)
		}
	}
	return nil
}
