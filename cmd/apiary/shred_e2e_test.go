package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/awskms"
	"github.com/apiaryhq/apiary/storage"
)

// Deletion is crypto-shredding, tried as an attacker who holds a copy of
// the data dir taken after a delete, and the root key (the embedded
// default keeps it in the data dir, so the copy holds it): what was
// deleted does not open. A copy taken before the delete gives the
// attacker what to look for — the deleted document's wrapped data key
// and sealed chunks, the deleted account's — and shows the search
// would find them.

// copyDir copies every file under src into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	require.NoError(t, filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	}))
	return dst
}

// offline is a stopped data dir opened as an attacker with the root key
// would: its records, its keyring and its vector store.
type offline struct {
	a       *app
	vectors storage.VectorStore
}

func openOffline(t *testing.T, dataDir string, args ...string) *offline {
	t.Helper()
	a := bareApp(serveConfig(t, dataDir, args...), slog.New(slog.DiscardHandler))
	require.NoError(t, a.openRecords(t.Context()))
	var err error
	require.NoError(t, a.openKeys(t.Context()))
	vs, err := openLocalVectors(a, 0)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, vs.Close())
		a.Close()
	})
	return &offline{a: a, vectors: vs}
}

// sealed is what an attacker looks for of one document: its wrapped data
// key and its sealed chunks.
type sealed struct {
	account apiary.AccountID
	doc     apiary.DocumentID
	wrapped []byte
	chunks  [][]byte
}

// document reads doc's wrapped key and sealed chunks and checks that the
// key opens with the root key: what a copy before the delete gives away.
func (o *offline) document(t *testing.T, account apiary.AccountID, doc apiary.DocumentID) sealed {
	t.Helper()
	rec, err := o.a.recs.Document(t.Context(), account, doc)
	require.NoError(t, err)
	require.NotEmpty(t, rec.WrappedKey)
	_, err = o.a.keys.Decrypt(t.Context(), account, rec.WrappedKey, docKeyContext(account, doc))
	require.NoError(t, err, "before the delete, the document's key opens with the root key")
	recs, err := o.vectors.Scan(t.Context(), account, "", 100, storage.VectorFilter{Document: doc})
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	s := sealed{account: account, doc: doc, wrapped: rec.WrappedKey}
	for _, r := range recs {
		s.chunks = append(s.chunks, r.Sealed)
	}
	return s
}

func docKeyContext(account apiary.AccountID, doc apiary.DocumentID) encrypt.Context {
	return encrypt.Context{"account": string(account), "document": string(doc)}
}

// forms are b as stored: raw, and in base64 (how JSON records carry bytes).
func forms(b []byte) [][]byte {
	return [][]byte{b, []byte(base64.StdEncoding.EncodeToString(b)), []byte(base64.RawURLEncoding.EncodeToString(b))}
}

// requireNowhere fails when any file of files holds any form of b.
func requireNowhere(t *testing.T, files map[string][]byte, b []byte, what string) {
	t.Helper()
	for path, data := range files {
		for _, f := range forms(b) {
			require.False(t, bytes.Contains(data, f), "%s holds %s", path, what)
		}
	}
}

// requireSomewhere fails unless some file of files holds b in one of its
// forms: the search finds what is there.
func requireSomewhere(t *testing.T, files map[string][]byte, b []byte, what string) {
	t.Helper()
	for _, data := range files {
		for _, f := range forms(b) {
			if bytes.Contains(data, f) {
				return
			}
		}
	}
	require.Failf(t, "the search finds nothing", "no file holds %s", what)
}

// stagedKeys returns how many envelopes in files open their wrapped data
// key under one of jobs' contexts with keys: an attacker's scan of every
// offset for a staged upload (SealEnvelope's format). The data key opens
// the upload that follows it.
func stagedKeys(ctx context.Context, files map[string][]byte, keys encrypt.KeyProvider, account apiary.AccountID, version byte, jobs []string) int {
	found := 0
	for _, data := range files {
		for i := 0; i+2 < len(data); i++ {
			if data[i] != version {
				continue
			}
			n, w := binary.Uvarint(data[i+1:])
			if w <= 0 || n < 16 || n > 1024 || uint64(len(data)-i-1-w) < n {
				continue
			}
			wrapped := data[i+1+w : i+1+w+int(n)]
			for _, job := range jobs {
				encCtx := encrypt.Context{"account": string(account), "job": job}
				if _, err := keys.Decrypt(ctx, account, wrapped, encCtx); err == nil {
					found++
				}
			}
		}
	}
	return found
}

