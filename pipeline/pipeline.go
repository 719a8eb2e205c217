package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/chunk"
	"github.com/apiaryhq/apiary/pipeline/embed"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/extract"
	"github.com/apiaryhq/apiary/pipeline/lexical"
	"github.com/apiaryhq/apiary/storage"
)

// Docs is the part of the record store the pipeline needs: document records
// and each account's wrapped lexical key, scoped to an account.
type Docs interface {
	lexical.KeyRecords
	// Document returns account's document id, or an error of kind NotFound.
	Document(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) (apiary.DocumentRecord, error)
	// PutDocument stores rec under rec.Account, replacing a record of the
	// same or an older version; Conflict when a newer version is stored
	// (a compare-and-swap, so that an older version can never win a race).
	PutDocument(ctx context.Context, rec apiary.DocumentRecord) error
	// DeleteDocument removes account's document id; NotFound if there is none.
	DeleteDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) error
	// Documents lists account's documents a page at a time.
	Documents(ctx context.Context, account apiary.AccountID, limit int, cursor string) ([]apiary.DocumentRecord, string, error)
}

// Defaults and limits.
const (
	DefaultEmbedBatch       = 64
	DefaultMaxDocumentBytes = 32 << 20
	DefaultEmbedConcurrency = 2
	DefaultEmbedWait        = 10 * time.Millisecond
	// MaxTopK is the most results one Search returns.
	MaxTopK = 100
	// metadataOverfetch: with a metadata filter, Search fetches this many
	// times TopK hits (at most maxFetch), since metadata is sealed (in the
	// document record) and can only be filtered once the record is opened.
	metadataOverfetch = 10
	maxFetch          = 1000
	// FuseDepth is how many hits each leg of a hybrid search contributes to
	// the fusion (more when TopK and the overfetch ask for more).
	FuseDepth = 100
	// RRFK is the constant of reciprocal rank fusion: a hit ranked r (from
	// 1) by a leg adds 1/(RRFK + r) to its fused score.
	RRFK = 60
)

// Config configures a Pipeline.
type Config struct {
	// Chunk sizes the chunks (see package chunk for defaults).
	Chunk chunk.Config
	// EmbedBatch is how many chunks go to the embedder in one call. Default 64.
	EmbedBatch int
	// MaxDocumentBytes is the largest document (raw, or text when there is
	// no raw content) Ingest accepts; larger is TooLarge. Default 32 MiB.
	MaxDocumentBytes int
	// EmbedConcurrency is how many embedder calls may run at once across
	// every Ingest of this Pipeline (queries are not queued behind them).
	// Ingest calls queue their chunks, and each call to the embedder takes
	// up to EmbedBatch of them from every waiting document, filled from the
	// waiting accounts in turn, so one account's backlog does not keep
	// another account's documents waiting (coalesce.go). Default: the
	// embedder's MaxConcurrency (embed.Concurrent), else 2.
	EmbedConcurrency int
	// EmbedWait is how long queued chunks may wait for a batch to fill
	// before a call takes what there is. Default 10ms.
	EmbedWait time.Duration
	// Logger gets warnings the callers do not see, such as chunks a query
	// skipped. Default: discard.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	c.Chunk = c.Chunk.WithDefaults()
	if c.EmbedBatch == 0 {
		c.EmbedBatch = DefaultEmbedBatch
	}
	if c.MaxDocumentBytes == 0 {
		c.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	if c.EmbedConcurrency == 0 {
		c.EmbedConcurrency = DefaultEmbedConcurrency
	}
	if c.EmbedWait == 0 {
		c.EmbedWait = DefaultEmbedWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with c once defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if err := c.Chunk.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.EmbedBatch < 1 {
		errs = append(errs, fmt.Errorf("pipeline: EmbedBatch must be positive, got %d", c.EmbedBatch))
	}
	if c.MaxDocumentBytes < 1 {
		errs = append(errs, fmt.Errorf("pipeline: MaxDocumentBytes must be positive, got %d", c.MaxDocumentBytes))
	}
	if c.EmbedConcurrency < 1 {
		errs = append(errs, fmt.Errorf("pipeline: EmbedConcurrency must be positive, got %d", c.EmbedConcurrency))
	}
	if c.EmbedWait < 0 || c.EmbedWait > time.Second {
		errs = append(errs, fmt.Errorf("pipeline: EmbedWait must be from 0 to 1s, got %v", c.EmbedWait))
	}
	return errors.Join(errs...)
}

// Pipeline ingests documents and answers queries. Safe for concurrent use.
type Pipeline struct {
	cfg   Config
	emb   embed.Embedder
	keys  encrypt.KeyProvider
	vecs  storage.VectorStore
	docs  Docs
	lex   *lexical.Keys
	embed *batcher // coalesces every Ingest's chunks into embedder calls, fairly among accounts
	now   func() time.Time
}

// New returns a Pipeline over its ports. It does not close them.
func New(cfg Config, emb embed.Embedder, keys encrypt.KeyProvider, vecs storage.VectorStore, docs Docs) (*Pipeline, error) {
	if c, ok := emb.(embed.Concurrent); ok && cfg.EmbedConcurrency == 0 {
		// More calls than it runs at once would each take a batch early,
		// while the texts behind them could still have filled it.
		cfg.EmbedConcurrency = c.MaxConcurrency()
	}
	cfg.setDefaults()
	err := cfg.Validate()
	if emb == nil || keys == nil || vecs == nil || docs == nil {
		err = errors.Join(err, errors.New("pipeline: embedder, key provider, vector store and record store are required"))
	}
	if err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "pipeline: config")
	}
	return &Pipeline{
		cfg:   cfg,
		emb:   emb,
		keys:  keys,
		vecs:  vecs,
		docs:  docs,
		lex:   lexical.NewKeys(keys, docs, lexical.KeysConfig{}),
		embed: newBatcher(emb, cfg.EmbedBatch, cfg.EmbedConcurrency, cfg.EmbedWait),
		now:   time.Now,
	}, nil
}

