package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage"
)

// ErrDimension marks a re-embed refused because the stored chunks have
// another dimension than the embedder's vectors: a vector store holds one
// dimension, so chunks are re-embedded in place only at the same one.
var ErrDimension = errors.New("pipeline: the stored chunks have another dimension than the embedder")

// Model is the embedding model the pipeline embeds with: chunks of any
// other model are not searched.
func (p *Pipeline) Model() apiary.EmbeddingModel {
	return apiary.EmbeddingModel{Model: p.emb.Model(), Dim: p.emb.Dim()}
}

// StaleChunks returns how many of account's chunks were embedded by another
// model than the pipeline's (and so are not searched until re-embedded).
func (p *Pipeline) StaleChunks(ctx context.Context, account apiary.AccountID) (int, error) {
	all, err := p.vecs.Count(ctx, account, storage.VectorFilter{})
	if err != nil {
		return 0, fmt.Errorf("pipeline: count chunks: %w", err)
	}
	current, err := p.vecs.Count(ctx, account, storage.VectorFilter{Model: p.emb.Model()})
	if err != nil {
		return 0, fmt.Errorf("pipeline: count chunks: %w", err)
	}
	return max(all-current, 0), nil
}

// Reembed embeds the chunks of account's document doc again with the
// pipeline's embedder and writes them back under the same ids, sealed bytes
// unchanged, with the new vector and Model. It returns how many it
// re-embedded. It is idempotent: chunks already of the pipeline's model are
// skipped, so a run cut short and started again does only what is left.
//
// It reads the chunks a page (EmbedBatch) at a time, opens them with the
// document's data key and embeds them under the shared embedder budget, so
// that it takes its fair turn with ingestion. Chunks of another version than
// the document record's (superseded, or being written) and chunks that do
// not open with its key (see Ingest) are left as they are. A document
// deleted, or ingested again, meanwhile loses the chunks this call wrote
// back, as Ingest and DeleteDocument would have removed them.
//
// A document with no record is nothing to do. Stored chunks whose vectors
// have another dimension than the embedder's give an error that is
// ErrDimension (and of kind Invalid).
func (p *Pipeline) Reembed(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID) (int, error) {
	fail := func(err error) (int, error) {
		return 0, fmt.Errorf("pipeline: re-embed %q: %w", string(doc), err)
	}
	if err := account.Validate(); err != nil {
		return 0, err
	}
	if err := doc.Validate(); err != nil {
		return 0, err
	}
	rec, err := p.docs.Document(ctx, account, doc)
	if apiary.KindOf(err) == apiary.KindNotFound {
		return 0, nil
	}
	if err != nil {
		return fail(fmt.Errorf("read record: %w", err))
	}
	key, err := p.keys.Decrypt(ctx, account, rec.WrappedKey, keyContext(account, doc))
	if err != nil {
		return fail(fmt.Errorf("unwrap data key: %w", err))
	}
	defer encrypt.Wipe(key)

	// A chunk read back may not carry its term hashes (an adapter need not
	// return them): they are computed again from the text, as Ingest does.
	lk, err := p.lex.Key(ctx, account)
	if err != nil {
		return fail(err)
	}
	model, dim := p.emb.Model(), p.emb.Dim()
	done, unopened := 0, 0
	var after apiary.ChunkID
	for {
		page, err := p.vecs.Scan(ctx, account, after, p.cfg.EmbedBatch, storage.VectorFilter{Document: doc})
		if err != nil {
			return fail(fmt.Errorf("read chunks: %w", err))
		}
		var todo []storage.VectorRecord
		var texts []string
		for _, c := range page {
			if c.Model == model || c.Version != rec.Version {
				continue
			}
			if len(c.Vector) != dim {
				return fail(apiary.Wrap(ErrDimension, apiary.KindInvalid,
					"the stored chunks have %d dimensions and the embedder %s makes %d: re-embedding in place needs the same dimension; "+
						"keep an embedder of %d dimensions, or start with a new vector store and ingest the documents again",
					len(c.Vector), model, dim, len(c.Vector)))
			}
			text, err := openChunk(key, account, c)
			if err != nil {
				unopened++
				continue
			}
			todo = append(todo, c)
			texts = append(texts, text)
		}
		if len(todo) > 0 {
			vecs, err := p.embedBudgeted(ctx, account, texts)
			if err != nil {
				clear(texts)
				return fail(err)
			}
			for i := range todo {
				todo[i].Vector, todo[i].Model = vecs[i], model
				todo[i].Terms = lk.Document(texts[i])
			}
			clear(texts)
			if err := p.vecs.Upsert(ctx, account, todo); err != nil {
				return fail(fmt.Errorf("upsert chunks: %w", err))
			}
			done += len(todo)
		}
		if len(page) < p.cfg.EmbedBatch {
			break
		}
		after = page[len(page)-1].ChunkID
	}
	if unopened > 0 {
		p.cfg.Logger.WarnContext(ctx, "pipeline: re-embed left chunks that do not open with their document's key",
			"account", string(account), "document", string(doc), "chunks", unopened)
	}
	if done > 0 {
		if err := p.dropRewritten(ctx, account, doc, rec.Version); err != nil {
			return fail(err)
		}
	}
	return done, nil
}

// openChunk returns the text of a stored chunk sealed with key.
func openChunk(key []byte, account apiary.AccountID, c storage.VectorRecord) (string, error) {
	plain, err := encrypt.Open(key, c.Sealed, chunkAAD(account, c.Document, c.ChunkID))
	if err != nil {
		return "", err
	}
	defer encrypt.Wipe(plain)
	var sc sealedChunk
	if err := json.Unmarshal(plain, &sc); err != nil {
		return "", apiary.E(apiary.KindOther, "chunk %s is malformed", c.ChunkID)
	}
	return sc.Text, nil
}

// dropRewritten removes what Reembed wrote back for version of doc when the
// document was deleted (all its chunks go) or ingested again (the versions
// before the stored one go) while it ran.
func (p *Pipeline) dropRewritten(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID, version uint64) error {
	cur, err := p.docs.Document(ctx, account, doc)
	switch {
	case apiary.KindOf(err) == apiary.KindNotFound:
		err = p.vecs.DeleteDocument(ctx, account, doc, 0)
	case err != nil:
		return fmt.Errorf("read record: %w", err)
	case cur.Version != version:
		err = p.vecs.DeleteDocument(ctx, account, doc, cur.Version)
	}
	if err != nil {
		return fmt.Errorf("remove superseded chunks: %w", err)
	}
	return nil
}