// envelopeOf is an envelope of job sealed under keys, for the scan's own
// check (its first byte is SealEnvelope's version).
func envelopeOf(t *testing.T, keys encrypt.KeyProvider, account apiary.AccountID, job string) []byte {
	t.Helper()
	env, err := encrypt.SealEnvelope(t.Context(), keys, account, encrypt.Context{"job": job}, []byte("staged documents"))
	require.NoError(t, err)
	return env
}

func TestShredding(t *testing.T) {
	token, err := api.NewToken()
	require.NoError(t, err)
	dataDir := t.TempDir()
	s := startServer(t, dataDir, token)

	ingest := func(tok string, docs ...ingestDoc) string {
		var accepted struct {
			JobID string `json:"job_id"`
		}
		require.Equal(t, http.StatusAccepted, s.call(tok, http.MethodPost, "/v1/ingest", map[string]any{"documents": docs}, &accepted))
		job := s.waitJob(tok, accepted.JobID, 2*time.Minute)
		require.Equal(t, "succeeded", job.Status)
		return accepted.JobID
	}
	gone := ingestDoc{ID: "gone", Title: "Deleted", Text: "The deleted document speaks of basalt columns along the northern coast."}
	kept := ingestDoc{ID: "kept", Title: "Kept", Text: "The kept document speaks of sourdough starters fed every morning."}
	job1 := ingest(token, gone, kept)
	var other struct {
		ID    apiary.AccountID `json:"id"`
		Token string           `json:"token"`
	}
	require.Equal(t, http.StatusCreated, s.call(token, http.MethodPost, "/v1/accounts", map[string]string{"name": "leaving"}, &other))
	job2 := ingest(other.Token, ingestDoc{ID: "theirs", Title: "Theirs", Text: "The leaving account's document speaks of honey bees."})
	s.stop()

	before := openOffline(t, copyDir(t, dataDir))
	goneDoc := before.document(t, apiary.DefaultAccount, "gone")
	keptDoc := before.document(t, apiary.DefaultAccount, "kept")
	theirs := before.document(t, other.ID, "theirs")

	// The scan for staged uploads finds an envelope among other bytes.
	env := envelopeOf(t, before.a.keys, apiary.DefaultAccount, "job_probe")
	probe := map[string][]byte{"probe": append(append([]byte("noise\x01\x02"), env...), "more noise"...)}
	require.Equal(t, 1, stagedKeys(t.Context(), probe, before.a.keys, apiary.DefaultAccount, env[0], []string{"job_probe"}))

	s = startServer(t, dataDir, token)
	require.Equal(t, http.StatusNoContent, s.call(token, http.MethodDelete, "/v1/documents/gone", nil, nil))
	require.Equal(t, http.StatusNoContent, s.call(token, http.MethodDelete, "/v1/accounts/"+string(other.ID), nil, nil))
	s.stop()

	afterDir := copyDir(t, dataDir)
	files := dataFiles(t, afterDir)
	require.FileExists(t, filepath.Join(afterDir, "root.key"), "the attacker holds the root key")

	// What stays is still there: the search would find the rest.
	requireSomewhere(t, files, keptDoc.wrapped, "the kept document's wrapped key")
	requireSomewhere(t, files, keptDoc.chunks[0], "the kept document's sealed chunk")
	// The deleted document's key and chunks are in no file.
	requireNowhere(t, files, goneDoc.wrapped, "the deleted document's wrapped key")
	for _, c := range goneDoc.chunks {
		requireNowhere(t, files, c, "a sealed chunk of the deleted document")
	}
	// Nor the deleted account's; and its key is erased, so even the
	// wrapped key a copy from before holds does not open.
	requireNowhere(t, files, theirs.wrapped, "the deleted account's wrapped key")
	for _, c := range theirs.chunks {
		requireNowhere(t, files, c, "a sealed chunk of the deleted account")
	}
	for path := range files {
		require.False(t, strings.Contains(filepath.Base(path), string(other.ID)), "%s is a file of the deleted account", path)
	}

	after := openOffline(t, afterDir)
	_, err = after.a.keys.Decrypt(t.Context(), other.ID, theirs.wrapped, docKeyContext(other.ID, "theirs"))
	require.Error(t, err, "the deleted account's key still opens")
	_, err = after.a.recs.Document(t.Context(), apiary.DefaultAccount, "gone")
	require.ErrorIs(t, err, apiary.ErrNotFound)
	n, err := after.vectors.Count(t.Context(), other.ID, storage.VectorFilter{})
	require.NoError(t, err)
	require.Zero(t, n)

	// The finished jobs' staged uploads: no envelope in any file opens.
	require.Zero(t, stagedKeys(t.Context(), files, after.a.keys, apiary.DefaultAccount, env[0], []string{job1}),
		"a finished job's staged upload opens from a copy of the data dir")
	require.Zero(t, stagedKeys(t.Context(), files, before.a.keys, other.ID, env[0], []string{job2}),
		"the deleted account's staged upload opens with the keys of a copy from before")
}

