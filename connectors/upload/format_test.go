package upload

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage/memkv"
)

var sample = []apiary.Document{
	{ID: "a.html", Title: "<T>", Text: "<p>\u2028</p>", Metadata: map[string]string{"k": "v", "<": ">"}},
	{ID: "b.csv", ContentType: "text/csv", Raw: []byte("a,b\n\xff\n")},
}

// A job staged as JSON by an earlier release still loads.
func TestLoadReadsJSONStages(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	keys, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	require.NoError(t, keys.CreateAccountKey(ctx, "acme"))
	blobs := memkv.NewBlobs()
	job := apiary.NewJobID()
	plain, err := json.Marshal(sample)
	require.NoError(t, err)
	sealed, err := encrypt.SealEnvelope(ctx, keys, "acme", encCtx("acme", job), plain)
	require.NoError(t, err)
	require.NoError(t, blobs.Put(ctx, stageKey("acme", job), sealed))

	got, err := NewStager(blobs, keys).Load(ctx, "acme", job)
	require.NoError(t, err)
	require.Equal(t, sample, got)
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(sample))
	f.Add(encode(nil))
	f.Add([]byte{formatV1, 200, 200, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		docs, err := decode(b)
		if err != nil || len(b) == 0 || b[0] != formatV1 {
			return
		}
		again, err := decode(encode(docs))
		require.NoError(t, err)
		require.Equal(t, docs, again, "encode then decode changed the documents")
	})
}
