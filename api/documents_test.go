package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func TestQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seed(apiary.DefaultAccount,
		apiary.Document{ID: "bees", Title: "Bees", Text: "Honey bees live in hives and make honey from nectar.", Metadata: map[string]string{"topic": "insects"}},
		apiary.Document{ID: "rust", Title: "Rust", Text: "Iron oxide forms when iron meets water and oxygen.", Metadata: map[string]string{"topic": "chemistry"}},
	)
	otherAcc, otherAdmin := e.otherAccount("other")
	e.seed(otherAcc, apiary.Document{ID: "secret", Text: "Honey bees in the other account."})

	t.Run("finds the closest chunk", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/query", e.viewer, jsonBody(map[string]any{"query": "honey bees hives", "top_k": 1}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		got := decode[struct {
			Results []map[string]any `json:"results"`
		}](t, rec)
		require.Len(t, got.Results, 1)
		require.Equal(t, "Bees", got.Results[0]["title"])
		require.Equal(t, map[string]any{"topic": "insects"}, got.Results[0]["metadata"])
		require.Contains(t, rec.Body.String(), "bees")
		require.NotContains(t, rec.Body.String(), "other account")
	})
	t.Run("filter by document", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/query", e.viewer, jsonBody(map[string]any{
			"query": "honey bees", "filter": map[string]any{"document_id": "rust"}}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "nectar")
		require.Contains(t, rec.Body.String(), "Iron")
	})
	t.Run("filter by metadata", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/query", e.viewer, jsonBody(map[string]any{
			"query": "honey bees", "filter": map[string]any{"metadata": map[string]any{"topic": "chemistry"}}}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "nectar")
		require.Contains(t, rec.Body.String(), "Iron", "the chemistry document is found, and only it")
	})
	t.Run("other account sees its own only", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/query", otherAdmin, jsonBody(map[string]any{"query": "honey bees", "top_k": 100}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "nectar")
		require.Contains(t, rec.Body.String(), "other account")
	})
	t.Run("every mode finds the closest chunk", func(t *testing.T) {
		for _, mode := range []string{"hybrid", "dense", "lexical"} {
			rec := e.do(http.MethodPost, "/v1/query", e.viewer, jsonBody(map[string]any{"query": "iron oxide water", "top_k": 1, "mode": mode}))
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			got := decode[struct {
				Results []map[string]any `json:"results"`
			}](t, rec)
			require.Len(t, got.Results, 1, mode)
			require.Equal(t, "rust", got.Results[0]["document_id"], mode)
		}
		// Lexical matches words only: nothing shares one with this query.
		rec := e.do(http.MethodPost, "/v1/query", e.viewer, jsonBody(map[string]any{"query": "zebra", "mode": "lexical"}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.JSONEq(t, `{"results": []}`, rec.Body.String())
	})
	t.Run("top_k defaults to 10", func(t *testing.T) {
		many, manyAdmin := e.otherAccount("many")
		var docs []apiary.Document
		for i := range DefaultTopK + 2 {
			docs = append(docs, apiary.Document{ID: apiary.DocumentID(fmt.Sprintf("hive-%02d", i)), Text: "Honey bees of hive number " + fmt.Sprint(i)})
		}
		e.seed(many, docs...)
		rec := e.do(http.MethodPost, "/v1/query", manyAdmin, jsonBody(map[string]any{"query": "honey bees"}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		got := decode[struct {
			Results []map[string]any `json:"results"`
		}](t, rec)
		require.Len(t, got.Results, DefaultTopK)
	})
	for _, tc := range []struct {
		name string
		req  request
		code int
		want string
	}{
		{"no query", jsonBody(map[string]any{"top_k": 3}), 400, "query is required"},
		{"blank query", jsonBody(map[string]any{"query": " \n\t"}), 400, "query is required"},
		{"top_k zero", jsonBody(map[string]any{"query": "q", "top_k": 0}), 400, "top_k must be from 1 to 100"},
		{"top_k too big", jsonBody(map[string]any{"query": "q", "top_k": 101}), 400, "top_k must be from 1 to 100"},
		{"top_k fraction", jsonBody(map[string]any{"query": "q", "top_k": 1.5}), 400, "top_k"},
		{"nested filter", jsonBody(map[string]any{"query": "q", "filter": map[string]any{"metadata": map[string]any{"a": []int{1}}}}), 400, "nested"},
		{"filter over the metadata limits", jsonBody(map[string]any{"query": "q", "filter": map[string]any{"metadata": manyKeys(65, 1)}}), 400, "filter.metadata: at most 64 keys"},
		{"unknown field", jsonBody(map[string]any{"query": "q", "k": 3}), 400, `unknown JSON field "k"`},
		{"unknown mode", jsonBody(map[string]any{"query": "q", "mode": "fuzzy"}), 400, `mode must be "hybrid", "dense" or "lexical"`},
		{"mode not a string", jsonBody(map[string]any{"query": "q", "mode": 1}), 400, "mode"},
		{"not JSON", rawBody("text/plain", "q"), 415, "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireProblem(t, e.do(http.MethodPost, "/v1/query", e.viewer, tc.req), tc.code, tc.want)
		})
	}
}

func TestDocuments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const odd = "reports/2024 Q3 100%.md"
	e.seed(apiary.DefaultAccount,
		apiary.Document{ID: "a", Title: "Alpha", Text: "alpha text", Metadata: map[string]string{"k": "v"}},
		apiary.Document{ID: odd, Title: "Odd", Text: "odd text"},
	)
	otherAcc, otherAdmin := e.otherAccount("other")
	e.seed(otherAcc, apiary.Document{ID: "mine", Text: "theirs"})

	t.Run("list", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/documents", e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "wrapped_key")
		require.NotContains(t, rec.Body.String(), "sealed")
		got := decode[documentList](t, rec)
		require.Len(t, got.Documents, 2)
		require.Equal(t, apiary.DocumentID("a"), got.Documents[0].ID)
		require.Equal(t, "Alpha", got.Documents[0].Title)
		require.Equal(t, map[string]string{"k": "v"}, got.Documents[0].Metadata)
		require.NotZero(t, got.Documents[0].Version)
		require.NotZero(t, got.Documents[0].Chunks)
		require.Empty(t, got.NextCursor)
	})
	t.Run("list pages", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/documents?limit=1", e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		page := decode[documentList](t, rec)
		require.Len(t, page.Documents, 1)
		require.NotEmpty(t, page.NextCursor)
		rec = e.do(http.MethodGet, "/v1/documents?limit=1&cursor="+url.QueryEscape(page.NextCursor), e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		page = decode[documentList](t, rec)
		require.Len(t, page.Documents, 1)
		require.Equal(t, apiary.DocumentID(odd), page.Documents[0].ID)
	})
	t.Run("bad limit", func(t *testing.T) {
		requireProblem(t, e.do(http.MethodGet, "/v1/documents?limit=-1", e.viewer), 400, "limit must be")
	})
	t.Run("get an escaped id", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/documents/"+url.PathEscape(odd), e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		got := decode[documentView](t, rec)
		require.Equal(t, apiary.DocumentID(odd), got.ID)
		require.Equal(t, "Odd", got.Title)
	})
	t.Run("another account's document", func(t *testing.T) {
		requireProblem(t, e.do(http.MethodGet, "/v1/documents/mine", e.viewer), 404, "no such document")
		requireProblem(t, e.do(http.MethodDelete, "/v1/documents/mine", e.editor), 404, "no such document")
		_, err := e.recs.Document(ctx, otherAcc, "mine")
		require.NoError(t, err, "untouched")
		rec := e.do(http.MethodGet, "/v1/documents/mine", otherAdmin)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	})
	t.Run("missing", func(t *testing.T) {
		requireProblem(t, e.do(http.MethodGet, "/v1/documents/nope", e.viewer), 404, "no such document")
	})
	t.Run("delete", func(t *testing.T) {
		rec := e.do(http.MethodDelete, "/v1/documents/"+url.PathEscape(odd), e.editor)
		require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
		require.Empty(t, rec.Body.String())
		requireProblem(t, e.do(http.MethodGet, "/v1/documents/"+url.PathEscape(odd), e.viewer), 404, "no such document")
		requireProblem(t, e.do(http.MethodDelete, "/v1/documents/"+url.PathEscape(odd), e.editor), 404, "no such document")
		rec = e.do(http.MethodPost, "/v1/query", e.viewer, jsonBody(map[string]any{"query": "odd text", "top_k": 100}))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "odd text", "its chunks are gone")
	})
}

// TestQueryShowsPages: a PDF's chunks carry their pages, and the query
// answer shows them (validated against openapi.yaml like every answer).
func TestQueryShowsPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	raw, err := os.ReadFile(filepath.Join("..", "pipeline", "extract", "testdata", "hive.pdf"))
	require.NoError(t, err)
	e.seed(apiary.DefaultAccount, apiary.Document{ID: "hive.pdf", ContentType: "application/pdf", Raw: raw})
	rec := e.do(http.MethodPost, "/v1/query", e.viewer, jsonBody(map[string]any{
		"query": "a swarm hanging from a branch", "top_k": 1, "filter": map[string]any{"document_id": "hive.pdf"}}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	got := decode[struct {
		Results []map[string]any `json:"results"`
	}](t, rec)
	require.Len(t, got.Results, 1)
	require.Contains(t, got.Results[0]["text"], "swarm hanging from a branch")
	// The swarm paragraph is on page 2; with the default chunk size its
	// chunk starts on page 1.
	require.Equal(t, map[string]any{"first": float64(1), "last": float64(2)}, got.Results[0]["pages"])
}
