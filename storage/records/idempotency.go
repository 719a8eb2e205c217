package records

import (
	"context"
	"errors"
	"fmt"

	"github.com/apiaryhq/apiary"
)

// ReleaseIdempotencyKey unbinds account's key if it is bound to job, so that
// a request whose job could not be queued may be retried with the same key.
// A key bound to another job, or to none, is left alone.
func (s *JobStore) ReleaseIdempotencyKey(ctx context.Context, account apiary.AccountID, key string, job apiary.JobID) error {
	if err := s.fields.hash(ctx, account, idemFields(&key, new(string))...); err != nil {
		return err
	}
	k := scopedKey(account, key)
	prev, _, err := get[idemRecord](ctx, s.idem, k, "idempotency key")
	if errors.Is(err, apiary.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if prev.Job != job {
		return nil
	}
	if err := s.idem.Delete(ctx, k); err != nil {
		return fmt.Errorf("records: release idempotency key: %w", err)
	}
	return nil
}
