// Package records keeps Apiary's records as JSON in key-value buckets, one
// store per aggregate, each owning its buckets: AccountStore (accounts,
// tokens, each account's admin set and wrapped lexical key), JobStore (jobs, their document
// outcomes, idempotency keys), DocumentStore (ingested documents),
// WebhookStore (endpoints and default secrets), DeliveryStore (webhook
// deliveries, with a due-time index for retries) and ConnectionStore (OAuth
// connections, their tokens sealed) and AuditStore (each account's audit
// log). Open opens them all as
// one Store; consumers declare the methods they use as interfaces of their
// own.
//
// Tenancy lives here, in one place: every account-owned record is stored under
// a key built by scopedKey(account, id), and every read, write and listing of
// such a record goes through it. A caller holding another account's id gets
// NotFound, exactly as for an id that does not exist.
//
// Promises: Create* never overwrite (Conflict); every Update* is a
// compare-and-swap loop, so concurrent updates never lose each other;
// listings are ordered by id (job ids sort by creation time) and paged with an
// opaque cursor.
package records

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// Bucket names.
const (
	bucketAccounts    = "accounts"
	bucketTokens      = "tokens"
	bucketJobs        = "jobs"
	bucketIdempotency = "idempotency"
	bucketDocuments   = "documents"
	bucketOutcomes    = "outcomes"
	bucketAdminSets   = "admin_sets"
	bucketTokenUses   = "token_uses"
	bucketLexicalKeys = "lexical_keys"
)

// Store is the record store, one part per aggregate, each owning its
// buckets. The composition root opens it and hands each consumer the part
// it needs; consumers declare the few methods they use as an interface of
// their own, which a part (or the whole Store, whose methods are its
// parts') satisfies. Safe for concurrent use.
type Store struct {
	*AccountStore    // accounts and their tokens (accounts.go, tokens.go)
	*JobStore        // jobs, their document outcomes and idempotency keys
	*DocumentStore   // ingested documents (documents.go)
	*WebhookStore    // webhook endpoints and default secrets (webhooks.go)
	*DeliveryStore   // webhook deliveries and their due index (webhooks.go)
	*ConnectionStore // OAuth connections, their sealed tokens (connections.go)
	*AuditStore      // each account's audit log (audit.go)
	*KEKStore        // accounts' wrapped key-encryption keys (keks.go)

	gone       *deletedSet // accounts whose writes are refused (deleted.go)
	tombstones storage.KV  // their durable marks
}

// SealedBuckets are the buckets whose values hold wrapped keys or sealed
// data: a KV store that can erase what an update replaces should do so in
// these (natskv.Config.EraseReplaced); the others (jobs above all) are
// written often and hold nothing that opens a document.
var SealedBuckets = []string{bucketDocuments, bucketConnections, bucketWebhooks, bucketWebhookSecrets, bucketLexicalKeys, bucketKEKs}

// Open opens (creating on first use) the record buckets in kvs.
func Open(ctx context.Context, kvs storage.KVStore) (*Store, error) {
	s := &Store{AccountStore: &AccountStore{}, JobStore: &JobStore{}, DocumentStore: &DocumentStore{},
		WebhookStore: &WebhookStore{}, DeliveryStore: &DeliveryStore{}, ConnectionStore: &ConnectionStore{},
		AuditStore: &AuditStore{}, KEKStore: &KEKStore{}}
	err := openBuckets(ctx, kvs, map[string]*storage.KV{
		bucketAccounts:        &s.accounts,
		bucketTokens:          &s.tokens,
		bucketAdminSets:       &s.admins,
		bucketTokenUses:       &s.uses,
		bucketLexicalKeys:     &s.lexKeys,
		bucketJobs:            &s.jobs,
		bucketIdempotency:     &s.idem,
		bucketOutcomes:        &s.outcomes,
		bucketDocuments:       &s.docs,
		bucketWebhooks:        &s.webhooks,
		bucketWebhookSecrets:  &s.secrets,
		bucketDeliveries:      &s.deliveries,
		bucketDue:             &s.due,
		bucketConnections:     &s.connections,
		bucketConnectionGates: &s.gates,
		bucketAudit:           &s.audit,
		bucketKEKs:            &s.keks,
		bucketDeleted:         &s.tombstones,
	})
	if err != nil {
		return nil, err
	}
	// Every bucket of account data but the audit log refuses the writes of
	// a deleted account (deleted.go).
	s.gone = newDeletedSet(DefaultDeletedAccounts)
	for _, g := range []struct {
		owner func(key string, value []byte) apiary.AccountID
		kvs   []*storage.KV
	}{
		{scopedOwner, []*storage.KV{&s.admins, &s.uses, &s.lexKeys, &s.jobs, &s.idem, &s.outcomes, &s.docs,
			&s.webhooks, &s.deliveries, &s.connections, &s.gates, &s.keks}},
		{accountKeyOwner, []*storage.KV{&s.accounts, &s.secrets}},
		{dueOwner, []*storage.KV{&s.due}},
		{tokenOwner, []*storage.KV{&s.tokens}},
	} {
		for _, kv := range g.kvs {
			*kv = guardedKV{KV: *kv, owner: g.owner, gone: s.gone}
		}
	}
	if _, _, _, err := s.loadDeleted(ctx, time.Now()); err != nil {
		return nil, err
	}
	return s, nil
}