// TestAccountShreddingWithKMS deletes an account whose key is in KMS (the
// emulator): the key is disabled and scheduled for deletion, its alias
// is gone, and a wrapped key taken from a copy before opens no more.
func TestAccountShreddingWithKMS(t *testing.T) {
	endpoint := os.Getenv("APIARY_TEST_KMS_ENDPOINT")
	if endpoint == "" {
		t.Skip("APIARY_TEST_KMS_ENDPOINT is not set: run scripts/test-services.sh start kms && source .test-services/env")
	}
	token, err := api.NewToken()
	require.NoError(t, err)
	dataDir := t.TempDir()
	kmsFlags := []string{"--keys", "awskms", "--kms-endpoint", endpoint, "--kms-deletion-days", "9"}
	s := startServer(t, dataDir, token, kmsFlags...)
	var other struct {
		ID    apiary.AccountID `json:"id"`
		Token string           `json:"token"`
	}
	require.Equal(t, http.StatusCreated, s.call(token, http.MethodPost, "/v1/accounts", map[string]string{"name": "leaving"}, &other))
	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(other.Token, http.MethodPost, "/v1/ingest",
		map[string]any{"documents": []ingestDoc{{ID: "theirs", Text: "The leaving account's document speaks of honey bees."}}}, &accepted))
	require.Equal(t, "succeeded", s.waitJob(other.Token, accepted.JobID, 2*time.Minute).Status)
	s.stop()

	beforeDir := copyDir(t, dataDir)
	spare := copyDir(t, beforeDir) // opened after the delete, with nothing cached
	before := openOffline(t, beforeDir, kmsFlags...)
	theirs := before.document(t, other.ID, "theirs")
	kc := awskms.NewClient(mustAWS(t, before.a), endpoint)
	alias := "alias/apiary/" + string(other.ID)
	desc, err := kc.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: &alias})
	require.NoError(t, err)
	keyID := desc.KeyMetadata.KeyId

	s = startServer(t, dataDir, token, kmsFlags...)
	require.Equal(t, http.StatusNoContent, s.call(token, http.MethodDelete, "/v1/accounts/"+string(other.ID), nil, nil))
	s.stop()

	desc, err = kc.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: keyID})
	require.NoError(t, err)
	require.Equal(t, kmstypes.KeyStatePendingDeletion, desc.KeyMetadata.KeyState)
	require.NotNil(t, desc.KeyMetadata.DeletionDate)
	require.WithinDuration(t, time.Now().Add(9*24*time.Hour), *desc.KeyMetadata.DeletionDate, 24*time.Hour, "--kms-deletion-days")
	_, err = kc.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: &alias})
	require.Error(t, err, "the account's alias is gone")

	old := openOffline(t, spare, kmsFlags...)
	_, err = old.a.keys.Decrypt(t.Context(), other.ID, theirs.wrapped, docKeyContext(other.ID, "theirs"))
	require.Error(t, err, "a wrapped key from a copy before the delete still opens")
	files := dataFiles(t, dataDir)
	for _, c := range theirs.chunks {
		requireNowhere(t, files, c, "a sealed chunk of the deleted account")
	}
}

// mustAWS is a's AWS configuration (region and credentials from the
// environment).
func mustAWS(t *testing.T, a *app) aws.Config {
	t.Helper()
	cfg, err := a.aws(t.Context())
	require.NoError(t, err)
	return cfg
}
