// Package storage holds the storage ports: key-value records, staged blobs
// and the vector store. Each has a conformance suite (storagetest) that every
// adapter passes.
//
// Tenancy: the vector store takes the account on every call and never reads
// or writes outside it; record keys are built by the records package in one
// place.
package storage

import (
	"context"

	"github.com/apiaryhq/apiary"
)

// Entry is one stored value with its revision for optimistic concurrency.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
}

// KV is a bucket of records. Keys are made of tokens [A-Za-z0-9_=-] joined by
// '.'; callers encode anything else. Safe for concurrent use.
type KV interface {
	// Get returns the entry at key, or an error of kind NotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Create stores value at key if there is none; Conflict otherwise.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update stores value if key's revision is still rev; Conflict otherwise.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Put stores value unconditionally.
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Keys returns the keys that start with prefix, sorted.
	Keys(ctx context.Context, prefix string) ([]string, error)
}

// KVStore opens named buckets, creating them on first use.
type KVStore interface {
	Bucket(ctx context.Context, name string) (KV, error)
}

// Blobs holds opaque, possibly large values (staged, encrypted uploads).
type Blobs interface {
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the value at key, or an error of kind NotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// VectorRecord is one chunk as stored: the vector in the clear (it must be
// searchable) and everything else a person could read sealed.
type VectorRecord struct {
	ChunkID  apiary.ChunkID
	Account  apiary.AccountID
	Document apiary.DocumentID
	Version  uint64
	Index    int
	Vector   []float32
	// Sealed is the chunk's text, encrypted with the document's data key;
	// the vector store never sees it in the clear. The document's title and
	// metadata are not here: they are sealed once, in the document record.
	Sealed []byte
	Model  string
	// Terms is the chunk's lexical side for SearchLexical: keyed hashes of
	// its terms with their counts, sorted by Hash, each Hash once, at most
	// MaxTerms of them, every Hash at most MaxTermHash and every Count at
	// least 1. The chunk's length is the sum of the counts. Empty for a
	// chunk without terms. The hashes are opaque: the store never sees a
	// term. Hits of Search and SearchLexical leave it nil.
	Terms []TermCount
}

// TermCount is one term of a chunk: its keyed hash and how often it occurs.
type TermCount struct {
	Hash  uint32
	Count uint32
}

// CheckTerms checks a record's Terms against the bounds VectorRecord.Terms
// states; the error is of kind Invalid.
func CheckTerms(terms []TermCount) error {
	if len(terms) > MaxTerms {
		return apiary.E(apiary.KindInvalid, "record has %d terms, more than %d", len(terms), MaxTerms)
	}
	for i, t := range terms {
		switch {
		case t.Hash > MaxTermHash:
			return apiary.E(apiary.KindInvalid, "record has a term hash above %d", uint32(MaxTermHash))
		case t.Count == 0:
			return apiary.E(apiary.KindInvalid, "record has a term of count 0")
		case i > 0 && t.Hash <= terms[i-1].Hash:
			return apiary.E(apiary.KindInvalid, "record has terms out of order or repeated")
		}
	}
	return nil
}

// Length is a record's length for BM25: the sum of its term counts.
func Length(terms []TermCount) int64 {
	var n int64
	for _, t := range terms {
		n += int64(t.Count)
	}
	return n
}

// Bounds of VectorRecord.Terms.
const (
	// MaxTerms is the most distinct terms one record may carry.
	MaxTerms = 4096
	// MaxTermHash is the largest term hash (the values above it are
	// reserved to the adapters).
	MaxTermHash = 1<<32 - 3
)

// BM25 parameters of SearchLexical.
const (
	BM25K1 = 1.2
	BM25B  = 0.75
)

// Hit is a search result: a stored record and its score (cosine
// similarity for Search, BM25 for SearchLexical).
type Hit struct {
	VectorRecord
	Score float32
}

// VectorFilter narrows a search or a count inside one account.
type VectorFilter struct {
	Document apiary.DocumentID // when set, only this document's chunks
	Model    string            // when set, only chunks embedded by this model (VectorRecord.Model)
}

// ErrNoLexical is the error (of kind Invalid) of SearchLexical on a store
// that cannot search terms; callers that can do without fall back to Search.
var ErrNoLexical = apiary.E(apiary.KindInvalid, "this vector store does not support lexical search")

// VectorStore is the vector store port. Every method is scoped to account.
type VectorStore interface {
	// Upsert writes records by ChunkID, replacing any with the same id.
	// Every record's Account must equal account (Invalid otherwise).
	Upsert(ctx context.Context, account apiary.AccountID, recs []VectorRecord) error
	// DeleteDocument removes the document's chunks of versions older than
	// keep (keep 0 removes them all). Newer versions stay: a slow writer of
	// an old version can never remove what a newer one wrote.
	DeleteDocument(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID, keep uint64) error
	// DeleteAccount removes every record of account; an account with none
	// is not an error. A store that keeps files erases them from the files
	// too, not only from what it answers (crypto-shredding of the account
	// also erases its key; this removes what the key sealed).
	DeleteAccount(ctx context.Context, account apiary.AccountID) error
	// Search returns up to k records closest to vec by cosine similarity, best first.
	Search(ctx context.Context, account apiary.AccountID, vec []float32, k int, f VectorFilter) ([]Hit, error)
	// SearchLexical returns up to k records of account that hold at least
	// one of terms (term hashes; a repeated hash counts once), best first by
	// BM25 with k1 = BM25K1 and b = BM25B over the account's records alone:
	//
	//	score(d) = Σ_t idf(t) · tf(t,d)·(k1+1) / (tf(t,d) + k1·(1 − b + b·|d|/avgdl))
	//	idf(t)   = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))
	//
	// where N is the number of the account's records, df(t) how many of them
	// hold t, |d| a record's length (the sum of its term counts) and avgdl
	// the mean length; f narrows which records are returned, not the
	// statistics. Adapters document how closely they follow it. A store
	// without lexical search returns an error that is ErrNoLexical.
	SearchLexical(ctx context.Context, account apiary.AccountID, terms []uint32, k int, f VectorFilter) ([]Hit, error)
	// Count returns how many records match f.
	Count(ctx context.Context, account apiary.AccountID, f VectorFilter) (int, error)
	// Scan returns up to limit records of account that match f, with their
	// vectors, in ascending ChunkID order, starting after the ChunkID after
	// ("" starts at the beginning): a page of the account's chunks without a
	// query vector. The last record's ChunkID is the next page's after; a
	// page shorter than limit is the last. Records written or deleted while
	// a scan pages through may or may not be seen. limit must be positive
	// (Invalid otherwise).
	Scan(ctx context.Context, account apiary.AccountID, after apiary.ChunkID, limit int, f VectorFilter) ([]VectorRecord, error)
	// Close flushes and releases the store.
	Close() error
}
