package main

import (
	"context"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/storage"
)

type accountView struct {
	Embedding struct {
		Model   string `json:"model"`
		Current bool   `json:"current"`
		Stored  *struct {
			Model string `json:"model"`
		} `json:"stored"`
		ReembedJobID string `json:"reembed_job_id"`
	} `json:"embedding"`
}

// relabel marks every chunk of account in the local store in dataDir as
// embedded by model, as if an earlier configuration had made them.
func relabel(t *testing.T, dataDir string, account apiary.AccountID, model string) int {
	t.Helper()
	ctx := context.Background()
	vs, done := openStoppedVectors(t, dataDir)
	defer done()
	n := 0
	var after apiary.ChunkID
	for {
		page, err := vs.Scan(ctx, account, after, 100, storage.VectorFilter{})
		require.NoError(t, err)
		for i := range page {
			page[i].Model = model
		}
		require.NoError(t, vs.Upsert(ctx, account, page))
		n += len(page)
		if len(page) < 100 {
			return n
		}
		after = page[len(page)-1].ChunkID
	}
}

// After the embedding model changes, `apiary serve` re-embeds the chunks of
// the old model in a job of its own as it starts; the account shows it.
func TestServeReembedsChunksOfAnotherModel(t *testing.T) {
	token, err := api.NewToken()
	require.NoError(t, err)
	dataDir := t.TempDir()
	s := startServer(t, dataDir, token)
	var accepted struct {
		JobID string `json:"job_id"`
	}
	require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": tourDocs}, &accepted))
	require.Equal(t, "succeeded", s.waitJob(token, accepted.JobID, 60*time.Second).Status)
	var acc accountView
	require.Eventually(t, func() bool { // the model check of this start ran
		code, err := s.try(token, http.MethodGet, "/v1/account", nil, &acc)
		return err == nil && code == http.StatusOK && acc.Embedding.Current
	}, 30*time.Second, 50*time.Millisecond)
	s.stop()

	chunks := relabel(t, dataDir, apiary.DefaultAccount, "an-older-model")
	require.Positive(t, chunks)

	s = startServer(t, dataDir, token)
	require.Eventually(t, func() bool {
		code, err := s.try(token, http.MethodGet, "/v1/account", nil, &acc)
		return err == nil && code == http.StatusOK && acc.Embedding.ReembedJobID != ""
	}, 30*time.Second, 50*time.Millisecond, "no re-embed job started")
	job := s.waitJob(token, acc.Embedding.ReembedJobID, 60*time.Second)
	require.Equal(t, "succeeded", job.Status)
	require.Equal(t, apiary.Counts{DocumentsTotal: len(tourDocs), DocumentsDone: len(tourDocs), Chunks: chunks}, job.Counts)
	var kind struct {
		Kind string `json:"kind"`
	}
	require.Equal(t, http.StatusOK, s.call(token, http.MethodGet, "/v1/jobs/"+acc.Embedding.ReembedJobID, nil, &kind))
	require.Equal(t, "reembed", kind.Kind)

	require.Equal(t, http.StatusOK, s.call(token, http.MethodGet, "/v1/account", nil, &acc))
	require.True(t, acc.Embedding.Current)
	require.Equal(t, acc.Embedding.Model, acc.Embedding.Stored.Model)
	var answer struct {
		Results []struct {
			DocumentID string `json:"document_id"`
		} `json:"results"`
	}
	require.Equal(t, http.StatusOK, s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": "basalt lava of the shield volcano", "top_k": 3}, &answer))
	require.NotEmpty(t, answer.Results)
	require.Equal(t, "volcano", answer.Results[0].DocumentID)
	s.stop()

	// An embedder of another dimension does not start on this store, and says why.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, apiaryBin, "serve", "--data-dir", dataDir, "--addr", freeAddr(t), "--embed-dim", "256").CombinedOutput()
	require.Error(t, err, "serve started with vectors of another dimension:\n%s", out)
	require.Contains(t, string(out), "holds vectors of dimension 384 and the embedder makes 256")
	require.Contains(t, string(out), "ingest the documents again")
}
