package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
)

// Query limits. The API owns a query's defaults and the wording of its
// errors; pipeline.Search only refuses a query that breaks its invariants.
const (
	DefaultTopK     = 10
	MaxTopK         = pipeline.MaxTopK
	maxQueryTextLen = 8 << 10
)

type queryRequest struct {
	Query  string      `json:"query"`
	Mode   string      `json:"mode"`
	TopK   *int        `json:"top_k"`
	Filter queryFilter `json:"filter"`
}

type queryFilter struct {
	DocumentID string                     `json:"document_id"`
	Metadata   map[string]json.RawMessage `json:"metadata"`
}

// queryResult is one matching chunk as the API shows it (QueryResult in
// openapi.yaml).
type queryResult struct {
	DocumentID apiary.DocumentID `json:"document_id"`
	ChunkID    apiary.ChunkID    `json:"chunk_id"`
	Text       string            `json:"text"`
	Score      float32           `json:"score"`
	Metadata   map[string]string `json:"metadata"`
	Title      string            `json:"title,omitempty"`
	Pages      *pageRange        `json:"pages,omitempty"`
}

// pageRange is the pages of a paged document (PDF, PPTX) a chunk's text
// comes from.
type pageRange struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

type queryResponse struct {
	Results []queryResult `json:"results"`
}

func viewResults(res []pipeline.Result) queryResponse {
	out := queryResponse{Results: make([]queryResult, 0, len(res))}
	for _, r := range res {
		out.Results = append(out.Results, queryResult{
			DocumentID: r.DocumentID,
			ChunkID:    r.ChunkID,
			Text:       r.Text,
			Score:      r.Score,
			Metadata:   orEmpty(r.Metadata),
			Title:      r.Title,
			Pages:      viewPages(r.Pages),
		})
	}
	return out
}

func viewPages(p *pipeline.PageRange) *pageRange {
	if p == nil {
		return nil
	}
	return &pageRange{First: p.First, Last: p.Last}
}

func (req queryRequest) toQuery() (pipeline.Query, error) {
	switch {
	case strings.TrimSpace(req.Query) == "":
		return pipeline.Query{}, apiary.E(apiary.KindInvalid, "query is required")
	case len(req.Query) > maxQueryTextLen:
		return pipeline.Query{}, apiary.E(apiary.KindInvalid, "query is longer than %d bytes", maxQueryTextLen)
	}
	k := DefaultTopK
	if req.TopK != nil {
		k = *req.TopK
		if k < 1 || k > MaxTopK {
			return pipeline.Query{}, apiary.E(apiary.KindInvalid, "top_k must be from 1 to %d", MaxTopK)
		}
	}
	mode := pipeline.ModeHybrid
	if req.Mode != "" {
		mode = pipeline.Mode(req.Mode)
		if !slices.Contains(pipeline.Modes, mode) {
			return pipeline.Query{}, apiary.E(apiary.KindInvalid, `mode must be "hybrid", "dense" or "lexical"`)
		}
	}
	q := pipeline.Query{Text: req.Query, TopK: k, Mode: mode}
	if req.Filter.DocumentID != "" {
		id := apiary.DocumentID(req.Filter.DocumentID)
		if err := id.Validate(); err != nil {
			return pipeline.Query{}, apiary.E(apiary.KindInvalid, "filter.document_id: %s", apiary.Message(err))
		}
		q.Document = id
	}
	meta, err := scalarMap("filter.metadata", req.Filter.Metadata)
	if err == nil {
		err = apiary.CheckMetadata("filter.metadata", meta)
	}
	if err != nil {
		return pipeline.Query{}, err
	}
	q.Metadata = meta
	return q, nil
}

// query searches the caller's account and answers with decrypted chunks.
func (s *Server) query(c echo.Context) error {
	var req queryRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	q, err := req.toQuery()
	if err != nil {
		return err
	}
	// The request's base cost is already paid; RateLimit says what is left
	// after the rest.
	err = s.chargeAccount(c, queryCost(q)-1)
	s.setRateLimit(c, time.Now())
	if err != nil {
		return err
	}
	account := principal(c).Account
	if !s.searches.enter(account) {
		return s.refuse(c, &apiary.Error{
			Kind: apiary.KindRateLimited,
			Msg: fmt.Sprintf("this account has %d searches running, the most it may run at once; retry after the number of seconds in Retry-After",
				s.cfg.MaxSearchesPerAccount),
			RetryAfter: time.Second,
		})
	}
	defer s.searches.leave(account)
	res, err := s.deps.Search.Search(c.Request().Context(), account, q)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewResults(res))
}
