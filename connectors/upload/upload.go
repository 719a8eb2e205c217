// Package upload stages the documents of an upload between the API and the
// workers. The queue message carries only ids; the documents wait in the
// blob store, sealed with a data key wrapped by the account's key and bound
// to (account, job), so the staging store never holds plaintext.
//
// Staged documents keep their text and files byte for byte (not escaped), so
// a request stages at about its own size: whatever the request body limit
// accepts fits a blob store that holds at least that much. Errors never name
// the staging store's keys or buckets.
package upload

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

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

// storeError keeps err's kind under a message safe to show: the blob
// store's own message names its keys and buckets.
func storeError(err error, job apiary.JobID, op string) error {
	if apiary.KindOf(err) == apiary.KindTooLarge {
		return apiary.Wrap(err, apiary.KindTooLarge, "the documents are too large to stage; send fewer or smaller documents per request")
	}
	return apiary.Wrap(err, apiary.KindOf(err), "upload: %s the documents of job %s", op, job)
}

// Stage seals docs and stores them for job.
func (s *Stager) Stage(ctx context.Context, account apiary.AccountID, job apiary.JobID, docs []apiary.Document) error {
	plain := encode(docs)
	sealed, err := encrypt.SealEnvelope(ctx, s.keys, account, encCtx(account, job), plain)
	encrypt.Wipe(plain)
	if err != nil {
		return fmt.Errorf("upload: seal job %s: %w", job, err)
	}
	if err := s.blobs.Put(ctx, stageKey(account, job), sealed); err != nil {
		return storeError(err, job, "store")
	}
	return nil
}

// Load returns the documents staged for job. A missing stage is NotFound.
func (s *Stager) Load(ctx context.Context, account apiary.AccountID, job apiary.JobID) ([]apiary.Document, error) {
	sealed, err := s.blobs.Get(ctx, stageKey(account, job))
	if err != nil {
		return nil, storeError(err, job, "load")
	}
	plain, err := encrypt.OpenEnvelope(ctx, s.keys, account, encCtx(account, job), sealed)
	if err != nil {
		return nil, fmt.Errorf("upload: open job %s: %w", job, err)
	}
	defer encrypt.Wipe(plain)
	docs, err := decode(plain)
	if err != nil {
		return nil, apiary.Permanent(fmt.Errorf("upload: decode job %s: %w", job, err))
	}
	return docs, nil
}

// Drop deletes job's staged documents; dropping twice is fine.
func (s *Stager) Drop(ctx context.Context, account apiary.AccountID, job apiary.JobID) error {
	if err := s.blobs.Delete(ctx, stageKey(account, job)); err != nil {
		return storeError(err, job, "drop")
	}
	return nil
}

// formatV1 starts a staged upload in the binary format: for each document
// its id, title, content type, text and raw bytes, then its number of
// metadata pairs and each key and value (sorted by key), every string as a
// uvarint length and its bytes. Stages written as JSON, by earlier releases,
// start with '['.
const formatV1 = 1

func encode(docs []apiary.Document) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, d := range docs {
		n += 6*binary.MaxVarintLen64 + len(d.ID) + len(d.Title) + len(d.ContentType) + len(d.Text) + len(d.Raw)
		for k, v := range d.Metadata {
			n += 2*binary.MaxVarintLen64 + len(k) + len(v)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, formatV1)
	b = binary.AppendUvarint(b, uint64(len(docs)))
	str := func(s string) { b = append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	for _, d := range docs {
		str(string(d.ID))
		str(d.Title)
		str(d.ContentType)
		str(d.Text)
		b = append(binary.AppendUvarint(b, uint64(len(d.Raw))), d.Raw...)
		b = binary.AppendUvarint(b, uint64(len(d.Metadata)))
		for _, k := range slices.Sorted(maps.Keys(d.Metadata)) {
			str(k)
			str(d.Metadata[k])
		}
	}
	return b
}

var errMalformed = errors.New("malformed staged documents")

func decode(b []byte) ([]apiary.Document, error) {
	if len(b) > 0 && b[0] == '[' {
		var docs []apiary.Document
		err := json.Unmarshal(b, &docs)
		return docs, err
	}
	if len(b) == 0 || b[0] != formatV1 {
		return nil, errMalformed
	}
	b = b[1:]
	bad := false
	count := func() int {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)) {
			bad = true
			return 0
		}
		b = b[w:]
		return int(n)
	}
	bytesOf := func() []byte {
		n := count()
		if bad || n > len(b) {
			bad = true
			return nil
		}
		v := b[:n:n]
		b = b[n:]
		return v
	}
	str := func() string { return string(bytesOf()) }
	docs := make([]apiary.Document, count())
	for i := range docs {
		d := &docs[i]
		d.ID = apiary.DocumentID(str())
		d.Title = str()
		d.ContentType = str()
		d.Text = str()
		if raw := bytesOf(); len(raw) > 0 {
			d.Raw = slices.Clone(raw)
		}
		if n := count(); n > 0 {
			d.Metadata = make(map[string]string, n)
			for range n {
				k := str()
				d.Metadata[k] = str()
			}
		}
		if bad {
			return nil, errMalformed
		}
	}
	if bad || len(b) != 0 {
		return nil, errMalformed
	}
	return docs, nil
}
