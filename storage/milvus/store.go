package milvus

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"
)

// Field names and limits of the collection schema.
const (
	fieldID         = "id"
	fieldChunkID    = "chunk_id"
	fieldAccount    = "account"
	fieldDocument   = "document"
	fieldVersion    = "version"
	fieldChunkIndex = "chunk_index"
	fieldSealed     = "sealed"
	fieldModel      = "model"
	fieldVector     = "vector"
	// The lexical fields (lexical.go).
	fieldLexical = "lexical"
	fieldTerms   = "terms"
	fieldLength  = "length"

	maxChunkIDLen  = 64
	maxIDLen       = apiary.MaxAccountIDLen + 1 + maxChunkIDLen
	maxDocumentLen = 512 // bytes; apiary.MaxDocumentIDLen is 256
	maxModelLen    = 256
	// maxSealedLen is the VarChar limit of the sealed field, which holds
	// the Sealed bytes in standard base64 (4 characters per 3 bytes).
	maxSealedLen = 65535
	// MaxSealedBytes is the largest Sealed value a record may carry.
	MaxSealedBytes = maxSealedLen / 4 * 3

	maxDim  = 32768
	maxTopK = 16384 // Milvus' limit on topK and query results

	// An Upsert is sent in batches of at most this many rows or bytes, well
	// under gRPC's and Milvus' message limits.
	maxBatchRows  = 512
	maxBatchBytes = 8 << 20
)

var outputFields = []string{fieldChunkID, fieldAccount, fieldDocument, fieldVersion, fieldChunkIndex, fieldSealed, fieldModel}

// Store is the Milvus vector store. It is safe for concurrent use.
type Store struct {
	cfg   Config
	c     client.Client
	cl    entity.ConsistencyLevel
	index entity.IndexType // the index actually on the vector field
	// lexical is false on a collection created before the lexical fields:
	// it serves dense search only (lexical.go).
	lexical bool
	lengths lengthStats // each account's sample of chunk lengths, for the BM25 weights
	closed  sync.Once
	cerr    error
}

var _ storage.VectorStore = (*Store)(nil)

// Open connects to Milvus and makes sure the collection exists with the
// expected schema, has a COSINE vector index and is loaded. It is safe to
// call from several processes at once: whoever loses a creation race uses
// the winner's collection and index. A collection with another schema or
// dimension is an Invalid error; an unreachable server is Unavailable.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "milvus: config")
	}
	cl, _ := cfg.Consistency.level()
	ctx, cancel := context.WithTimeout(ctx, cfg.OpenTimeout)
	defer cancel()

	dial, err := cfg.dialOptions()
	if err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "milvus: config tls")
	}
	c, err := client.NewClient(ctx, client.Config{
		Address:     cfg.Addr,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DBName:      cfg.DBName,
		DialOptions: dial,
	})
	if err != nil {
		return nil, classify(err, "connect", cfg.Addr)
	}
	s := &Store{cfg: cfg, c: c, cl: cl}
	if err := s.prepare(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return s, nil
}

// schema is the collection's schema, with the lexical fields or (as
// collections of earlier releases) without.
func (s *Store) schema(lexical bool) *entity.Schema {
	varchar := func(name string, max int64) *entity.Field {
		return entity.NewField().WithName(name).WithDataType(entity.FieldTypeVarChar).WithMaxLength(max)
	}
	sch := entity.NewSchema().
		WithName(s.cfg.Collection).
		WithDescription("apiary chunks: vectors in the clear, text and metadata sealed").
		WithAutoID(false).
		WithDynamicFieldEnabled(false).
		WithField(varchar(fieldID, maxIDLen).WithIsPrimaryKey(true)).
		WithField(varchar(fieldChunkID, maxChunkIDLen)).
		WithField(varchar(fieldAccount, apiary.MaxAccountIDLen).WithIsPartitionKey(true)).
		WithField(varchar(fieldDocument, maxDocumentLen)).
		WithField(entity.NewField().WithName(fieldVersion).WithDataType(entity.FieldTypeInt64)).
		WithField(entity.NewField().WithName(fieldChunkIndex).WithDataType(entity.FieldTypeInt64)).
		WithField(varchar(fieldSealed, maxSealedLen)).
		WithField(varchar(fieldModel, maxModelLen)).
		WithField(entity.NewField().WithName(fieldVector).WithDataType(entity.FieldTypeFloatVector).WithDim(int64(s.cfg.Dim)))
	if lexical {
		for _, f := range lexicalFields() {
			sch.WithField(f)
		}
	}
	return sch
}

