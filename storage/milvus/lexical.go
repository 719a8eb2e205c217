package milvus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"
	"golang.org/x/sync/errgroup"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// Lexical search on Milvus. Milvus's own BM25 needs the text; Apiary hands
// it keyed term hashes only, so the adapter computes the weights itself:
//
//	lexical  SparseFloatVector  per term hash, the document side of BM25:
//	                            tf·(k1+1) / (tf + k1·(1 − b + b·|d|/avgdl)),
//	                            avgdl estimated when the row is written
//	terms    Array<Int64>(4096) the term hashes, to count document frequencies
//	length   Int64              |d|, the sum of the term counts
//
// A query's sparse vector holds each term's idf from the account's current
// N (a count) and df (a count of the rows whose terms contain it), so the
// inner product is the BM25 score. The approximation: avgdl is fixed in a
// row's weights when it is written (the mean over up to lengthSample of the
// account's stored rows, read at most once per lengthTTL per process and
// updated with every batch written meanwhile), where exact BM25
// uses the mean at query time; rows written while an account's mean
// length was different keep that mean. Chunk lengths vary little, so
// scores move little; an account re-ingested gets current weights.
const (
	// placeholderHash marks the one weight of a row without terms (Milvus
	// refuses an empty sparse vector); no query holds it.
	placeholderHash = storage.MaxTermHash + 1
	// lengthSample is how many of an account's stored lengths an Upsert
	// reads to estimate the mean length.
	lengthSample = 1000
	// lengthTTL is how long a process reuses its sample of an account's
	// lengths before reading it again: reading it on every Upsert made each
	// write a query, which a busy Milvus answered too late.
	lengthTTL = time.Minute
	// maxLengthStats bounds the accounts whose samples a process keeps.
	maxLengthStats = 4096
	// maxQueryTerms bounds the terms of one lexical query: each costs a
	// count for its document frequency. Later terms are ignored.
	maxQueryTerms = 64
	// dfConcurrency is how many of those counts run at once.
	dfConcurrency = 8
)

func lexicalFields() []*entity.Field {
	return []*entity.Field{
		entity.NewField().WithName(fieldLexical).WithDataType(entity.FieldTypeSparseVector),
		entity.NewField().WithName(fieldTerms).WithDataType(entity.FieldTypeArray).
			WithElementType(entity.FieldTypeInt64).WithMaxCapacity(storage.MaxTerms),
		entity.NewField().WithName(fieldLength).WithDataType(entity.FieldTypeInt64),
	}
}

// ensureLexicalIndex builds the sparse index (inverted, inner product,
// nothing dropped) unless there is one.
func (s *Store) ensureLexicalIndex(ctx context.Context) error {
	if _, ok := s.describeFieldIndex(ctx, fieldLexical); ok {
		return nil
	}
	idx, err := entity.NewIndexSparseInverted(entity.IP, 0)
	if err != nil {
		return apiary.Wrap(err, apiary.KindInvalid, "milvus: sparse index")
	}
	err = s.c.CreateIndex(ctx, s.cfg.Collection, fieldLexical, idx, false)
	if _, ok := s.describeFieldIndex(ctx, fieldLexical); ok {
		return nil // built by us, or by a process that won the race
	}
	if err == nil {
		err = errors.New("index not found after creation")
	}
	return classify(err, "create sparse index", s.cfg.Collection)
}

// weights returns a row's lexical columns: its BM25 document weights for a
// mean length avgdl, its term hashes and its length.
func weights(terms []storage.TermCount, avgdl float64) (entity.SparseEmbedding, []int64, int64) {
	n := storage.Length(terms)
	if len(terms) == 0 {
		w, _ := entity.NewSliceSparseEmbedding([]uint32{placeholderHash}, []float32{1})
		return w, []int64{}, 0
	}
	pos := make([]uint32, len(terms))
	vals := make([]float32, len(terms))
	hashes := make([]int64, len(terms))
	norm := storage.BM25K1 * (1 - storage.BM25B + storage.BM25B*float64(n)/avgdl)
	for i, t := range terms {
		tf := float64(t.Count)
		pos[i], hashes[i] = t.Hash, int64(t.Hash)
		vals[i] = float32(tf * (storage.BM25K1 + 1) / (tf + norm))
	}
	w, _ := entity.NewSliceSparseEmbedding(pos, vals) // lengths match: cannot fail
	return w, hashes, n
}

// lengthStat is a process's sample of an account's chunk lengths.
type lengthStat struct {
	sum, n float64
	read   time.Time // when the stored rows were last read
}

// lengthStats keeps each account's sample (see meanLength).
type lengthStats struct {
	mu sync.Mutex
	m  map[apiary.AccountID]*lengthStat
}

