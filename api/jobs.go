package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// jobView is a job as the API shows it: the public fields of the record
// (not its bookkeeping: lease, idempotency, webhook) plus a sentence when
// some documents failed. Errors is the record's sample, the first
// apiary.MaxErrorSample failures; GET /v1/jobs/{id}/errors pages through all.
type jobView struct {
	ID         apiary.JobID           `json:"id"`
	Kind       apiary.JobKind         `json:"kind"`
	Status     apiary.JobStatus       `json:"status"`
	Counts     apiary.Counts          `json:"counts"`
	Errors     []apiary.DocumentError `json:"errors"`
	Error      string                 `json:"error,omitempty"`
	Message    string                 `json:"message,omitempty"`
	Attempts   int                    `json:"attempts"`
	Source     string                 `json:"source"`
	Connection string                 `json:"connection_id,omitempty"`
	CreatedAt  time.Time              `json:"created_at"`
	UpdatedAt  time.Time              `json:"updated_at"`
	StartedAt  *time.Time             `json:"started_at,omitempty"`
	FinishedAt *time.Time             `json:"finished_at,omitempty"`
}

func viewJob(j apiary.Job) jobView {
	if j.Errors == nil {
		j.Errors = []apiary.DocumentError{}
	}
	if j.Kind == "" {
		j.Kind = apiary.JobKindIngest // a record from before kinds
	}
	v := jobView{ID: j.ID, Kind: j.Kind, Status: j.Status, Counts: j.Counts, Errors: j.Errors, Error: j.Error, Attempts: j.Attempts,
		Source: j.Source, Connection: j.Connection, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt}
	if n := j.Counts.DocumentsFailed; n > 0 {
		v.Message = fmt.Sprintf("%d of %d documents failed; see errors", n, j.Counts.DocumentsTotal)
		if n > apiary.MaxErrorSample {
			v.Message = fmt.Sprintf("%d of %d documents failed; errors shows the first %d, GET /v1/jobs/%s/errors lists all",
				n, j.Counts.DocumentsTotal, len(j.Errors), j.ID)
		}
	}
	return v
}

type jobList struct {
	Jobs       []jobView `json:"jobs"`
	NextCursor string    `json:"next_cursor"`
}

func jobID(c echo.Context) (apiary.JobID, error) {
	id := apiary.JobID(c.Param("id"))
	return id, id.Validate()
}

func (s *Server) getJob(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	j, err := s.deps.Records.Job(c.Request().Context(), principal(c).Account, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewJob(j))
}

type jobErrorList struct {
	Errors     []apiary.DocumentError `json:"errors"`
	NextCursor string                 `json:"next_cursor"`
}

// listJobErrors pages through every failed document of a job with its
// reason; the job record holds only the first few.
func (s *Server) listJobErrors(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	ctx, account := c.Request().Context(), principal(c).Account
	if _, err := s.deps.Records.Job(ctx, account, id); err != nil {
		return err
	}
	errs, next, err := s.deps.Records.JobErrors(ctx, account, id, limit, c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, jobErrorList{Errors: errs, NextCursor: next})
}

// maxPageLimit is the largest limit= a listing takes.
const maxPageLimit = 500

// pageLimit parses limit= (default 50, 1..500).
func pageLimit(c echo.Context) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPageLimit {
		return 0, apiary.E(apiary.KindInvalid, "limit must be a whole number from 1 to %d", maxPageLimit)
	}
	return n, nil
}

func (s *Server) listJobs(c echo.Context) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	status := apiary.JobStatus(c.QueryParam("status"))
	if status != "" && !status.Valid() {
		return apiary.E(apiary.KindInvalid, "status must be one of queued, running, succeeded, failed, canceled")
	}
	jobs, next, err := s.deps.Records.Jobs(c.Request().Context(), principal(c).Account,
		records.JobFilter{Status: status, Limit: limit, Cursor: c.QueryParam("cursor")})
	if err != nil {
		return err
	}
	out := jobList{Jobs: make([]jobView, 0, len(jobs)), NextCursor: next}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, viewJob(j))
	}
	return c.JSON(http.StatusOK, out)
}

// cancelJob moves a job that is not final to canceled. Workers see the
// status and stop; a job already final answers 409.
func (s *Server) cancelJob(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	j, err := s.jobs.Cancel(c.Request().Context(), principal(c).Account, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewJob(j))
}
