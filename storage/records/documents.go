package records

import (
	"context"
	"errors"
	"fmt"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// DocumentStore keeps the record of each ingested document.
type DocumentStore struct {
	docs storage.KV
}

// Document returns account's document id.
func (s *DocumentStore) Document(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) (apiary.DocumentRecord, error) {
	d, _, err := get[apiary.DocumentRecord](ctx, s.docs, scopedKey(account, string(id)), "document")
	return d, err
}

// PutDocument stores rec under its account unless a newer version is stored:
// a compare-and-swap that creates the record when there is none, replaces one
// whose Version is rec.Version or older (the same version is a redelivered
// job), and refuses with Conflict when the stored Version is greater.
// Concurrent puts of different versions end with the greatest one stored.
func (s *DocumentStore) PutDocument(ctx context.Context, rec apiary.DocumentRecord) error {
	if rec.Account == "" {
		return apiary.E(apiary.KindInvalid, "document record has no account")
	}
	key := scopedKey(rec.Account, string(rec.ID))
	for {
		_, err := update(ctx, s.docs, key, "document", func(cur *apiary.DocumentRecord) error {
			if cur.Version > rec.Version {
				return apiary.E(apiary.KindConflict, "document %q has a newer version", string(rec.ID))
			}
			*cur = rec
			return nil
		})
		if !errors.Is(err, apiary.ErrNotFound) {
			return err
		}
		err = create(ctx, s.docs, key, "document", rec)
		if !errors.Is(err, apiary.ErrConflict) {
			return err
		}
		// Created by someone else since the read: compare with theirs.
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// DeleteDocument removes account's document record; NotFound if there is none.
func (s *DocumentStore) DeleteDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) error {
	key := scopedKey(account, string(id))
	if _, err := s.docs.Get(ctx, key); err != nil {
		if errors.Is(err, apiary.ErrNotFound) {
			return apiary.E(apiary.KindNotFound, "no such document")
		}
		return fmt.Errorf("records: get document: %w", err)
	}
	if err := s.docs.Delete(ctx, key); err != nil {
		return fmt.Errorf("records: delete document: %w", err)
	}
	return nil
}

// Documents lists account's documents ordered by id and returns the cursor of
// the next page ("" when there is none).
func (s *DocumentStore) Documents(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]apiary.DocumentRecord, string, error) {
	ids, err := scopedIDs(ctx, s.docs, account, cursor, false)
	if err != nil {
		return nil, "", err
	}
	limit = clampLimit(limit)
	var out []apiary.DocumentRecord
	for _, id := range ids {
		if len(out) == limit {
			return out, encodeID(string(out[len(out)-1].ID)), nil
		}
		d, _, err := get[apiary.DocumentRecord](ctx, s.docs, scopedKey(account, id), "document")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, d)
	}
	return out, "", nil
}