// meanLength estimates account's mean length once recs are written: over up
// to lengthSample of the rows stored, read at most once per lengthTTL, and
// every batch written since. At least 1.
func (s *Store) meanLength(ctx context.Context, account apiary.AccountID, recs []storage.VectorRecord) (float64, error) {
	var sum, n float64
	for _, r := range recs {
		sum += float64(storage.Length(r.Terms))
		n++
	}
	s.lengths.mu.Lock()
	st, ok := s.lengths.m[account]
	if ok && time.Since(st.read) < lengthTTL {
		st.sum, st.n = st.sum+sum, st.n+n
		mean := st.sum / st.n
		s.lengths.mu.Unlock()
		return max(mean, 1), nil
	}
	s.lengths.mu.Unlock()

	expr, err := (scope{account: account}).filter()
	if err != nil {
		return 0, err
	}
	qctx, cancel := s.call(ctx)
	defer cancel()
	rs, err := s.c.Query(qctx, s.cfg.Collection, nil, expr, []string{fieldLength},
		client.WithLimit(lengthSample), client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		return 0, classify(err, "upsert: read lengths", string(account))
	}
	if col, ok := rs.GetColumn(fieldLength).(*entity.ColumnInt64); ok {
		for _, l := range col.Data() {
			sum += float64(l)
			n++
		}
	}
	s.lengths.mu.Lock()
	if s.lengths.m == nil || len(s.lengths.m) >= maxLengthStats {
		s.lengths.m = make(map[apiary.AccountID]*lengthStat) // start over: a sample is cheap to read again
	}
	s.lengths.m[account] = &lengthStat{sum: sum, n: n, read: time.Now()}
	s.lengths.mu.Unlock()
	if n == 0 || sum == 0 {
		return 1, nil
	}
	return max(sum/n, 1), nil
}

// SearchLexical implements storage.VectorStore: BM25 with the account's
// document frequencies and count at query time and the document weights
// of write time (see the top of lexical.go); at most maxQueryTerms terms.
// On a collection without the lexical fields it returns an error that is
// storage.ErrNoLexical.
func (s *Store) SearchLexical(ctx context.Context, account apiary.AccountID, terms []uint32, k int, f storage.VectorFilter) ([]storage.Hit, error) {
	all, err := (scope{account: account}).filter()
	if err != nil {
		return nil, fmt.Errorf("milvus: search lexical: %w", err)
	}
	expr, err := (scope{account: account, document: f.Document}).filter()
	if err != nil {
		return nil, fmt.Errorf("milvus: search lexical: %w", err)
	}
	if k <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "milvus: search lexical: k must be positive")
	}
	for _, t := range terms {
		if t > storage.MaxTermHash {
			return nil, apiary.E(apiary.KindInvalid, "milvus: search lexical: term hash above %d", uint32(storage.MaxTermHash))
		}
	}
	if !s.lexical {
		return nil, fmt.Errorf("milvus: search lexical: collection %s was created before lexical search; re-create it (or set another collection) and ingest again: %w",
			s.cfg.Collection, storage.ErrNoLexical)
	}
	terms = distinct(terms)
	if len(terms) > maxQueryTerms {
		terms = terms[:maxQueryTerms]
	}
	if len(terms) == 0 {
		return nil, nil
	}
	n, err := s.count(ctx, all)
	if err != nil {
		return nil, classify(err, "search lexical", string(account))
	}
	df := make([]int64, len(terms))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(dfConcurrency)
	for i, t := range terms {
		g.Go(func() (err error) {
			df[i], err = s.count(gctx, all+" && array_contains("+fieldTerms+", "+strconv.FormatUint(uint64(t), 10)+")")
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, classify(err, "search lexical", string(account))
	}
	var pos []uint32
	var idf []float32
	for i, t := range terms {
		if df[i] == 0 {
			continue
		}
		d := float64(df[i])
		pos = append(pos, t)
		idf = append(idf, float32(math.Log(1+(float64(n)-d+0.5)/(d+0.5))))
	}
	if len(pos) == 0 {
		return nil, nil
	}
	q, err := entity.NewSliceSparseEmbedding(pos, idf)
	if err != nil {
		return nil, apiary.Wrap(err, apiary.KindOther, "milvus: search lexical")
	}
	sp, err := entity.NewIndexSparseInvertedSearchParam(0)
	if err != nil {
		return nil, apiary.Wrap(err, apiary.KindOther, "milvus: search lexical")
	}
	sctx, cancel := s.call(ctx)
	defer cancel()
	res, err := s.c.Search(sctx, s.cfg.Collection, nil, expr,
		append(outputFields[:len(outputFields):len(outputFields)], fieldVector),
		[]entity.Vector{q}, fieldLexical, entity.IP, min(k, maxTopK), sp,
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		return nil, classify(err, "search lexical", string(account))
	}
	return s.hits(res, account, "search lexical")
}

// count runs a count(*) query of expr.
func (s *Store) count(ctx context.Context, expr string) (int64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rs, err := s.c.Query(ctx, s.cfg.Collection, nil, expr, []string{"count(*)"},
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		return 0, err
	}
	col := rs.GetColumn("count(*)")
	if col == nil || col.Len() != 1 {
		return 0, errors.New("no count in the result")
	}
	return col.GetAsInt64(0)
}

// distinct returns terms without repeats, in their first order.
func distinct(terms []uint32) []uint32 {
	seen := make(map[uint32]bool, len(terms))
	out := terms[:0:0]
	for _, t := range terms {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}
