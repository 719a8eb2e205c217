package records

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

const bucketConnections = "connections"

// ConnectionStatus is where an OAuth connection is in its life.
type ConnectionStatus string

const (
	ConnectionPending        ConnectionStatus = "pending"         // authorization started, not completed
	ConnectionActive         ConnectionStatus = "active"          // tokens stored
	ConnectionReauthRequired ConnectionStatus = "reauth_required" // the provider refused the grant
	ConnectionRevoked        ConnectionStatus = "revoked"         // disconnected; no tokens stored
)

// Connection is an account's OAuth connection to a provider. Its tokens are
// never stored in the clear: Sealed is an envelope (pipeline/encrypt) that
// holds the data key wrapped by the account's key and the tokens sealed
// with it, bound to the account and the connection. Clearing Sealed
// destroys the tokens and their key together.
type Connection struct {
	ID       string           `json:"id"`
	Account  apiary.AccountID `json:"account_id"`
	Provider string           `json:"provider"`
	Status   ConnectionStatus `json:"status"`
	// Sealed holds the access and refresh tokens; empty unless active.
	Sealed []byte `json:"sealed,omitempty"`
	// AccessExpiry is when the stored access token expires (zero: unknown).
	AccessExpiry time.Time `json:"access_expiry,omitzero"`
	// Flow is the authorization in progress; nil once it completed or
	// before it started.
	Flow *ConnectionFlow `json:"flow,omitempty"`
	// Lease is held by the one process refreshing the tokens.
	Lease         *ConnectionLease `json:"lease,omitempty"`
	CreatedAt     time.Time        `json:"created_at"`
	UpdatedAt     time.Time        `json:"updated_at"`
	LastRefreshed *time.Time       `json:"last_refreshed,omitempty"`
	// SyncCursors are where each source's sync resumes its change feed,
	// by source fingerprint, each sealed under the account's key.
	SyncCursors map[string][]byte `json:"sync_cursors,omitempty"`
	// Schedule is the connection's recurring sync, if it has one.
	Schedule *ConnectionSchedule `json:"schedule,omitempty"`
}