// openBuckets opens each named bucket of kvs into its KV.
func openBuckets(ctx context.Context, kvs storage.KVStore, buckets map[string]*storage.KV) error {
	for name, kv := range buckets {
		b, err := kvs.Bucket(ctx, name)
		if err != nil {
			return fmt.Errorf("records: open bucket %s: %w", name, err)
		}
		*kv = b
	}
	return nil
}

// encodeID turns an arbitrary id into one key token.
func encodeID(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func decodeID(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	return string(b), err
}

// scopedKey is the one place where an account-owned record's key is built.
func scopedKey(account apiary.AccountID, id string) string {
	return encodeID(string(account)) + "." + encodeID(id)
}

// scopePrefix is the key prefix of all of account's records in a bucket.
func scopePrefix(account apiary.AccountID) string { return encodeID(string(account)) + "." }

func get[T any](ctx context.Context, kv storage.KV, key, what string) (T, uint64, error) {
	var v T
	e, err := kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, apiary.ErrNotFound) {
			return v, 0, apiary.Wrap(err, apiary.KindNotFound, "no such %s", what)
		}
		return v, 0, fmt.Errorf("records: get %s: %w", what, err)
	}
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return v, 0, fmt.Errorf("records: decode %s: %w", what, err)
	}
	return v, e.Revision, nil
}

func create(ctx context.Context, kv storage.KV, key, what string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("records: encode %s: %w", what, err)
	}
	if _, err := kv.Create(ctx, key, b); err != nil {
		if errors.Is(err, apiary.ErrConflict) {
			return apiary.Wrap(err, apiary.KindConflict, "%s already exists", what)
		}
		return fmt.Errorf("records: create %s: %w", what, err)
	}
	return nil
}

// --- jobs ---

// JobStore keeps jobs, the outcome of each of their documents and the
// Idempotency-Keys that name them.
type JobStore struct {
	jobs, idem storage.KV
	outcomes   storage.KV // one per document of a job
	fields     *fieldSealer
}

// CreateJob stores a new job; Conflict if the id is taken.
func (s *JobStore) CreateJob(ctx context.Context, j apiary.Job) error {
	if err := s.fields.sealJob(ctx, &j); err != nil {
		return err
	}
	return create(ctx, s.jobs, scopedKey(j.Account, string(j.ID)), "job", j)
}

// Job returns account's job id; NotFound for another account's job.
func (s *JobStore) Job(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error) {
	return s.getJob(ctx, scopedKey(account, string(id)))
}

// getJob reads the job at key, its sealed fields open.
func (s *JobStore) getJob(ctx context.Context, key string) (apiary.Job, error) {
	j, _, err := get[apiary.Job](ctx, s.jobs, key, "job")
	if err != nil {
		return j, err
	}
	return j, s.fields.openJob(ctx, &j)
}

// ErrNoChange, returned by an UpdateJob callback, ends the update without writing.
var ErrNoChange = errors.New("records: no change")

// UpdateJob applies fn to the current job and stores the result, retrying on
// concurrent writes. If fn returns ErrNoChange nothing is written and the
// current job is returned; any other error is returned as is.
func (s *JobStore) UpdateJob(ctx context.Context, account apiary.AccountID, id apiary.JobID, fn func(*apiary.Job) error) (apiary.Job, error) {
	return updateSealed(ctx, s.jobs, scopedKey(account, string(id)), "job", fn, s.fields.openJob, s.fields.sealJob)
}