// prepare creates what is missing (collection, index) and loads the
// collection. Each step tolerates another process doing it concurrently.
func (s *Store) prepare(ctx context.Context) error {
	name := s.cfg.Collection
	// A collection another process is creating right now may exist but
	// not be describable yet: retry a few times with a growing pause.
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.ensureCollection(ctx)
		if err == nil {
			break
		}
		if attempt == 6 || apiary.KindOf(err) == apiary.KindInvalid {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay *= 2
	}
	if err := s.ensureIndex(ctx); err != nil {
		return err
	}
	if s.lexical {
		if err := s.ensureLexicalIndex(ctx); err != nil {
			return err
		}
	}
	if err := s.c.LoadCollection(ctx, name, false); err != nil {
		return classify(err, "load collection", name)
	}
	return nil
}

// ensureCollection creates the collection unless it exists and checks its
// schema.
func (s *Store) ensureCollection(ctx context.Context) error {
	name := s.cfg.Collection
	has, err := s.c.HasCollection(ctx, name)
	if err != nil {
		return classify(err, "has collection", name)
	}
	if !has {
		err := s.c.CreateCollection(ctx, s.schema(true), 0, client.WithConsistencyLevel(s.cl))
		if err != nil {
			// Lost a race with another process? Then use its collection.
			if has, herr := s.c.HasCollection(ctx, name); herr != nil || !has {
				return classify(err, "create collection", name)
			}
		}
	}
	return s.checkSchema(ctx)
}