// ConnectionSchedule is a connection's recurring sync: every Every, one
// process claims the run (ClaimSchedule) and submits a sync of Source.
type ConnectionSchedule struct {
	Every time.Duration `json:"every"`
	// Source is what each run syncs (the source's location, items, site,
	// limits and webhook URL), sealed under the account's key: it names the
	// customer's folders and files.
	Source []byte `json:"source"`
	// NextRun is when the next run is due.
	NextRun time.Time `json:"next_run"`
	// LastRun is when a run was last claimed; LastJob the last job a run
	// submitted (a run skipped because that job was unfinished leaves it).
	LastRun   time.Time    `json:"last_run,omitzero"`
	LastJob   apiary.JobID `json:"last_job,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
}

// ConnectionFlow is a one-time authorization in progress. Only the hash of
// its state is kept; the PKCE verifier is sealed like the tokens.
type ConnectionFlow struct {
	StateHash      string    `json:"state_hash"`
	Challenge      string    `json:"challenge"`
	SealedVerifier []byte    `json:"sealed_verifier"`
	ExpiresAt      time.Time `json:"expires_at"`
}

// ConnectionLease names the process refreshing a connection's tokens and
// until when it may.
type ConnectionLease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// ConnectionStore keeps accounts' OAuth connections.
type ConnectionStore struct {
	connections storage.KV
	gates       storage.KV // each account's gate of pending connections
}

const bucketConnectionGates = "connection_gates"

// pendingGateKey is the key of account's one gate record.
func pendingGateKey(account apiary.AccountID) string { return scopedKey(account, "pending") }

// PendingGate returns the revision of account's gate of pending
// connections (0: never passed). A process beginning a connection reads
// it before counting the account's pending connections, and passes it
// (PassPendingGate) after creating its own: of two beginning at once, one
// passes and the other learns that it counted too early.
func (s *ConnectionStore) PendingGate(ctx context.Context, account apiary.AccountID) (uint64, error) {
	e, err := s.gates.Get(ctx, pendingGateKey(account))
	switch {
	case errors.Is(err, apiary.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("records: get pending connections gate: %w", err)
	}
	return e.Revision, nil
}

// PassPendingGate advances account's gate from rev (PendingGate);
// Conflict when another process passed it since.
func (s *ConnectionStore) PassPendingGate(ctx context.Context, account apiary.AccountID, rev uint64) error {
	var err error
	if rev == 0 {
		_, err = s.gates.Create(ctx, pendingGateKey(account), []byte("{}"))
	} else {
		_, err = s.gates.Update(ctx, pendingGateKey(account), []byte("{}"), rev)
	}
	switch {
	case errors.Is(err, apiary.ErrConflict):
		return apiary.Wrap(err, apiary.KindConflict, "another authorization began at the same time")
	case err != nil:
		return fmt.Errorf("records: pass pending connections gate: %w", err)
	}
	return nil
}

// CreateConnection stores a new connection; Conflict if the id is taken.
func (s *ConnectionStore) CreateConnection(ctx context.Context, c Connection) error {
	if c.Account == "" || c.ID == "" {
		return apiary.E(apiary.KindInvalid, "connection needs an account and an id")
	}
	return create(ctx, s.connections, scopedKey(c.Account, c.ID), "connection", c)
}

// Connection returns account's connection id; NotFound for another account's.
func (s *ConnectionStore) Connection(ctx context.Context, account apiary.AccountID, id string) (Connection, error) {
	if id == "" {
		return Connection{}, apiary.E(apiary.KindNotFound, "no such connection")
	}
	c, _, err := get[Connection](ctx, s.connections, scopedKey(account, id), "connection")
	return c, err
}

// UpdateConnection applies fn to account's connection id and stores the
// result, retrying on concurrent writes (compare-and-swap on the record's
// revision); ErrNoChange from fn writes nothing.
func (s *ConnectionStore) UpdateConnection(ctx context.Context, account apiary.AccountID, id string, fn func(*Connection) error) (Connection, error) {
	if id == "" {
		return Connection{}, apiary.E(apiary.KindNotFound, "no such connection")
	}
	return update(ctx, s.connections, scopedKey(account, id), "connection", fn)
}

// Connections lists account's connections by id, up to limit (default 50,
// max 500), after cursor, and returns the cursor of the next page ("" when
// there is none).
func (s *ConnectionStore) Connections(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]Connection, string, error) {
	ids, err := scopedIDs(ctx, s.connections, account, cursor, false)
	if err != nil {
		return nil, "", err
	}
	limit = clampLimit(limit)
	out := []Connection{}
	for _, id := range ids {
		if len(out) == limit {
			return out, encodeID(out[len(out)-1].ID), nil
		}
		c, _, err := get[Connection](ctx, s.connections, scopedKey(account, id), "connection")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, c)
	}
	return out, "", nil
}

// DeleteConnection removes account's connection id; NotFound if none.
func (s *ConnectionStore) DeleteConnection(ctx context.Context, account apiary.AccountID, id string) error {
	if _, err := s.Connection(ctx, account, id); err != nil {
		return err
	}
	if err := s.connections.Delete(ctx, scopedKey(account, id)); err != nil {
		return fmt.Errorf("records: delete connection: %w", err)
	}
	return nil
}

// DueSchedules lists connections, across accounts, whose schedule is due
// at now, up to limit. Listing is no claim: see ClaimSchedule.
func (s *ConnectionStore) DueSchedules(ctx context.Context, now time.Time, limit int) ([]Connection, error) {
	keys, err := s.connections.Keys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("records: list connections: %w", err)
	}
	var out []Connection
	for _, k := range keys {
		if len(out) == limit {
			break
		}
		c, _, err := get[Connection](ctx, s.connections, k, "connection")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if c.Schedule != nil && !c.Schedule.NextRun.After(now) {
			out = append(out, c)
		}
	}
	return out, nil
}

// PruneRevokedConnections deletes, across accounts, the connections
// revoked (disconnected) before before, and returns how many it deleted.
// A revoked connection holds no token: what is left is its id, provider
// and dates.
func (s *ConnectionStore) PruneRevokedConnections(ctx context.Context, before time.Time) (int, error) {
	keys, err := s.connections.Keys(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("records: list connections: %w", err)
	}
	n := 0
	var unread []error // one record that cannot be read must not hold up the rest
	for _, k := range keys {
		c, _, err := get[Connection](ctx, s.connections, k, "connection")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			unread = append(unread, err)
			continue
		}
		if c.Status != ConnectionRevoked || !c.UpdatedAt.Before(before) {
			continue
		}
		if err := s.connections.Delete(ctx, k); err != nil {
			return n, fmt.Errorf("records: delete revoked connection: %w", err)
		}
		n++
	}
	if len(unread) > 0 {
		return n, fmt.Errorf("records: %d connection records could not be read (the others were pruned): %w", len(unread), errors.Join(unread...))
	}
	return n, nil
}

// ClaimSchedule claims the due run of account's connection id at now:
// with a compare-and-swap on the record it moves the schedule's next run
// one interval on (past now: missed runs are not made up) and returns the
// connection as claimed, true. Of several processes claiming the same run
// one gets true; the others, and any claim of a schedule not due (or gone),
// get false.
func (s *ConnectionStore) ClaimSchedule(ctx context.Context, account apiary.AccountID, id string, now time.Time) (Connection, bool, error) {
	claimed := false
	c, err := s.UpdateConnection(ctx, account, id, func(c *Connection) error {
		claimed = false
		sc := c.Schedule
		if sc == nil || sc.NextRun.After(now) || sc.Every <= 0 {
			return ErrNoChange
		}
		next := sc.NextRun.Add(sc.Every)
		if !next.After(now) {
			next = now.Add(sc.Every)
		}
		sc.NextRun, sc.LastRun = next, now
		claimed = true
		return nil
	})
	if err != nil {
		return Connection{}, false, err
	}
	return c, claimed, nil
}