// sealedChunk is what a chunk's Sealed bytes hold once opened: its text
// only. The document's title and metadata are sealed once, in its record
// (chunks sealed by earlier releases also hold a copy of the metadata, which
// is ignored).
type sealedChunk struct {
	Text string `json:"text"`
	// Pages is the first and last page (from 1) of the text, for formats
	// made of pages (PDF, PPTX); absent otherwise.
	Pages []int `json:"pages,omitempty"`
}

// sealedRecord is what a document record's Sealed bytes hold once opened.
type sealedRecord struct {
	Title    string            `json:"title,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func keyContext(account apiary.AccountID, doc apiary.DocumentID) encrypt.Context {
	return encrypt.Context{"account": string(account), "document": string(doc)}
}

func chunkAAD(account apiary.AccountID, doc apiary.DocumentID, id apiary.ChunkID) []byte {
	return encrypt.AAD(string(account), string(doc), string(id))
}

// recordAAD binds a record's sealed title and metadata; "record" can never
// be a chunk id (32 hex digits), so it never opens as a chunk.
func recordAAD(account apiary.AccountID, doc apiary.DocumentID) []byte {
	return encrypt.AAD(string(account), string(doc), "record")
}

// Ingest runs one document of job (job.Account, job.Version) through the
// pipeline and returns the record it stored. Errors carry a Kind: Invalid for
// a document that will never ingest (unsupported type, bad UTF-8, no text),
// TooLarge, Conflict when a newer version is already stored, and the ports'
// kinds otherwise. They never include document text.
//
// Races between versions: the record is written with a compare-and-swap
// (Docs.PutDocument), so an older version that finishes after a newer one is
// refused, removes the chunks it wrote and returns Conflict; it never
// replaces the newer record nor deletes the newer chunks through that path.
// A job of the version already stored (a redelivery) reuses the record's data
// key and rewrites the same chunk ids, so its chunks stay readable.
//
// Remaining windows, which a per-job claim in the workers narrows:
//   - Two first attempts of the same version at once, on a document whose
//     record is not yet of that version, each generate a data key; their
//     chunk writes interleave, the last record written wins, and some chunks
//     are sealed with the losing key. Search skips (and logs) chunks that do
//     not open, so queries still answer; the skipped chunks stay unfound
//     until the document is ingested again (a redelivery of that version
//     rewrites every chunk under the record's key).
//   - After its record is written, Ingest removes the chunks of older
//     versions only (the port's DeleteDocument keeps keep and newer), so a
//     newer version written meanwhile is never touched.
func (p *Pipeline) Ingest(ctx context.Context, job apiary.Job, doc apiary.Document) (apiary.DocumentRecord, error) {
	account := job.Account
	if err := account.Validate(); err != nil {
		return apiary.DocumentRecord{}, err
	}
	if err := doc.ID.Validate(); err != nil {
		return apiary.DocumentRecord{}, err
	}
	if job.Version == 0 {
		return apiary.DocumentRecord{}, apiary.E(apiary.KindInvalid, "pipeline: ingest: job has no document version")
	}
	fail := func(err error) (apiary.DocumentRecord, error) {
		return apiary.DocumentRecord{}, fmt.Errorf("pipeline: ingest %q: %w", string(doc.ID), err)
	}
	if err := apiary.CheckTitle("title", doc.Title); err != nil {
		return fail(err)
	}
	if err := apiary.CheckMetadata("metadata", doc.Metadata); err != nil {
		return fail(err)
	}

	text, title, pages, size, err := p.text(ctx, doc)
	if err != nil {
		return fail(err)
	}
	pieces := chunk.Split(p.cfg.Chunk, text)
	if len(pieces) == 0 {
		return fail(apiary.E(apiary.KindInvalid, "document has no text"))
	}

	existing, err := p.docs.Document(ctx, account, doc.ID)
	switch {
	case apiary.KindOf(err) == apiary.KindNotFound:
		existing, err = apiary.DocumentRecord{}, nil
	case err != nil:
		return fail(fmt.Errorf("read record: %w", err))
	case existing.Version > job.Version:
		return fail(superseded())
	}

	dk, err := p.dataKey(ctx, account, doc.ID, job.Version, existing)
	if err != nil {
		return fail(err)
	}
	defer encrypt.Wipe(dk.Plaintext)
	lk, err := p.lex.Key(ctx, account)
	if err != nil {
		return fail(err)
	}

	for from := 0; from < len(pieces); from += p.cfg.EmbedBatch {
		batch := pieces[from:min(from+p.cfg.EmbedBatch, len(pieces))]
		if err := p.writeBatch(ctx, account, doc, job.Version, from, batch, pages, dk.Plaintext, lk); err != nil {
			return fail(err)
		}
	}

	sealedMeta, err := p.sealRecord(account, doc.ID, title, doc.Metadata, dk.Plaintext)
	if err != nil {
		return fail(err)
	}
	now := p.now().UTC()
	rec := apiary.DocumentRecord{
		ID:          doc.ID,
		Account:     account,
		Version:     job.Version,
		Job:         job.ID,
		Chunks:      len(pieces),
		Bytes:       size,
		ContentType: doc.ContentType,
		Origin:      doc.Origin,
		WrappedKey:  dk.Wrapped,
		Sealed:      sealedMeta,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	if !existing.CreatedAt.IsZero() {
		rec.CreatedAt = existing.CreatedAt
	}
	if err := p.docs.PutDocument(ctx, rec); err != nil {
		if apiary.KindOf(err) == apiary.KindConflict {
			// A newer version landed while this one was embedding: leave
			// it be, and remove what this attempt wrote.
			if derr := p.removeSuperseded(ctx, account, doc.ID, job.Version); derr != nil {
				return fail(derr)
			}
		}
		return fail(fmt.Errorf("write record: %w", err))
	}
	if err := p.vecs.DeleteDocument(ctx, account, doc.ID, job.Version); err != nil {
		return fail(fmt.Errorf("remove older chunks: %w", err))
	}
	return rec, nil
}

func superseded() error {
	return apiary.E(apiary.KindConflict, "superseded by a newer version")
}

// removeSuperseded removes the chunks of version of account's document once
// a newer version's record is stored, keeping the newer version's. When the
// stored record is not newer (it was deleted meanwhile) it removes nothing.
func (p *Pipeline) removeSuperseded(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID, version uint64) error {
	cur, err := p.docs.Document(ctx, account, doc)
	if err != nil || cur.Version <= version {
		return nil // nothing newer to keep; leftover chunks stay invisible to Search
	}
	if err := p.vecs.DeleteDocument(ctx, account, doc, cur.Version); err != nil {
		return fmt.Errorf("remove superseded chunks: %w", err)
	}
	return nil
}

// text returns the document's text, its title, where its pages start
// (extract.Document.Pages) and its size in bytes.
func (p *Pipeline) text(ctx context.Context, doc apiary.Document) (text, title string, pages []int, size int, err error) {
	title = doc.Title
	if len(doc.Raw) > 0 {
		size = len(doc.Raw)
		if size > p.cfg.MaxDocumentBytes {
			return "", "", nil, size, apiary.E(apiary.KindTooLarge, "document is %d bytes, the limit is %d", size, p.cfg.MaxDocumentBytes)
		}
		f, err := extract.DetectData(string(doc.ID), doc.ContentType, doc.Raw)
		if err != nil {
			return "", "", nil, size, err
		}
		d, err := extract.ExtractDocument(ctx, f, doc.Raw, p.cfg.MaxDocumentBytes)
		if err != nil {
			return "", "", nil, size, err
		}
		if title == "" {
			title = d.Title
		}
		text, pages = d.Text, d.Pages
	} else {
		size = len(doc.Text)
		if size > p.cfg.MaxDocumentBytes {
			return "", "", nil, size, apiary.E(apiary.KindTooLarge, "document is %d bytes, the limit is %d", size, p.cfg.MaxDocumentBytes)
		}
		if !utf8.ValidString(doc.Text) {
			return "", "", nil, size, apiary.E(apiary.KindInvalid, "document text is not valid UTF-8")
		}
		text = doc.Text
	}
	if strings.TrimSpace(text) == "" {
		return "", "", nil, size, apiary.E(apiary.KindInvalid, "document has no text")
	}
	return text, title, pages, size, nil
}

// pageRange returns the first and last page (from 1) of the text from
// start to end, given where each page starts; nil without pages.
func pageRange(pages []int, start, end int) []int {
	if len(pages) == 0 {
		return nil
	}
	// The page of an offset is the last page starting at or before it.
	pageOf := func(off int) int { return max(sort.SearchInts(pages, off+1), 1) }
	return []int{pageOf(start), pageOf(max(end-1, start))}
}

// dataKey returns the document's data key: the existing record's when it is
// of the same version (a redelivered job rewrites the same chunks under the
// same key), otherwise a fresh one.
func (p *Pipeline) dataKey(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID, version uint64, existing apiary.DocumentRecord) (encrypt.DataKey, error) {
	if existing.Version == version && len(existing.WrappedKey) > 0 {
		pt, err := p.keys.Decrypt(ctx, account, existing.WrappedKey, keyContext(account, doc))
		if err != nil {
			return encrypt.DataKey{}, fmt.Errorf("unwrap data key: %w", err)
		}
		return encrypt.DataKey{Plaintext: pt, Wrapped: existing.WrappedKey}, nil
	}
	dk, err := p.keys.GenerateDataKey(ctx, account, keyContext(account, doc))
	if err != nil {
		return encrypt.DataKey{}, fmt.Errorf("generate data key: %w", err)
	}
	return dk, nil
}

// writeBatch embeds, hashes the terms of, seals and upserts one batch of
// pieces; from is the index of the batch's first piece in the document,
// pages where the document's pages start (nil: no pages).
func (p *Pipeline) writeBatch(ctx context.Context, account apiary.AccountID, doc apiary.Document, version uint64, from int, batch []chunk.Piece, pages []int, key []byte, lk lexical.Key) error {
	texts := make([]string, len(batch))
	for i, pc := range batch {
		texts[i] = pc.Text
	}
	vecs, err := p.embedBudgeted(ctx, account, texts)
	if err != nil {
		return err
	}
	recs := make([]storage.VectorRecord, len(batch))
	for i, pc := range batch {
		index := from + i
		id := apiary.ChunkIDFor(account, doc.ID, version, index)
		plain, err := json.Marshal(sealedChunk{Text: pc.Text, Pages: pageRange(pages, pc.Start, pc.End)})
		if err != nil {
			return fmt.Errorf("encode chunk %d: %w", index, err)
		}
		sealed, err := encrypt.Seal(key, plain, chunkAAD(account, doc.ID, id))
		encrypt.Wipe(plain)
		if err != nil {
			return fmt.Errorf("seal chunk %d: %w", index, err)
		}
		recs[i] = storage.VectorRecord{
			ChunkID:  id,
			Account:  account,
			Document: doc.ID,
			Version:  version,
			Index:    index,
			Vector:   vecs[i],
			Sealed:   sealed,
			Model:    p.emb.Model(),
			Terms:    lk.Document(pc.Text),
		}
	}
	if err := p.vecs.Upsert(ctx, account, recs); err != nil {
		return fmt.Errorf("upsert chunks: %w", err)
	}
	return nil
}

// embedBudgeted embeds texts through the shared batcher (coalesced with
// other documents' chunks, under the embedder budget) and checks that the
// embedder kept its promises.
func (p *Pipeline) embedBudgeted(ctx context.Context, account apiary.AccountID, texts []string) ([][]float32, error) {
	vecs, err := p.embed.embed(ctx, account, texts)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait for embedder: %w", err)
		}
		return nil, fmt.Errorf("embed: %w", err)
	}
	return p.checkVectors(texts, vecs)
}

// checkVectors checks that the embedder kept its promises for texts.
func (p *Pipeline) checkVectors(texts []string, vecs [][]float32) ([][]float32, error) {
	if len(vecs) != len(texts) {
		return nil, fmt.Errorf("embed: %d vectors for %d texts", len(vecs), len(texts))
	}
	for i, v := range vecs {
		if len(v) != p.emb.Dim() {
			return nil, fmt.Errorf("embed: vector %d has %d dimensions, want %d", i, len(v), p.emb.Dim())
		}
	}
	return vecs, nil
}

func (p *Pipeline) sealRecord(account apiary.AccountID, doc apiary.DocumentID, title string, md map[string]string, key []byte) ([]byte, error) {
	if title == "" && len(md) == 0 {
		return nil, nil
	}
	plain, err := json.Marshal(sealedRecord{Title: title, Metadata: md})
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	defer encrypt.Wipe(plain)
	sealed, err := encrypt.Seal(key, plain, recordAAD(account, doc))
	if err != nil {
		return nil, fmt.Errorf("seal record: %w", err)
	}
	return sealed, nil
}

// Mode is how Search finds chunks.
type Mode string

const (
	// ModeHybrid fuses the dense and the lexical leg by reciprocal rank
	// fusion: each leg's best FuseDepth hits, a hit ranked r by a leg
	// scoring 1/(RRFK + r) there, summed. The default.
	ModeHybrid Mode = "hybrid"
	// ModeDense ranks by the cosine similarity of embeddings.
	ModeDense Mode = "dense"
	// ModeLexical ranks by BM25 over the keyed hashes of the terms.
	ModeLexical Mode = "lexical"
)

// Modes are the modes Search knows, the default first.
var Modes = []Mode{ModeHybrid, ModeDense, ModeLexical}

// Query is a search inside one account.
type Query struct {
	// Mode is how to search; empty is ModeHybrid.
	Mode Mode
	// Text is what to look for. Required.
	Text string
	// TopK is how many results at most: 1 to MaxTopK. Required: the
	// caller (the API) owns the default.
	TopK int
	// Document, when set, limits the search to that document.
	Document apiary.DocumentID
	// Metadata, when set, keeps only chunks whose document metadata holds
	// every one of these key/value pairs.
	Metadata map[string]string
}

// Result is one matching chunk, opened. It is no wire type: the API
// renders it through a view of its own.
type Result struct {
	DocumentID apiary.DocumentID
	ChunkID    apiary.ChunkID
	Text       string
	// Score is the fused score for ModeHybrid (a sum of 1/(RRFK + rank),
	// at most 2/(RRFK+1)), the cosine similarity for ModeDense and the
	// BM25 score for ModeLexical. Higher is better.
	Score    float32
	Metadata map[string]string // never nil
	Title    string
	// Pages is the chunk's first and last page (from 1) for a document
	// made of pages (PDF, PPTX slides); nil otherwise.
	Pages *PageRange
}

// PageRange is the pages a chunk's text comes from, First ≤ Last.
type PageRange struct{ First, Last int }

// openDoc is what Search learns about a document, once per query.
type openDoc struct {
	rec  apiary.DocumentRecord
	key  []byte
	info DocumentInfo // title and metadata, opened from the record
	gone bool         // no record: the document was deleted
}

// Search returns up to q.TopK chunks of account that best match q.Text by
// q.Mode, best first. It asserts its invariants and defaults nothing but the
// mode: Invalid for blank or non-UTF-8 text, a TopK outside 1..MaxTopK (0
// included), an unknown mode or a malformed document id. ModeLexical on a
// store without lexical search is Invalid (storage.ErrNoLexical); ModeHybrid
// there ranks by the dense leg alone.
//
// Only chunks embedded by the pipeline's embedder (its Model) are searched:
// chunks of another model wait for a re-embed job (Reembed).
//
// A chunk that does not open with its document's current key (sealed by a
// losing concurrent attempt, see Ingest) is skipped, not an error: the query
// fetches further hits to fill TopK, and one warning per query names the
// account and the documents concerned.
func (p *Pipeline) Search(ctx context.Context, account apiary.AccountID, q Query) ([]Result, error) {
	if err := account.Validate(); err != nil {
		return nil, err
	}
	if strings.TrimSpace(q.Text) == "" {
		return nil, apiary.E(apiary.KindInvalid, "query text is required")
	}
	if !utf8.ValidString(q.Text) {
		return nil, apiary.E(apiary.KindInvalid, "query text is not valid UTF-8")
	}
	if q.TopK < 1 || q.TopK > MaxTopK {
		return nil, apiary.E(apiary.KindInvalid, "top_k must be between 1 and %d", MaxTopK)
	}
	if q.Document != "" {
		if err := q.Document.Validate(); err != nil {
			return nil, err
		}
	}
	fetch, err := p.fetcher(ctx, account, q)
	if err != nil {
		return nil, fmt.Errorf("pipeline: search: %w", err)
	}
	k := q.TopK
	if len(q.Metadata) > 0 {
		k = min(q.TopK*metadataOverfetch, maxFetch)
	}

	docs := make(map[apiary.DocumentID]*openDoc)
	defer func() {
		for _, d := range docs {
			encrypt.Wipe(d.key)
		}
	}()
	results := make([]Result, 0, q.TopK)
	seen := make(map[apiary.ChunkID]bool)
	var unopened []apiary.DocumentID // a document per chunk that did not open
	for {
		hits, fetched, more, err := fetch(k)
		if err != nil {
			return nil, fmt.Errorf("pipeline: search: %w", err)
		}
		skipped := len(unopened)
		for _, h := range hits {
			if len(results) == q.TopK {
				break
			}
			if seen[h.ChunkID] {
				continue // looked at by an earlier, smaller fetch
			}
			seen[h.ChunkID] = true
			r, ok, err := p.openHit(ctx, account, h, q.Metadata, docs)
			switch {
			case errors.Is(err, errUnopened):
				unopened = append(unopened, h.Document)
			case err != nil:
				return nil, fmt.Errorf("pipeline: search: %w", err)
			case ok:
				results = append(results, r)
			}
		}
		// Chunks that did not open took places in this fetch: fetch more to
		// fill TopK, when the store may hold more.
		if len(results) == q.TopK || len(unopened) == skipped || !more || fetched >= maxFetch {
			break
		}
		k = min(fetched*2, maxFetch)
	}
	if len(unopened) > 0 {
		slices.Sort(unopened)
		p.cfg.Logger.WarnContext(ctx, "pipeline: search skipped chunks that do not open with their document's key",
			"account", string(account), "documents", slices.Compact(unopened), "chunks", len(unopened))
	}
	return results, nil
}

// fetchFunc fetches a query's best hits, asking each leg for at least k:
// the hits in order, how many each leg was asked for, and whether the store
// may hold more.
type fetchFunc func(k int) (hits []storage.Hit, fetched int, more bool, err error)

// fetcher embeds or hashes q's text as its mode needs and returns the
// function that fetches its hits.
func (p *Pipeline) fetcher(ctx context.Context, account apiary.AccountID, q Query) (fetchFunc, error) {
	mode := cmp.Or(q.Mode, ModeHybrid)
	if !slices.Contains(Modes, mode) {
		return nil, apiary.E(apiary.KindInvalid, "mode must be one of hybrid, dense or lexical")
	}
	f := storage.VectorFilter{Document: q.Document, Model: p.emb.Model()}
	var vec []float32
	if mode != ModeLexical {
		v, err := embed.Query(ctx, p.emb, q.Text) // with the model's query prefix, if it has one
		if err != nil {
			return nil, fmt.Errorf("embed: %w", err)
		}
		vecs, err := p.checkVectors([]string{q.Text}, [][]float32{v})
		if err != nil {
			return nil, err
		}
		vec = vecs[0]
	}
	var terms []uint32
	if mode != ModeDense {
		lk, err := p.lex.Key(ctx, account)
		if err != nil {
			return nil, err
		}
		terms = lk.Query(q.Text)
	}
	dense := func(k int) ([]storage.Hit, error) { return p.vecs.Search(ctx, account, vec, k, f) }
	lexical := func(k int) ([]storage.Hit, error) {
		if len(terms) == 0 {
			return nil, nil // nothing but stop words and punctuation
		}
		// Words do not depend on the embedding model: chunks not yet
		// re-embedded for the current model are still found by their words.
		return p.vecs.SearchLexical(ctx, account, terms, k, storage.VectorFilter{Document: f.Document})
	}
	one := func(leg func(int) ([]storage.Hit, error)) fetchFunc {
		return func(k int) ([]storage.Hit, int, bool, error) {
			hits, err := leg(k)
			return hits, k, len(hits) == k, err
		}
	}
	switch mode {
	case ModeDense:
		return one(dense), nil
	case ModeLexical:
		return one(lexical), nil
	}
	return func(k int) ([]storage.Hit, int, bool, error) {
		depth := max(k, FuseDepth)
		d, err := dense(depth)
		if err != nil {
			return nil, 0, false, err
		}
		l, err := lexical(depth)
		if errors.Is(err, storage.ErrNoLexical) {
			l, err = nil, nil // a store without lexical search: dense alone
		}
		if err != nil {
			return nil, 0, false, err
		}
		return fuse(d, l), depth, len(d) == depth || len(l) == depth, nil
	}, nil
}

// fuse merges ranked lists by reciprocal rank fusion: a hit ranked r (from
// 1) in a list scores 1/(RRFK + r) there; its fused score, the sum over the
// lists, becomes its Score. Ties go to the smaller ChunkID.
func fuse(lists ...[]storage.Hit) []storage.Hit {
	scores := map[apiary.ChunkID]float64{}
	var out []storage.Hit
	for _, list := range lists {
		for r, h := range list {
			if _, ok := scores[h.ChunkID]; !ok {
				out = append(out, h)
			}
			scores[h.ChunkID] += 1 / float64(RRFK+r+1)
		}
	}
	slices.SortFunc(out, func(a, b storage.Hit) int {
		return cmp.Or(cmp.Compare(scores[b.ChunkID], scores[a.ChunkID]), cmp.Compare(a.ChunkID, b.ChunkID))
	})
	for i := range out {
		out[i].Score = float32(scores[out[i].ChunkID])
	}
	return out
}

// errUnopened marks a chunk that does not open with its document's key.
var errUnopened = errors.New("chunk does not open with its document's key")

// openHit opens one hit for a query. ok is false for a hit the query does
// not show: another account's, a deleted document's, another version's, or
// one the metadata filter drops. A chunk that does not open with its
// document's key (see Ingest) gives an error that is errUnopened.
func (p *Pipeline) openHit(ctx context.Context, account apiary.AccountID, h storage.Hit, filter map[string]string, docs map[apiary.DocumentID]*openDoc) (r Result, ok bool, err error) {
	if h.Account != account {
		return Result{}, false, nil // a store that broke its promise; never show another account's chunk
	}
	d, err := p.openDocument(ctx, account, h.Document, docs)
	if err != nil {
		return Result{}, false, err
	}
	if d.gone || h.Version != d.rec.Version {
		return Result{}, false, nil // deleted, or an older or not yet committed version
	}
	if !matches(d.info.Metadata, filter) {
		return Result{}, false, nil
	}
	plain, err := encrypt.Open(d.key, h.Sealed, chunkAAD(account, h.Document, h.ChunkID))
	if err != nil {
		return Result{}, false, fmt.Errorf("open chunk %s: %w: %w", h.ChunkID, errUnopened, err)
	}
	var c sealedChunk
	err = json.Unmarshal(plain, &c)
	encrypt.Wipe(plain)
	if err != nil {
		return Result{}, false, apiary.E(apiary.KindOther, "chunk %s is malformed", h.ChunkID)
	}
	var pages *PageRange
	if len(c.Pages) == 2 {
		pages = &PageRange{First: c.Pages[0], Last: c.Pages[1]}
	}
	return Result{
		DocumentID: h.Document,
		ChunkID:    h.ChunkID,
		Text:       c.Text,
		Score:      h.Score,
		Metadata:   d.info.Metadata,
		Title:      d.info.Title,
		Pages:      pages,
	}, true, nil
}

// openDocument returns what is known of account's document id, reading its
// record and unwrapping its key on first use in this query.
func (p *Pipeline) openDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID, cache map[apiary.DocumentID]*openDoc) (*openDoc, error) {
	if d, ok := cache[id]; ok {
		return d, nil
	}
	d := &openDoc{}
	cache[id] = d
	rec, err := p.docs.Document(ctx, account, id)
	if apiary.KindOf(err) == apiary.KindNotFound {
		d.gone = true
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read record: %w", err)
	}
	d.rec = rec
	d.key, err = p.keys.Decrypt(ctx, account, rec.WrappedKey, keyContext(account, id))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	d.info, err = openRecord(rec, d.key)
	if err != nil {
		return nil, err
	}
	if d.info.Metadata == nil {
		d.info.Metadata = map[string]string{}
	}
	return d, nil
}

func matches(md, want map[string]string) bool {
	for k, v := range want {
		if got, ok := md[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// DeleteDocument removes account's document: its vectors, then its record
// and with it the wrapped data key. NotFound when there is no record.
func (p *Pipeline) DeleteDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	if err := id.Validate(); err != nil {
		return err
	}
	if _, err := p.docs.Document(ctx, account, id); err != nil {
		return fmt.Errorf("pipeline: delete document: %w", err)
	}
	if err := p.vecs.DeleteDocument(ctx, account, id, 0); err != nil {
		return fmt.Errorf("pipeline: delete document chunks: %w", err)
	}
	if err := p.docs.DeleteDocument(ctx, account, id); err != nil {
		return fmt.Errorf("pipeline: delete document record: %w", err)
	}
	return nil
}

// DocumentInfo is a document record's sealed part, opened.
type DocumentInfo struct {
	Title    string            `json:"title,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// DeleteAccount deletes every chunk of account from the vector store.
func (p *Pipeline) DeleteAccount(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	p.Forget(account) // its key is erased: no term is hashed with a cached copy
	if err := p.vecs.DeleteAccount(ctx, account); err != nil {
		return fmt.Errorf("pipeline: delete account chunks: %w", err)
	}
	return nil
}

// Forget drops account's lexical key from memory: the next use unwraps
// it again, which fails once the account's key is erased.
func (p *Pipeline) Forget(account apiary.AccountID) { p.lex.Forget(account) }

// Describe opens rec's sealed title and metadata.
func (p *Pipeline) Describe(ctx context.Context, rec apiary.DocumentRecord) (DocumentInfo, error) {
	if len(rec.Sealed) == 0 {
		return DocumentInfo{}, nil
	}
	key, err := p.keys.Decrypt(ctx, rec.Account, rec.WrappedKey, keyContext(rec.Account, rec.ID))
	if err != nil {
		return DocumentInfo{}, fmt.Errorf("pipeline: describe: unwrap data key: %w", err)
	}
	defer encrypt.Wipe(key)
	info, err := openRecord(rec, key)
	if err != nil {
		return DocumentInfo{}, fmt.Errorf("pipeline: describe: %w", err)
	}
	return info, nil
}

func openRecord(rec apiary.DocumentRecord, key []byte) (DocumentInfo, error) {
	if len(rec.Sealed) == 0 {
		return DocumentInfo{}, nil
	}
	plain, err := encrypt.Open(key, rec.Sealed, recordAAD(rec.Account, rec.ID))
	if err != nil {
		return DocumentInfo{}, fmt.Errorf("open record: %w", err)
	}
	defer encrypt.Wipe(plain)
	var s sealedRecord
	if err := json.Unmarshal(plain, &s); err != nil {
		return DocumentInfo{}, apiary.E(apiary.KindOther, "document record is malformed")
	}
	return DocumentInfo{Title: s.Title, Metadata: s.Metadata}, nil
}