// checkSchema fails when an existing collection cannot hold our records.
// A collection without the lexical fields (made by an earlier release) is
// opened for dense search only.
func (s *Store) checkSchema(ctx context.Context) error {
	name := s.cfg.Collection
	coll, err := s.c.DescribeCollection(ctx, name)
	if err != nil {
		return classify(err, "describe collection", name)
	}
	got := map[string]*entity.Field{}
	for _, f := range coll.Schema.Fields {
		got[f.Name] = f
	}
	_, s.lexical = got[fieldLexical]
	_, terms := got[fieldTerms]
	_, length := got[fieldLength]
	s.lexical = s.lexical || terms || length // one of them: check them all
	want := s.schema(s.lexical)
	var errs []error
	for _, w := range want.Fields {
		g, ok := got[w.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("field %s is missing", w.Name))
		case g.DataType != w.DataType:
			errs = append(errs, fmt.Errorf("field %s is %s, want %s", w.Name, g.DataType.Name(), w.DataType.Name()))
		case g.PrimaryKey != w.PrimaryKey || g.IsPartitionKey != w.IsPartitionKey:
			errs = append(errs, fmt.Errorf("field %s has other key settings", w.Name))
		case w.DataType == entity.FieldTypeFloatVector && g.TypeParams[entity.TypeParamDim] != strconv.Itoa(s.cfg.Dim):
			errs = append(errs, fmt.Errorf("field %s has dim %s, config says %d", w.Name, g.TypeParams[entity.TypeParamDim], s.cfg.Dim))
		case w.DataType == entity.FieldTypeArray && (g.ElementType != w.ElementType || g.TypeParams[entity.TypeParamMaxCapacity] != w.TypeParams[entity.TypeParamMaxCapacity]):
			errs = append(errs, fmt.Errorf("field %s is another array", w.Name))
		case w.DataType == entity.FieldTypeVarChar && g.TypeParams[entity.TypeParamMaxLength] != w.TypeParams[entity.TypeParamMaxLength]:
			errs = append(errs, fmt.Errorf("field %s has max length %s, want %s", w.Name, g.TypeParams[entity.TypeParamMaxLength], w.TypeParams[entity.TypeParamMaxLength]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return apiary.Wrap(err, apiary.KindInvalid, "milvus: collection %s has another schema", name)
	}
	return nil
}

// ensureIndex builds the vector index if there is none and records which
// index the field has, to pick matching search parameters.
func (s *Store) ensureIndex(ctx context.Context) error {
	if it, ok := s.describeIndex(ctx); ok {
		s.index = it
		return nil
	}
	err := s.createIndex(ctx)
	if it, ok := s.describeIndex(ctx); ok {
		// Built by us, or by a process that won the race.
		s.index = it
		return nil
	}
	if err == nil {
		err = errors.New("index not found after creation")
	}
	return classify(err, "create index", s.cfg.Collection)
}

// createIndex builds HNSW, or AUTOINDEX when configured or when the server
// refuses HNSW and the configuration allows the fallback.
func (s *Store) createIndex(ctx context.Context) error {
	name := s.cfg.Collection
	if s.cfg.Index != IndexAuto {
		idx, err := entity.NewIndexHNSW(entity.COSINE, s.cfg.M, s.cfg.EfConstruction)
		if err != nil {
			return apiary.Wrap(err, apiary.KindInvalid, "milvus: hnsw index")
		}
		err = s.c.CreateIndex(ctx, name, fieldVector, idx, false)
		if err == nil || s.cfg.Index == IndexHNSW || kindOf(err) == apiary.KindUnavailable {
			return err
		}
		if _, ok := s.describeIndex(ctx); ok {
			return nil // a racing process built one meanwhile
		}
	}
	idx, err := entity.NewIndexAUTOINDEX(entity.COSINE)
	if err != nil {
		return apiary.Wrap(err, apiary.KindInvalid, "milvus: autoindex")
	}
	return s.c.CreateIndex(ctx, name, fieldVector, idx, false)
}

func (s *Store) describeIndex(ctx context.Context) (entity.IndexType, bool) {
	return s.describeFieldIndex(ctx, fieldVector)
}

func (s *Store) describeFieldIndex(ctx context.Context, field string) (entity.IndexType, bool) {
	idxs, err := s.c.DescribeIndex(ctx, s.cfg.Collection, field)
	if err != nil || len(idxs) == 0 {
		return "", false
	}
	it := idxs[0].IndexType()
	if t, ok := idxs[0].Params()["index_type"]; ok && t != "" {
		it = entity.IndexType(t)
	}
	return it, true
}

// call bounds one request to Milvus by Config.Timeout.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// Upsert implements storage.VectorStore. Records are validated first (a
// bad one fails the whole call with Invalid, or TooLarge for an oversized
// Sealed, before anything is written), then written in batches; a failure
// part way leaves earlier batches written, which a retry overwrites.
func (s *Store) Upsert(ctx context.Context, account apiary.AccountID, recs []storage.VectorRecord) error {
	if _, err := (scope{account: account}).filter(); err != nil {
		return fmt.Errorf("milvus: upsert: %w", err)
	}
	// The last record of a repeated ChunkID wins, as if upserted in order.
	last := make(map[apiary.ChunkID]int, len(recs))
	for i, r := range recs {
		if err := s.checkRecord(account, r); err != nil {
			return fmt.Errorf("milvus: upsert record %d: %w", i, err)
		}
		last[r.ChunkID] = i
	}
	var avgdl float64
	if s.lexical {
		var err error
		if avgdl, err = s.meanLength(ctx, account, recs); err != nil {
			return err
		}
	}
	b := batch{lexical: s.lexical}
	for i, r := range recs {
		if last[r.ChunkID] != i {
			continue
		}
		b.add(r, avgdl)
		if b.n() >= maxBatchRows || b.bytes >= maxBatchBytes {
			if err := s.flush(ctx, account, &b); err != nil {
				return err
			}
		}
	}
	return s.flush(ctx, account, &b)
}

func (s *Store) checkRecord(account apiary.AccountID, r storage.VectorRecord) error {
	switch {
	case r.Account != account:
		return apiary.E(apiary.KindInvalid, "record belongs to another account")
	case r.ChunkID == "" || len(r.ChunkID) > maxChunkIDLen || !utf8.ValidString(string(r.ChunkID)):
		return apiary.E(apiary.KindInvalid, "chunk id must be 1 to %d bytes of UTF-8", maxChunkIDLen)
	case r.Index < 0:
		return apiary.E(apiary.KindInvalid, "chunk index must not be negative")
	case len(r.Model) > maxModelLen || !utf8.ValidString(r.Model):
		return apiary.E(apiary.KindInvalid, "model must be at most %d bytes of UTF-8", maxModelLen)
	case len(r.Sealed) > MaxSealedBytes:
		return apiary.E(apiary.KindTooLarge, "sealed chunk is %d bytes, over %d", len(r.Sealed), MaxSealedBytes)
	}
	if err := r.Document.Validate(); err != nil {
		return err
	}
	if _, err := version(r.Version); err != nil {
		return err
	}
	if err := storage.CheckTerms(r.Terms); err != nil {
		return err
	}
	return s.checkVector(r.Vector)
}

// checkVector accepts a vector of the store's dimension whose cosine
// similarity is defined: finite, and not all zeros.
func (s *Store) checkVector(v []float32) error {
	if len(v) != s.cfg.Dim {
		return apiary.E(apiary.KindInvalid, "vector has %d dimensions, the store %d", len(v), s.cfg.Dim)
	}
	nonzero := false
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return apiary.E(apiary.KindInvalid, "vector holds NaN or infinity")
		}
		nonzero = nonzero || x != 0
	}
	if !nonzero {
		return apiary.E(apiary.KindInvalid, "vector is all zeros")
	}
	return nil
}

