package upload_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/upload"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/natskv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newKeys(t *testing.T) *keyring.Keyring {
	t.Helper()
	keys, err := keyring.New(keyring.Config{Dir: t.TempDir(), RootKey: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	require.NoError(t, keys.CreateAccountKey(t.Context(), "acme"))
	return keys
}

// sizes is a blob store that remembers the size of every value put.
type sizes struct {
	storage.Blobs
	mu  sync.Mutex
	put []int
}

func (s *sizes) Put(ctx context.Context, key string, data []byte) error {
	s.mu.Lock()
	s.put = append(s.put, len(data))
	s.mu.Unlock()
	return s.Blobs.Put(ctx, key, data)
}

// awkward is every kind of document an upload may hold, with the bytes
// JSON would escape.
var awkward = []apiary.Document{
	{ID: "page.html", Title: "<Tags> & \u2028 \"quotes\"", Text: "<p>\u2028\u2029 \x01\x1f \\ \" &amp; é 漢字</p>",
		Metadata: map[string]string{"<k>": "<v>", "n": "3"}},
	{ID: "scan.bin", ContentType: "text/csv", Raw: []byte("a,b\n\xff\xfe\x00<>\n")},
	{ID: "plain", Text: "just text"},
}

func TestStageRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, js := natstest.Connect(t)
	nblobs, err := natskv.NewBlobs(ctx, js, "stage", natskv.Config{})
	require.NoError(t, err)
	for name, blobs := range map[string]storage.Blobs{"memkv": memkv.NewBlobs(), "natskv": nblobs} {
		t.Run(name, func(t *testing.T) {
			s := upload.NewStager(blobs, newKeys(t))
			job := apiary.NewJobID()
			require.NoError(t, s.Stage(ctx, "acme", job, awkward))
			got, err := s.Load(ctx, "acme", job)
			require.NoError(t, err)
			require.Equal(t, awkward, got)
			require.NoError(t, s.Drop(ctx, "acme", job))
			_, err = s.Load(ctx, "acme", job)
			require.ErrorIs(t, err, apiary.ErrNotFound)
		})
	}
}

// What a request carries stages at about its own size: text and files are
// kept as they are, not escaped (a 12 MiB text of "<" was 72 MiB as JSON,
// over the 64 MiB the blob stores hold).
func TestStagedSizeFollowsTheContent(t *testing.T) {
	t.Parallel()
	blobs := &sizes{Blobs: memkv.NewBlobs()}
	s := upload.NewStager(blobs, newKeys(t))
	docs := []apiary.Document{
		{ID: "angles.html", Text: strings.Repeat("<", 12<<20)},
		{ID: "file.html", ContentType: "text/html", Raw: bytes.Repeat([]byte("<"), 4<<20)},
	}
	job := apiary.NewJobID()
	require.NoError(t, s.Stage(t.Context(), "acme", job, docs))
	require.Len(t, blobs.put, 1)
	require.LessOrEqual(t, blobs.put[0], 16<<20+4<<10, "staged %d bytes for 16 MiB of content", blobs.put[0])
	got, err := s.Load(t.Context(), "acme", job)
	require.NoError(t, err)
	require.Equal(t, docs, got)
}

// small is a blob store that holds less than the stager is given and says
// so naming its key, as the real stores do.
type small struct{ storage.Blobs }

func (small) Put(_ context.Context, key string, data []byte) error {
	return apiary.E(apiary.KindTooLarge, "memkv: put blob %s: %d bytes is over the limit of 10", key, len(data))
}

func TestStageErrorsHideStorageKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	job := apiary.NewJobID()

	err := upload.NewStager(small{memkv.NewBlobs()}, newKeys(t)).Stage(ctx, "acme", job, awkward)
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	msg := apiary.Message(err)
	require.Contains(t, msg, "too large to stage")
	require.NotContains(t, msg, "stage/")
	require.NotContains(t, msg, "memkv")

	_, js := natstest.Connect(t)
	nblobs, err := natskv.NewBlobs(ctx, js, "stage", natskv.Config{})
	require.NoError(t, err)
	_, err = upload.NewStager(nblobs, newKeys(t)).Load(ctx, "acme", job)
	require.ErrorIs(t, err, apiary.ErrNotFound)
	msg = apiary.Message(err)
	require.NotEmpty(t, msg)
	require.NotContains(t, msg, "stage/")
	require.NotContains(t, msg, "natskv")
	require.NotContains(t, msg, "acme/")
}
