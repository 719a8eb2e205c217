package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/lexical"
	"github.com/apiaryhq/apiary/storage"
	localvec "github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/milvus"
	"github.com/apiaryhq/apiary/storage/vecguard"
)

// VectorsConfig chooses the vector store (--vectors, an entry of
// vectorStores).
type VectorsConfig struct {
	Name             string
	MilvusAddr       string
	MilvusCollection string
	Milvus           milvusAccess
	// Protection: new accounts' vectors are stored under a secret
	// rotation (storage/vecguard).
	Protection bool
}

// milvusAccess is how Apiary reaches Milvus: TLS, client certificate and a
// user's credentials.
type milvusAccess struct {
	TLS      bool
	CA       string
	Cert     string
	Key      string
	Username string
	Password secret // APIARY_MILVUS_PASSWORD, environment only; never printed
}

func (c *milvusAccess) register(f *flags) {
	f.bool(&c.TLS, "milvus-tls", "TLS to Milvus with the system's roots (implied by --milvus-ca or --milvus-cert)")
	f.str(&c.CA, "milvus-ca", "", "CA certificates (PEM) that sign the Milvus server's TLS certificate")
	f.str(&c.Cert, "milvus-cert", "", "client certificate (PEM) for Milvus mutual TLS")
	f.str(&c.Key, "milvus-key", "", "client key (PEM) for Milvus mutual TLS")
	f.str(&c.Username, "milvus-username", "", "Milvus user (its password in APIARY_MILVUS_PASSWORD)")
	c.Password = secret(os.Getenv("APIARY_MILVUS_PASSWORD"))
}

// config is c applied to a Milvus store configuration.
func (c milvusAccess) config(cfg milvus.Config) milvus.Config {
	cfg.TLS, cfg.CA, cfg.Cert, cfg.Key = c.TLS, c.CA, c.Cert, c.Key
	cfg.Username, cfg.Password = c.Username, string(c.Password)
	return cfg
}

func (c *VectorsConfig) register(f *flags) {
	choice(f, &c.Name, "vectors", vectorStores, "vector store")
	f.str(&c.MilvusAddr, "milvus-addr", "", "Milvus address HOST:PORT")
	f.str(&c.MilvusCollection, "milvus-collection", "apiary_chunks", "Milvus collection")
	c.Milvus.register(f)
	f.boolOr(&c.Protection, "vector-protection", true,
		"store each new account's vectors under a secret rotation derived from its key (=false: as embedded; accounts decided before keep their way)")
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
			s, err := openLocalVectors(a, a.emb.Dim())
			if err != nil {
				return nil, err
			}
			return protectVectors(a, s)
		},
	},
	{
		name: "milvus",
		check: func(cfg *Config, _ string) error {
			if cfg.Vectors.MilvusAddr == "" {
				return errors.New("--vectors milvus needs --milvus-addr HOST:PORT")
			}
			if m := cfg.Vectors.Milvus; (m.Cert == "") != (m.Key == "") {
				return errors.New("--milvus-cert and --milvus-key go together")
			}
			return nil
		},
		open: func(ctx context.Context, a *app) (storage.VectorStore, error) {
			s, err := milvus.Open(ctx, a.cfg.Vectors.Milvus.config(milvus.Config{Addr: a.cfg.Vectors.MilvusAddr, Collection: a.cfg.Vectors.MilvusCollection, Dim: a.emb.Dim()}))
			switch {
			case errors.Is(err, apiary.ErrInvalid):
				// A collection holds one dimension: say what to do.
				return nil, fmt.Errorf("%w (the embedder makes vectors of dimension %d: chunks are re-embedded in place only at the same dimension; "+
					"use an embedder of the collection's dimension, or --milvus-collection NEW and ingest the documents again)", err, a.emb.Dim())
			case err != nil:
				return nil, err
			}
			return protectVectors(a, s)
		},
	},
}

// protectVectors puts vector protection over s: every account's vectors
// decided protected are stored under a secret rotation made from its
// protection key (derived from its lexical key), whatever
// --vector-protection says now; the flag decides for new accounts.
func protectVectors(a *app, s storage.VectorStore) (storage.VectorStore, error) {
	g, err := vecguard.New(s, a.lexicalKeys().Derived("vector protection"), a.recs,
		vecguard.Options{Dim: a.emb.Dim(), Protect: a.cfg.Vectors.Protection})
	if err != nil {
		s.Close()
		return nil, err
	}
	a.forgets.add(g) // its rotations, made from the account's key
	return g, nil
}

// openLocalVectors opens the local vector store in the data dir for vectors
// of dim (0: any), sealing what it keeps at rest with a key per account
// derived from its lexical key.
func openLocalVectors(a *app, dim int) (*localvec.Store, error) {
	return localvec.Open(filepath.Join(a.cfg.DataDir, "vectors"), localvec.Options{
		Logger: a.log,
		Dim:    dim,
		Keys:   a.lexicalKeys().Derived("local vector store at rest"),
	})
}

// lexicalKeys are new lexical keys over the app's key provider and
// records, whose cache an account's deletion empties (forget.go).
func (a *app) lexicalKeys() *lexical.Keys {
	k := lexical.NewKeys(a.keys, a.recs, lexical.KeysConfig{})
	a.forgets.add(k)
	return k
}