func version(v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, apiary.E(apiary.KindInvalid, "version %d is too large", v)
	}
	return int64(v), nil
}

// primaryKey is the row's key: the chunk id inside its account, so that one
// account's upsert can never replace another's row, whatever the chunk ids.
// Account ids hold no ':', so the key is unambiguous.
func primaryKey(account apiary.AccountID, id apiary.ChunkID) string {
	return string(account) + ":" + string(id)
}

// batch accumulates records as columns.
type batch struct {
	lexical                                  bool // with the lexical columns
	pks, ids, accounts, docs, sealed, models []string
	versions, indexes, lengths               []int64
	vectors                                  [][]float32
	weights                                  []entity.SparseEmbedding
	terms                                    [][]int64
	bytes                                    int
}

func (b *batch) n() int { return len(b.pks) }

// add appends r; avgdl is the mean length its lexical weights assume.
func (b *batch) add(r storage.VectorRecord, avgdl float64) {
	sealed := base64.StdEncoding.EncodeToString(r.Sealed)
	b.pks = append(b.pks, primaryKey(r.Account, r.ChunkID))
	b.ids = append(b.ids, string(r.ChunkID))
	b.accounts = append(b.accounts, string(r.Account))
	b.docs = append(b.docs, string(r.Document))
	b.versions = append(b.versions, int64(r.Version))
	b.indexes = append(b.indexes, int64(r.Index))
	b.sealed = append(b.sealed, sealed)
	b.models = append(b.models, r.Model)
	b.vectors = append(b.vectors, r.Vector)
	b.bytes += len(b.pks[len(b.pks)-1]) + len(r.ChunkID) + len(r.Account) + len(r.Document) + 16 + len(sealed) + len(r.Model) + 4*len(r.Vector)
	if b.lexical {
		w, terms, n := weights(r.Terms, avgdl)
		b.weights = append(b.weights, w)
		b.terms = append(b.terms, terms)
		b.lengths = append(b.lengths, n)
		b.bytes += 16*len(terms) + 8
	}
}

func (s *Store) flush(ctx context.Context, account apiary.AccountID, b *batch) error {
	if b.n() == 0 {
		return nil
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	cols := []entity.Column{
		entity.NewColumnVarChar(fieldID, b.pks),
		entity.NewColumnVarChar(fieldChunkID, b.ids),
		entity.NewColumnVarChar(fieldAccount, b.accounts),
		entity.NewColumnVarChar(fieldDocument, b.docs),
		entity.NewColumnInt64(fieldVersion, b.versions),
		entity.NewColumnInt64(fieldChunkIndex, b.indexes),
		entity.NewColumnVarChar(fieldSealed, b.sealed),
		entity.NewColumnVarChar(fieldModel, b.models),
		entity.NewColumnFloatVector(fieldVector, s.cfg.Dim, b.vectors),
	}
	if b.lexical {
		cols = append(cols,
			entity.NewColumnSparseVectors(fieldLexical, b.weights),
			entity.NewColumnInt64Array(fieldTerms, b.terms),
			entity.NewColumnInt64(fieldLength, b.lengths))
	}
	_, err := s.c.Upsert(ctx, s.cfg.Collection, "", cols...)
	*b = batch{lexical: b.lexical}
	return classify(err, "upsert", string(account))
}

// DeleteDocument implements storage.VectorStore. The delete request goes
// at consistency Strong (the SDK leaves the level at its zero value), so
// the expression also matches rows written just before, whatever
// Config.Consistency says.
func (s *Store) DeleteDocument(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID, keep uint64) error {
	if doc == "" {
		return apiary.E(apiary.KindInvalid, "milvus: delete document: document id is required")
	}
	expr, err := (scope{account: account, document: doc, olderThan: keep}).filter()
	if err != nil {
		return fmt.Errorf("milvus: delete document: %w", err)
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	return classify(s.c.Delete(ctx, s.cfg.Collection, "", expr), "delete document", string(account))
}

// DeleteAccount implements storage.VectorStore: one delete by the
// account's expression. Milvus drops the deleted rows from its segments at
// its own compaction.
func (s *Store) DeleteAccount(ctx context.Context, account apiary.AccountID) error {
	expr, err := (scope{account: account}).filter()
	if err != nil {
		return fmt.Errorf("milvus: delete account: %w", err)
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	return classify(s.c.Delete(ctx, s.cfg.Collection, "", expr), "delete account", string(account))
}

// Search implements storage.VectorStore. Scores are cosine similarities in
// [-1, 1], best first; k above Milvus' limit of 16384 is lowered to it.
func (s *Store) Search(ctx context.Context, account apiary.AccountID, vec []float32, k int, f storage.VectorFilter) ([]storage.Hit, error) {
	expr, err := (scope{account: account, document: f.Document, model: f.Model}).filter()
	if err != nil {
		return nil, fmt.Errorf("milvus: search: %w", err)
	}
	if err := s.checkVector(vec); err != nil {
		return nil, fmt.Errorf("milvus: search: %w", err)
	}
	if k <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "milvus: search: k must be positive")
	}
	k = min(k, maxTopK)
	sp, err := s.searchParam(k)
	if err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "milvus: search")
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	res, err := s.c.Search(ctx, s.cfg.Collection, nil, expr,
		append(outputFields[:len(outputFields):len(outputFields)], fieldVector),
		[]entity.Vector{entity.FloatVector(vec)}, fieldVector, entity.COSINE, k, sp,
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		return nil, classify(err, "search", string(account))
	}
	hits, err := s.hits(res, account, "search")
	for i := range hits {
		// Milvus computes cosine in float32: opposite vectors can come
		// back a rounding error past -1 (-1.0000002).
		hits[i].Score = min(max(hits[i].Score, -1), 1)
	}
	return hits, err
}

