package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/lexical"
	"github.com/apiaryhq/apiary/storage"
	localvec "github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/milvus"
)

// VectorsConfig chooses the vector store (--vectors, an entry of
// vectorStores).
type VectorsConfig struct {
	Name             string
	MilvusAddr       string
	MilvusCollection string
}

func (c *VectorsConfig) register(f *flags) {
	choice(f, &c.Name, "vectors", vectorStores, "vector store")
	f.str(&c.MilvusAddr, "milvus-addr", "", "Milvus address HOST:PORT")
	f.str(&c.MilvusCollection, "milvus-collection", "apiary_chunks", "Milvus collection")
}

// vectorStores are the vector stores --vectors names. Each is opened for
// the embedder's dimension (a.emb), refusing to open with another (a store
// holds one dimension), and closed after the workers stop.
var vectorStores = table[storage.VectorStore]{
	{
		name:  "local",
		about: "in the data dir",
		check: func(_ *Config, role string) error {
			if role != roleServe {
				return fmt.Errorf("apiary %s: the local vector store belongs to one process; use --vectors milvus (or apiary serve)", role)
			}
			return nil
		},
		open: func(_ context.Context, a *app) (storage.VectorStore, error) {
			return openLocalVectors(a, a.emb.Dim())
		},
	},
	{
		name: "milvus",
		check: func(cfg *Config, _ string) error {
			if cfg.Vectors.MilvusAddr == "" {
				return errors.New("--vectors milvus needs --milvus-addr HOST:PORT")
			}
			return nil
		},
		open: func(ctx context.Context, a *app) (storage.VectorStore, error) {
			s, err := milvus.Open(ctx, milvus.Config{Addr: a.cfg.Vectors.MilvusAddr, Collection: a.cfg.Vectors.MilvusCollection, Dim: a.emb.Dim()})
			switch {
			case errors.Is(err, apiary.ErrInvalid):
				// A collection holds one dimension: say what to do.
				return nil, fmt.Errorf("%w (the embedder makes vectors of dimension %d: chunks are re-embedded in place only at the same dimension; "+
					"use an embedder of the collection's dimension, or --milvus-collection NEW and ingest the documents again)", err, a.emb.Dim())
			case err != nil:
				return nil, err
			}
			return s, nil
		},
	},
}

// openLocalVectors opens the local vector store in the data dir for vectors
// of dim (0: any), sealing what it keeps at rest with atRestKeys over the
// app's key provider and records.
func openLocalVectors(a *app, dim int) (*localvec.Store, error) {
	return localvec.Open(filepath.Join(a.cfg.DataDir, "vectors"), localvec.Options{
		Logger: a.log,
		Dim:    dim,
		Keys:   atRestKeys{lexical.NewKeys(a.keys, a.recs, lexical.KeysConfig{})},
	})
}

// atRestKeys gives the local vector store each account's key for what it
// keeps at rest: derived from the account's lexical key (made once by the
// key provider, stored wrapped by the account's key), so it needs no key of
// its own, and is gone (NotFound) once the account's key is erased.
type atRestKeys struct{ lex *lexical.Keys }

func (k atRestKeys) Key(ctx context.Context, account apiary.AccountID) ([]byte, error) {
	lk, err := k.lex.Key(ctx, account)
	if err != nil {
		return nil, err
	}
	return lk.Derive("local vector store at rest")
}