// update is the compare-and-swap loop of every Update* method: it applies
// fn to the current value at key and stores it if nobody wrote in between.
// ErrNoChange from fn ends it without writing.
func update[T any](ctx context.Context, kv storage.KV, key, what string, fn func(*T) error) (T, error) {
	for {
		v, rev, err := get[T](ctx, kv, key, what)
		if err != nil {
			return v, err
		}
		if err := fn(&v); err != nil {
			if errors.Is(err, ErrNoChange) {
				return v, nil
			}
			return v, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return v, fmt.Errorf("records: encode %s: %w", what, err)
		}
		if _, err := kv.Update(ctx, key, b, rev); err == nil {
			return v, nil
		} else if !errors.Is(err, apiary.ErrConflict) {
			return v, fmt.Errorf("records: update %s: %w", what, err)
		}
		if err := ctx.Err(); err != nil {
			return v, err
		}
	}
}

// --- document outcomes of a job ---
//
// Each outcome is its own record, keyed under the job's scoped key, so that
// recording one is one small write however many documents the job has. The
// kind of outcome is part of the key: the failures of a job list without
// reading its successes.

const (
	outcomeOK     = "ok"
	outcomeFailed = "err"
)

// outcomePrefix is the key prefix of job's outcomes of kind ("" for both).
func outcomePrefix(account apiary.AccountID, job apiary.JobID, kind string) string {
	p := scopedKey(account, string(job)) + "."
	if kind != "" {
		p += kind + "."
	}
	return p
}

func outcomeKey(account apiary.AccountID, job apiary.JobID, o apiary.DocumentOutcome) string {
	kind := outcomeOK
	if o.Failed() {
		kind = outcomeFailed
	}
	return outcomePrefix(account, job, kind) + encodeID(string(o.Document))
}

// RecordOutcome stores how one document of account's job ended: one small
// write. It reports false, and stores nothing, when that outcome is already
// stored (a redelivered job): the first one stands. A run learns which
// documents are done from Outcomes before it starts, so it never records a
// document of the other kind twice.
func (s *JobStore) RecordOutcome(ctx context.Context, account apiary.AccountID, job apiary.JobID, o apiary.DocumentOutcome) (bool, error) {
	err := create(ctx, s.outcomes, outcomeKey(account, job, o), "document outcome", o)
	if errors.Is(err, apiary.ErrConflict) {
		return false, nil
	}
	return err == nil, err
}

// Outcomes returns the documents of account's job whose outcome is stored
// and what they add up to. It reads every outcome: call it once per run.
func (s *JobStore) Outcomes(ctx context.Context, account apiary.AccountID, job apiary.JobID) (map[apiary.DocumentID]bool, apiary.Tally, error) {
	var t apiary.Tally
	prefix := outcomePrefix(account, job, "")
	keys, err := s.outcomes.Keys(ctx, prefix)
	if err != nil {
		return nil, t, fmt.Errorf("records: list document outcomes: %w", err)
	}
	done := make(map[apiary.DocumentID]bool, len(keys))
	for _, k := range keys {
		o, _, err := get[apiary.DocumentOutcome](ctx, s.outcomes, k, "document outcome")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, t, err
		}
		if done[o.Document] {
			continue // both kinds stored by racing runs: the first counts
		}
		done[o.Document] = true
		t.Add(o)
	}
	return done, t, nil
}

// JobErrors lists the failed documents of account's job in a stable order,
// up to limit (default 50, max 500), and returns the cursor of
// the next page ("" when there is none). It does not check that the job
// exists: the caller reads the job first.
func (s *JobStore) JobErrors(ctx context.Context, account apiary.AccountID, job apiary.JobID, limit int, cursor string) ([]apiary.DocumentError, string, error) {
	prefix := outcomePrefix(account, job, outcomeFailed)
	keys, err := s.outcomes.Keys(ctx, prefix)
	if err != nil {
		return nil, "", fmt.Errorf("records: list document errors: %w", err)
	}
	if cursor != "" {
		if id, err := decodeID(cursor); err != nil || id == "" {
			return nil, "", apiary.E(apiary.KindInvalid, "cursor is not one this API returned")
		}
	}
	limit = clampLimit(limit)
	out := []apiary.DocumentError{}
	for _, k := range keys {
		tok := strings.TrimPrefix(k, prefix)
		if cursor != "" && tok <= cursor {
			continue
		}
		if len(out) == limit {
			return out, encodeID(string(out[len(out)-1].DocumentID)), nil
		}
		o, _, err := get[apiary.DocumentOutcome](ctx, s.outcomes, k, "document outcome")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, apiary.DocumentError{DocumentID: o.Document, Reason: o.Reason})
	}
	return out, "", nil
}