// hits decodes the one result set of a search.
func (s *Store) hits(res []client.SearchResult, account apiary.AccountID, op string) ([]storage.Hit, error) {
	if len(res) == 0 {
		return nil, nil
	}
	r := res[0]
	if r.Err != nil {
		return nil, classify(r.Err, op, string(account))
	}
	recs, err := s.records(r.Fields, r.ResultCount, true)
	if err != nil {
		return nil, classify(err, op+" results", string(account))
	}
	if len(r.Scores) < len(recs) {
		return nil, classify(errors.New("fewer scores than results"), op+" results", string(account))
	}
	hits := make([]storage.Hit, len(recs))
	for i, rec := range recs {
		if rec.Account != account { // cannot happen: the filter says so
			return nil, apiary.E(apiary.KindOther, "milvus: %s returned another account's record", op)
		}
		hits[i] = storage.Hit{VectorRecord: rec, Score: r.Scores[i]}
	}
	return hits, nil
}

func (s *Store) searchParam(k int) (entity.SearchParam, error) {
	switch s.index {
	case entity.HNSW:
		return entity.NewIndexHNSWSearchParam(max(s.cfg.SearchEf, k))
	case entity.AUTOINDEX:
		return entity.NewIndexAUTOINDEXSearchParam(1)
	}
	return entity.NewIndexFlatSearchParam()
}

// Count implements storage.VectorStore.
func (s *Store) Count(ctx context.Context, account apiary.AccountID, f storage.VectorFilter) (int, error) {
	expr, err := (scope{account: account, document: f.Document, model: f.Model}).filter()
	if err != nil {
		return 0, fmt.Errorf("milvus: count: %w", err)
	}
	n, err := s.count(ctx, expr)
	if err != nil {
		return 0, classify(err, "count", string(account))
	}
	return int(n), nil
}

// Scan implements storage.VectorStore: one query through a query iterator,
// whose batches are ordered by primary key (account + ":" + chunk id, so
// chunk id order inside the account); limit above Milvus' limit of 16384 is
// lowered to it. It runs at the collection's consistency level.
func (s *Store) Scan(ctx context.Context, account apiary.AccountID, after apiary.ChunkID, limit int, f storage.VectorFilter) ([]storage.VectorRecord, error) {
	expr, err := (scope{account: account, document: f.Document, model: f.Model, after: after}).filter()
	if err != nil {
		return nil, fmt.Errorf("milvus: scan: %w", err)
	}
	if limit <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "milvus: scan: limit must be positive")
	}
	limit = min(limit, maxTopK)
	ctx, cancel := s.call(ctx)
	defer cancel()
	it, err := s.c.QueryIterator(ctx, client.NewQueryIteratorOption(s.cfg.Collection).
		WithExpr(expr).WithOutputFields(append(outputFields[:len(outputFields):len(outputFields)], fieldVector)...).WithBatchSize(limit))
	if err != nil {
		return nil, classify(err, "scan", string(account))
	}
	rs, err := it.Next(ctx)
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(err, "scan", string(account))
	}
	recs, err := s.records(rs, rs.Len(), true)
	if err != nil {
		return nil, classify(err, "scan results", string(account))
	}
	for _, r := range recs {
		if r.Account != account { // cannot happen: the filter says so
			return nil, apiary.E(apiary.KindOther, "milvus: scan returned another account's record")
		}
	}
	slices.SortFunc(recs, func(a, b storage.VectorRecord) int { return strings.Compare(string(a.ChunkID), string(b.ChunkID)) })
	return recs, nil
}

