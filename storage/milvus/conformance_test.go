package milvus

import (
	"testing"

	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

// TestConformance runs the VectorStore suite against a real Milvus server,
// each case on a fresh collection dropped when it ends.
func TestConformance(t *testing.T) {
	testAddr(t)
	storagetest.RunVectorStore(t, func(t *testing.T) storage.VectorStore {
		cfg := testConfig(t)
		cfg.Dim = storagetest.VectorDim
		return openWith(t, cfg)
	})
}
