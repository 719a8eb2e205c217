// Package upload stages the documents of an upload between the API and the
// workers. The queue message carries only ids; the documents wait in the
// blob store, sealed with a data key wrapped by the account's key and bound
// to (account, job), so the staging store never holds plaintext.
package upload

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage"
)

// Stager seals, stores, loads and drops staged uploads. Safe for concurrent use.
type Stager struct {
	blobs storage.Blobs
	keys  encrypt.KeyProvider
}

// NewStager returns a Stager over blobs, sealing with keys.
func NewStager(blobs storage.Blobs, keys encrypt.KeyProvider) *Stager {
	return &Stager{blobs: blobs, keys: keys}
}

func stageKey(account apiary.AccountID, job apiary.JobID) string {
	return "stage/" + string(account) + "/" + string(job)
}

func encCtx(account apiary.AccountID, job apiary.JobID) encrypt.Context {
	return encrypt.Context{"account": string(account), "job": string(job)}
}

// Stage seals docs and stores them for job.
func (s *Stager) Stage(ctx context.Context, account apiary.AccountID, job apiary.JobID, docs []apiary.Document) error {
	plain, err := json.Marshal(docs)
	if err != nil {
		return fmt.Errorf("upload: encode job %s: %w", job, err)
	}
	sealed, err := encrypt.SealEnvelope(ctx, s.keys, account, encCtx(account, job), plain)
	encrypt.Wipe(plain)
	if err != nil {
		return fmt.Errorf("upload: seal job %s: %w", job, err)
	}
	if err := s.blobs.Put(ctx, stageKey(account, job), sealed); err != nil {
		return fmt.Errorf("upload: store job %s: %w", job, err)
	}
	return nil
}

// Load returns the documents staged for job. A missing stage is NotFound.
func (s *Stager) Load(ctx context.Context, account apiary.AccountID, job apiary.JobID) ([]apiary.Document, error) {
	sealed, err := s.blobs.Get(ctx, stageKey(account, job))
	if err != nil {
		return nil, fmt.Errorf("upload: load job %s: %w", job, err)
	}
	plain, err := encrypt.OpenEnvelope(ctx, s.keys, account, encCtx(account, job), sealed)
	if err != nil {
		return nil, fmt.Errorf("upload: open job %s: %w", job, err)
	}
	defer encrypt.Wipe(plain)
	var docs []apiary.Document
	if err := json.Unmarshal(plain, &docs); err != nil {
		return nil, apiary.Permanent(fmt.Errorf("upload: decode job %s: %w", job, err))
	}
	return docs, nil
}

// Drop deletes job's staged documents; dropping twice is fine.
func (s *Stager) Drop(ctx context.Context, account apiary.AccountID, job apiary.JobID) error {
	if err := s.blobs.Delete(ctx, stageKey(account, job)); err != nil {
		return fmt.Errorf("upload: drop job %s: %w", job, err)
	}
	return nil
}