// records decodes n rows of result columns.
func (s *Store) records(rs client.ResultSet, n int, withVector bool) ([]storage.VectorRecord, error) {
	str := func(name string) (*entity.ColumnVarChar, error) {
		c, ok := rs.GetColumn(name).(*entity.ColumnVarChar)
		if !ok || c.Len() < n {
			return nil, fmt.Errorf("result column %s is missing", name)
		}
		return c, nil
	}
	i64 := func(name string) (*entity.ColumnInt64, error) {
		c, ok := rs.GetColumn(name).(*entity.ColumnInt64)
		if !ok || c.Len() < n {
			return nil, fmt.Errorf("result column %s is missing", name)
		}
		return c, nil
	}
	ids, err1 := str(fieldChunkID)
	accs, err2 := str(fieldAccount)
	docs, err3 := str(fieldDocument)
	sealed, err4 := str(fieldSealed)
	models, err5 := str(fieldModel)
	vers, err6 := i64(fieldVersion)
	idxs, err7 := i64(fieldChunkIndex)
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return nil, err
	}
	var vecs [][]float32
	if withVector {
		c, ok := rs.GetColumn(fieldVector).(*entity.ColumnFloatVector)
		if !ok || c.Len() < n {
			return nil, fmt.Errorf("result column %s is missing", fieldVector)
		}
		vecs = c.Data()
	}
	out := make([]storage.VectorRecord, n)
	for i := range out {
		b, err := base64.StdEncoding.DecodeString(sealed.Data()[i])
		if err != nil {
			return nil, fmt.Errorf("sealed column of row %d: %w", i, err)
		}
		out[i] = storage.VectorRecord{
			ChunkID:  apiary.ChunkID(ids.Data()[i]),
			Account:  apiary.AccountID(accs.Data()[i]),
			Document: apiary.DocumentID(docs.Data()[i]),
			Version:  uint64(vers.Data()[i]),
			Index:    int(idxs.Data()[i]),
			Sealed:   b,
			Model:    models.Data()[i],
		}
		if withVector {
			out[i].Vector = vecs[i]
		}
	}
	return out, nil
}

// Close releases the connection. The collection stays loaded for other
// processes. Calling Close again returns the first result.
func (s *Store) Close() error {
	s.closed.Do(func() { s.cerr = classify(s.c.Close(), "close", "") })
	return s.cerr
}

// countBatch is how many rows one CountByDocument round trip reads.
const countBatch = 4096

// CountByDocument returns how many chunks each of account's documents has,
// in one pass over the account's rows (a query iterator ordered by primary
// key), where Count asks once per document. Operators use it to reconcile
// the store with the document records.
func (s *Store) CountByDocument(ctx context.Context, account apiary.AccountID) (map[apiary.DocumentID]int, error) {
	expr, err := (scope{account: account}).filter()
	if err != nil {
		return nil, fmt.Errorf("milvus: count by document: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpenTimeout)
	defer cancel()
	it, err := s.c.QueryIterator(ctx, client.NewQueryIteratorOption(s.cfg.Collection).
		WithExpr(expr).WithOutputFields(fieldDocument).WithBatchSize(countBatch))
	if err != nil {
		return nil, classify(err, "count by document", string(account))
	}
	out := map[apiary.DocumentID]int{}
	for {
		rs, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, classify(err, "count by document", string(account))
		}
		docs, ok := rs.GetColumn(fieldDocument).(*entity.ColumnVarChar)
		if !ok {
			return nil, classify(errors.New("result column document is missing"), "count by document", string(account))
		}
		for i := range docs.Len() {
			d, _ := docs.ValueByIdx(i)
			out[apiary.DocumentID(d)]++
		}
	}
}
