package main

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/api"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/vecguard/vecguardtest"
)

// protectionDocs are distinct enough that no two score alike for
// protectionQueries.
var protectionDocs = append([]ingestDoc{
	{ID: "tides", Title: "Tides", Text: "Spring tides follow the new and full moon, when the sun and moon pull along one line. Harbour pilots time the passage of deep keeled ships to the high water."},
	{ID: "glass", Title: "Glassblowing", Text: "The gaffer gathers molten glass from the furnace on a blowpipe and shapes the bubble on a steel marver before annealing it slowly in the lehr."},
	{ID: "chess", Title: "Chess openings", Text: "The Sicilian Defence answers the king's pawn with the c-pawn, trading central control for an unbalanced middlegame and counterattacking chances."},
	{ID: "rail", Title: "Rail signalling", Text: "Block signalling keeps one train per section of track; axle counters report when a section is clear and the interlocking sets the next signal to proceed."},
	{ID: "moss", Title: "Mosses", Text: "Mosses have no roots and absorb water through their leaves; their spores ripen in capsules raised on thin stalks above the damp forest floor."},
}, tourDocs...)

var protectionQueries = []string{
	"waggle dance of foraging bees", "moon and the spring tides", "molten glass on a blowpipe",
	"Sicilian Defence counterattack", "axle counters and block signals", "spores of mosses in the forest",
	"sourdough starter with wild yeast", "lava columns on the coastline",
}

// With vector protection (the default), `apiary serve` answers a fixed
// query set with the same documents in the same order as with
// --vector-protection=false, while the vectors it stores are not the
// embedder's: those of the unprotected data dir are, and the two are far
// apart.
func TestVectorProtectionEndToEnd(t *testing.T) {
	type answer struct {
		Results []struct {
			DocumentID string `json:"document_id"`
		} `json:"results"`
	}
	run := func(extra ...string) (string, [][]string) {
		token, err := api.NewToken()
		require.NoError(t, err)
		dataDir := t.TempDir()
		s := startServer(t, dataDir, token, extra...)
		var accepted struct {
			JobID string `json:"job_id"`
		}
		require.Equal(t, http.StatusAccepted, s.call(token, http.MethodPost, "/v1/ingest", map[string]any{"documents": protectionDocs}, &accepted))
		require.Equal(t, "succeeded", s.waitJob(token, accepted.JobID, 60*time.Second).Status)
		var ids [][]string
		for _, q := range protectionQueries {
			var a answer
			require.Equal(t, http.StatusOK, s.call(token, http.MethodPost, "/v1/query", map[string]any{"query": q, "top_k": len(protectionDocs)}, &a))
			require.NotEmpty(t, a.Results)
			var got []string
			for _, r := range a.Results {
				got = append(got, r.DocumentID)
			}
			ids = append(ids, got)
		}
		s.stop()
		return dataDir, ids
	}
	protectedDir, protectedIDs := run()
	plainDir, plainIDs := run("--vector-protection=false")
	require.Equal(t, plainIDs, protectedIDs, "the same documents in the same order")

	stored := func(dataDir string) map[chunkPlace]storage.VectorRecord {
		vs, done := openStoppedVectors(t, dataDir)
		defer done()
		return scanAll(t, vs)
	}
	plain, raw := stored(plainDir), stored(protectedDir)
	require.Len(t, raw, len(plain))
	var worst float64
	for at, r := range raw {
		p, ok := plain[at]
		require.True(t, ok, "chunk %v", at)
		worst = max(worst, math.Abs(vecguardtest.Cosine(p.Vector, r.Vector)))
	}
	require.Less(t, worst, 0.3, "a protected vector is close to the embedder's")

	// Through protection, the stored vectors are the embedder's again.
	a := bareApp(serveConfig(t, protectedDir), slog.New(slog.DiscardHandler))
	defer a.Close()
	ctx := t.Context()
	require.NoError(t, a.openRecords(ctx))
	var err error
	require.NoError(t, a.openKeys(ctx))
	a.emb, err = embedders.open(ctx, a, a.cfg.Embedder.Name)
	require.NoError(t, err)
	local, err := openLocalVectors(a, a.emb.Dim())
	require.NoError(t, err)
	vs, err := protectVectors(a, local)
	require.NoError(t, err)
	defer vs.Close()
	for at, r := range scanAll(t, vs) {
		require.InDeltaSlice(t, plain[at].Vector, r.Vector, 1e-5, "chunk %v", at)
	}
}

// chunkPlace is where a chunk is in its document (chunk ids differ between
// data dirs: they include the document's version).
type chunkPlace struct {
	doc   apiary.DocumentID
	index int
}

// scanAll reads every chunk of the default account.
func scanAll(t *testing.T, vs storage.VectorStore) map[chunkPlace]storage.VectorRecord {
	t.Helper()
	out := map[chunkPlace]storage.VectorRecord{}
	page, err := vs.Scan(context.Background(), apiary.DefaultAccount, "", 1000, storage.VectorFilter{})
	require.NoError(t, err)
	require.Less(t, len(page), 1000)
	for _, r := range page {
		out[chunkPlace{r.Document, r.Index}] = r
	}
	require.NotEmpty(t, out)
	return out
}
