package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
)

// documentView is a document as the API shows it: never its wrapped key or
// sealed bytes. Version is a decimal string: it exceeds 2^53.
type documentView struct {
	ID          apiary.DocumentID `json:"id"`
	Title       string            `json:"title"`
	Metadata    map[string]string `json:"metadata"`
	Version     uint64            `json:"version,string"`
	Chunks      int               `json:"chunks"`
	Bytes       int               `json:"bytes"`
	ContentType string            `json:"content_type"`
	JobID       apiary.JobID      `json:"job_id"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

type documentList struct {
	Documents  []documentView `json:"documents"`
	NextCursor string         `json:"next_cursor"`
}

func (s *Server) viewDocument(c echo.Context, rec apiary.DocumentRecord) (documentView, error) {
	info, err := s.deps.Search.Describe(c.Request().Context(), rec)
	if err != nil {
		return documentView{}, fmt.Errorf("api: describe document: %w", err)
	}
	return documentView{
		ID:          rec.ID,
		Title:       info.Title,
		Metadata:    orEmpty(info.Metadata),
		Version:     rec.Version,
		Chunks:      rec.Chunks,
		Bytes:       rec.Bytes,
		ContentType: rec.ContentType,
		JobID:       rec.Job,
		CreatedAt:   rec.CreatedAt,
		UpdatedAt:   rec.UpdatedAt,
	}, nil
}

// orEmpty renders nil metadata as {}, as openapi.yaml promises.
func orEmpty(meta map[string]string) map[string]string {
	if meta == nil {
		return map[string]string{}
	}
	return meta
}

// documentID returns the URL-escaped :id path parameter, decoded once.
func documentID(c echo.Context) (apiary.DocumentID, error) {
	raw := c.Param("id")
	if c.Request().URL.RawPath != "" {
		// echo routed on the escaped path, so the parameter is still escaped.
		v, err := url.PathUnescape(raw)
		if err != nil {
			return "", apiary.E(apiary.KindInvalid, "the document id in the path is not properly URL-escaped")
		}
		raw = v
	}
	id := apiary.DocumentID(raw)
	if err := id.Validate(); err != nil {
		return "", err
	}
	return id, nil
}

func (s *Server) listDocuments(c echo.Context) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	recs, next, err := s.deps.Records.Documents(c.Request().Context(), principal(c).Account, limit, c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	out := documentList{Documents: make([]documentView, 0, len(recs)), NextCursor: next}
	for _, rec := range recs {
		v, err := s.viewDocument(c, rec)
		if err != nil {
			return err
		}
		out.Documents = append(out.Documents, v)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getDocument(c echo.Context) error {
	id, err := documentID(c)
	if err != nil {
		return err
	}
	rec, err := s.deps.Records.Document(c.Request().Context(), principal(c).Account, id)
	if err != nil {
		return err
	}
	v, err := s.viewDocument(c, rec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// deleteDocument removes a document's chunks and its record (which holds
// its wrapped data key, so whatever copy remains is unreadable).
func (s *Server) deleteDocument(c echo.Context) error {
	id, err := documentID(c)
	if err != nil {
		return err
	}
	p := principal(c)
	ctx := c.Request().Context()
	if _, err := s.deps.Records.Document(ctx, p.Account, id); err != nil {
		return err
	}
	if err := s.removeDocument(ctx, p.Account, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// removeDocument deletes account's document id: its chunks, then its
// record (which holds its wrapped data key, so whatever copy remains is
// unreadable). Either already gone is no error.
func (s *Server) removeDocument(ctx context.Context, account apiary.AccountID, id apiary.DocumentID) error {
	if err := s.deps.Search.DeleteDocument(ctx, account, id); err != nil && !errors.Is(err, apiary.ErrNotFound) {
		return fmt.Errorf("api: delete document: %w", err)
	}
	if err := s.deps.Records.DeleteDocument(ctx, account, id); err != nil && !errors.Is(err, apiary.ErrNotFound) {
		return err
	}
	return nil
}
