package milvus

import (
	"testing"

	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/storagetest"
	"github.com/apiaryhq/apiary/storage/vecguard/vecguardtest"
)

// The VectorStore suite passes over vector protection (storage/vecguard)
// and Milvus.
func TestConformanceProtected(t *testing.T) {
	testAddr(t)
	storagetest.RunVectorStore(t, func(t *testing.T) storage.VectorStore {
		cfg := testConfig(t)
		cfg.Dim = storagetest.VectorDim
		return vecguardtest.Wrap(t, openWith(t, cfg), storagetest.VectorDim)
	})
}

// With protection on, a fixed query set gives the same ids in the same
// order as with it off, and Milvus holds vectors that are not the
// embedder's.
func TestProtectionKeepsResults(t *testing.T) {
	testAddr(t)
	open := func() *Store {
		cfg := testConfig(t)
		cfg.Dim = vecguardtest.Dim
		return openWith(t, cfg)
	}
	plain, inner := open(), open()
	vecguardtest.RequireSameResults(t, plain, vecguardtest.Wrap(t, inner, vecguardtest.Dim), inner)
}
