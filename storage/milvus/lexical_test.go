package milvus

import (
	"context"
	"testing"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

// A collection made by a release before lexical search opens for dense
// search; lexical search says why it is missing and what to do.
func TestCollectionWithoutLexicalFieldsServesDenseOnly(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	ctx := context.Background()
	c, err := client.NewClient(ctx, client.Config{Address: cfg.Addr})
	require.NoError(t, err)
	old := &Store{cfg: cfg}
	old.cfg.setDefaults()
	require.NoError(t, c.CreateCollection(ctx, old.schema(false), 0))
	require.NoError(t, c.Close())

	s := openWith(t, cfg)
	require.False(t, s.lexical)
	const acc = apiary.AccountID("acc-1")
	r := rec(acc, "doc", 1, 0, vec(0, 0))
	r.Terms = storagetest.Terms(map[uint32]uint32{1: 2})
	require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{r}), "terms are dropped, the rest is written")
	hits, err := s.Search(ctx, acc, vec(0, 0), 3, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	_, err = s.SearchLexical(ctx, acc, []uint32{1}, 3, storage.VectorFilter{})
	require.ErrorIs(t, err, storage.ErrNoLexical)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	require.ErrorContains(t, err, "created before lexical search")
}

func TestNewCollectionHasTheLexicalIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	require.True(t, s.lexical)
	it, ok := s.describeFieldIndex(context.Background(), fieldLexical)
	require.True(t, ok)
	require.Equal(t, "SPARSE_INVERTED_INDEX", string(it))
}