// JobFilter narrows a job listing.
type JobFilter struct {
	Status apiary.JobStatus // empty: any
	Limit  int              // default 50, max 500
	Cursor string           // from the previous page
}

// Jobs lists account's jobs, newest first, and returns the cursor of the next
// page ("" when there is none).
func (s *JobStore) Jobs(ctx context.Context, account apiary.AccountID, f JobFilter) ([]apiary.Job, string, error) {
	ids, err := scopedIDs(ctx, s.jobs, account, f.Cursor, true)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(f.Limit)
	var out []apiary.Job
	for _, id := range ids {
		j, _, err := get[apiary.Job](ctx, s.jobs, scopedKey(account, id), "job")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		if f.Status != "" && j.Status != f.Status {
			continue
		}
		// Opened only once it is chosen: a deletion asked again after the
		// account's key is erased lists its unfinished jobs (none) and
		// opens none of the others.
		if err := s.fields.openJob(ctx, &j); err != nil {
			return nil, "", err
		}
		if len(out) == limit {
			return out, encodeID(string(out[len(out)-1].ID)), nil
		}
		out = append(out, j)
	}
	return out, "", nil
}

// scopedIDs lists the ids of account's records in kv, sorted (descending when
// newestFirst), starting after cursor (an id encoded by encodeID).
func scopedIDs(ctx context.Context, kv storage.KV, account apiary.AccountID, cursor string, newestFirst bool) ([]string, error) {
	prefix := scopePrefix(account)
	keys, err := kv.Keys(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("records: list: %w", err)
	}
	after := ""
	if cursor != "" {
		c, err := decodeID(cursor)
		if err != nil || c == "" {
			return nil, apiary.E(apiary.KindInvalid, "cursor is not one this API returned")
		}
		after = c
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id, err := decodeID(strings.TrimPrefix(k, prefix))
		if err != nil {
			continue
		}
		switch {
		case after == "":
		case newestFirst && id >= after, !newestFirst && id <= after:
			continue
		}
		ids = append(ids, id)
	}
	if newestFirst {
		sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	} else {
		sort.Strings(ids)
	}
	return ids, nil
}

// UnqueuedJobs returns the jobs of every account that are still queued, were
// never put on the queue, and were created before olderThan. It is the one
// cross-account read, for the workers' sweeper; it returns at most limit jobs.
func (s *JobStore) UnqueuedJobs(ctx context.Context, olderThan time.Time, limit int) ([]apiary.Job, error) {
	keys, err := s.jobs.Keys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("records: list jobs: %w", err)
	}
	var out []apiary.Job
	for _, k := range keys {
		if len(out) == limit {
			break
		}
		j, err := s.getJob(ctx, k)
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if j.Status == apiary.JobQueued && !j.Enqueued && j.CreatedAt.Before(olderThan) {
			out = append(out, j)
		}
	}
	return out, nil
}

// --- idempotency ---

type idemRecord struct {
	Job         apiary.JobID `json:"job"`
	RequestHash string       `json:"request_hash"`
}

// ClaimIdempotencyKey binds account's key to job for a request whose body
// hashes to requestHash. It returns job when the claim is new, the earlier
// job when the same key came with the same request, and a Conflict error
// when the same key came with a different request. Both the key and the
// request hash are kept as keyed hashes (fields.go).
func (s *JobStore) ClaimIdempotencyKey(ctx context.Context, account apiary.AccountID, key, requestHash string, job apiary.JobID) (apiary.JobID, error) {
	if err := s.fields.hash(ctx, account, idemFields(&key, &requestHash)...); err != nil {
		return "", err
	}
	k := scopedKey(account, key)
	err := create(ctx, s.idem, k, "idempotency key", idemRecord{Job: job, RequestHash: requestHash})
	if err == nil {
		return job, nil
	}
	if !errors.Is(err, apiary.ErrConflict) {
		return "", err
	}
	prev, _, err := get[idemRecord](ctx, s.idem, k, "idempotency key")
	if err != nil {
		return "", err
	}
	if prev.RequestHash != requestHash {
		return "", apiary.E(apiary.KindConflict, "this Idempotency-Key was already used with a different request body; send a new key for a new request")
	}
	return prev.Job, nil
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 500:
		return 500
	}
	return n
}
