package connections

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
)

// MaxSyncCursors bounds the change-feed cursors kept per connection (one
// per source synced); past it, an arbitrary one is dropped, and that
// source's next sync lists it whole.
const MaxSyncCursors = 64

// SyncCursor returns where the sync of source (a fingerprint) through
// account's connection id resumes its change feed; "" when it never
// synced. A connection that is not active cannot be read from: its error.
func (s *Service) SyncCursor(ctx context.Context, account apiary.AccountID, id, source string) (connectors.Cursor, error) {
	c, err := s.recs.Connection(ctx, account, id)
	if err != nil {
		return "", err
	}
	if err := usable(c); err != nil {
		return "", err
	}
	sealed, ok := c.SyncCursors[source]
	if !ok {
		return "", nil
	}
	b, err := encrypt.OpenEnvelope(ctx, s.keys, account, encCtx(id, "sync "+source), sealed)
	if err != nil {
		return "", fmt.Errorf("connections: open the sync cursor of %s: %w", id, err)
	}
	return connectors.Cursor(b), nil
}

// SaveSyncCursor keeps cur as where the next sync of source through
// account's connection id resumes, sealed (a vendor's cursor may name
// drives, folders or commits).
func (s *Service) SaveSyncCursor(ctx context.Context, account apiary.AccountID, id, source string, cur connectors.Cursor) error {
	sealed, err := encrypt.SealEnvelope(ctx, s.keys, account, encCtx(id, "sync "+source), []byte(cur))
	if err != nil {
		return fmt.Errorf("connections: seal the sync cursor of %s: %w", id, err)
	}
	_, err = s.recs.UpdateConnection(ctx, account, id, func(c *records.Connection) error {
		if err := usable(*c); err != nil {
			return err // disconnected meanwhile: nothing to keep
		}
		if c.SyncCursors == nil {
			c.SyncCursors = map[string][]byte{}
		}
		if _, ok := c.SyncCursors[source]; !ok && len(c.SyncCursors) >= MaxSyncCursors {
			delete(c.SyncCursors, slices.Sorted(maps.Keys(c.SyncCursors))[0])
		}
		c.SyncCursors[source] = sealed
		return nil
	})
	return err
}
