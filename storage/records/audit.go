package records

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

const bucketAudit = "audit"

// AuditEntry is one record of the audit log: who did what to what, and how
// it ended. It never holds a secret: the actor is a token id and its prefix,
// the target an id. Its JSON is also how GET /v1/audit shows it: the
// account is in the key, not in the JSON.
type AuditEntry struct {
	ID      string           `json:"id"`
	Time    time.Time        `json:"time"`
	Account apiary.AccountID `json:"-"`
	// Actor is the token id of the caller, "" when it could not be told
	// (a missing, malformed or unknown token).
	Actor       apiary.TokenID `json:"actor,omitempty"`
	ActorPrefix string         `json:"actor_prefix,omitempty"`
	Operator    bool           `json:"operator,omitempty"`
	Action      string         `json:"action"`
	Target      string         `json:"target,omitempty"`
	// Result is "success", "denied" (authentication or authorization
	// refused) or "failure" (the request was refused or failed).
	Result    string `json:"result"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id"`
}

// AuditStore keeps each account's audit log, keyed by account and a
// time-ordered id.
type AuditStore struct {
	audit storage.KV
}

// auditTimeLayout begins an entry's id: ids sort by time, and pruning reads
// the time from the key alone.
const auditTimeLayout = "20060102T150405.000000000Z"

// AppendAudit stores e, giving it an id (and a time, if it has none).
func (s *AuditStore) AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	e.ID = e.Time.Format(auditTimeLayout) + "_" + apiary.RandomID("aud_")
	if err := create(ctx, s.audit, scopedKey(e.Account, e.ID), "audit entry", e); err != nil {
		return e, err
	}
	return e, nil
}

// AuditLog lists account's audit entries, newest first, up to limit
// (default 50, max 500), and returns the cursor of the next page ("" when
// there is none).
func (s *AuditStore) AuditLog(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]AuditEntry, string, error) {
	ids, err := scopedIDs(ctx, s.audit, account, cursor, true)
	if err != nil {
		return nil, "", err
	}
	limit = clampLimit(limit)
	out := []AuditEntry{}
	for _, id := range ids {
		e, _, err := get[AuditEntry](ctx, s.audit, scopedKey(account, id), "audit entry")
		if errors.Is(err, apiary.ErrNotFound) {
			continue // pruned meanwhile
		}
		if err != nil {
			return nil, "", err
		}
		if len(out) == limit {
			return out, encodeID(out[len(out)-1].ID), nil
		}
		e.Account = account
		out = append(out, e)
	}
	return out, "", nil
}

// PruneAudit deletes every account's audit entries older than before and
// returns how many it deleted. It reads keys only, not entries.
func (s *AuditStore) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	keys, err := s.audit.Keys(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("records: list audit entries: %w", err)
	}
	n := 0
	for _, k := range keys {
		_, tok, ok := strings.Cut(k, ".")
		if !ok {
			continue
		}
		id, err := decodeID(tok)
		if err != nil || len(id) < len(auditTimeLayout) {
			continue
		}
		at, err := time.Parse(auditTimeLayout, id[:len(auditTimeLayout)])
		if err != nil || !at.Before(before) {
			continue
		}
		if err := s.audit.Delete(ctx, k); err != nil {
			return n, fmt.Errorf("records: prune audit entries: %w", err)
		}
		n++
	}
	return n, nil
}
