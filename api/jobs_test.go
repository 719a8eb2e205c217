package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/events"
)

func TestJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	j1 := e.ingest(e.editor, map[string]any{"id": "a", "text": "x"})
	j2 := e.ingest(e.editor, map[string]any{"id": "b", "text": "y"})
	j3 := e.ingest(e.editor, map[string]any{"id": "c", "text": "z"})
	otherAcc, otherAdmin := e.otherAccount("other")
	foreign := e.ingest(otherAdmin, map[string]any{"id": "a", "text": "x"})

	// j2 partly failed.
	_, err := e.recs.UpdateJob(ctx, apiary.DefaultAccount, j2, func(j *apiary.Job) error {
		j.Status = apiary.JobSucceeded
		j.Counts = apiary.Counts{DocumentsTotal: 5, DocumentsDone: 2, DocumentsFailed: 3}
		j.Errors = []apiary.DocumentError{{DocumentID: "b", Reason: "not valid UTF-8"}}
		return nil
	})
	require.NoError(t, err)

	t.Run("get", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/jobs/"+string(j1), e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		got := decode[map[string]any](t, rec)
		require.Equal(t, string(j1), got["id"])
		require.Equal(t, "queued", got["status"])
		require.Equal(t, []any{}, got["errors"])
		require.NotContains(t, got, "message")
		require.NotContains(t, got, "Version")
	})
	t.Run("get partly failed", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/jobs/"+string(j2), e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, "3 of 5 documents failed; see errors", decode[jobView](t, rec).Message)
	})
	t.Run("another account's job", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/jobs/"+string(foreign), e.viewer)
		requireProblem(t, rec, http.StatusNotFound, "no such job")
		rec = e.do(http.MethodPost, "/v1/jobs/"+string(foreign)+"/cancel", e.editor)
		requireProblem(t, rec, http.StatusNotFound, "no such job")
		j, err := e.recs.Job(ctx, otherAcc, foreign)
		require.NoError(t, err)
		require.Equal(t, apiary.JobQueued, j.Status, "untouched")
	})
	t.Run("errors page through every failed document", func(t *testing.T) {
		for i := range 5 {
			o := apiary.DocumentOutcome{Document: apiary.DocumentID(fmt.Sprintf("d%d", i)), Reason: "not valid UTF-8"}
			if i == 2 {
				o.Reason = "" // succeeded: not listed
			}
			_, err := e.recs.RecordOutcome(ctx, apiary.DefaultAccount, j2, o)
			require.NoError(t, err)
		}
		var got []apiary.DocumentError
		cursor := ""
		for range 5 {
			rec := e.do(http.MethodGet, "/v1/jobs/"+string(j2)+"/errors?limit=3&cursor="+cursor, e.viewer)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			page := decode[jobErrorList](t, rec)
			require.LessOrEqual(t, len(page.Errors), 3)
			got = append(got, page.Errors...)
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		require.ElementsMatch(t, []apiary.DocumentID{"d0", "d1", "d3", "d4"}, docIDs(got))
		for _, d := range got {
			require.Equal(t, "not valid UTF-8", d.Reason)
		}

		rec := e.do(http.MethodGet, "/v1/jobs/"+string(j1)+"/errors", e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, jobErrorList{Errors: []apiary.DocumentError{}}, decode[jobErrorList](t, rec))
		requireProblem(t, e.do(http.MethodGet, "/v1/jobs/"+string(j2)+"/errors?limit=0", e.viewer), http.StatusBadRequest, "limit")
		requireProblem(t, e.do(http.MethodGet, "/v1/jobs/"+string(j2)+"/errors?cursor=%21", e.viewer), http.StatusBadRequest, "cursor")
		requireProblem(t, e.do(http.MethodGet, "/v1/jobs/"+string(foreign)+"/errors", e.viewer), http.StatusNotFound, "no such job")
	})
	t.Run("malformed id", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/jobs/nope", e.viewer)
		requireProblem(t, rec, http.StatusNotFound, "no job")
	})
	t.Run("list", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/jobs", e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		got := decode[jobList](t, rec)
		require.Equal(t, []apiary.JobID{j3, j2, j1}, jobIDs(got.Jobs))
		require.Empty(t, got.NextCursor)
	})
	t.Run("list pages", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/jobs?limit=2", e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		page := decode[jobList](t, rec)
		require.Equal(t, []apiary.JobID{j3, j2}, jobIDs(page.Jobs))
		require.NotEmpty(t, page.NextCursor)
		rec = e.do(http.MethodGet, "/v1/jobs?limit=2&cursor="+page.NextCursor, e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		page = decode[jobList](t, rec)
		require.Equal(t, []apiary.JobID{j1}, jobIDs(page.Jobs))
		require.Empty(t, page.NextCursor)
	})
	t.Run("list by status", func(t *testing.T) {
		rec := e.do(http.MethodGet, "/v1/jobs?status=succeeded", e.viewer)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, []apiary.JobID{j2}, jobIDs(decode[jobList](t, rec).Jobs))
	})
	for _, tc := range []struct{ name, query, want string }{
		{"bad status", "status=done", "status must be one of"},
		{"zero limit", "limit=0", "limit must be"},
		{"huge limit", "limit=501", "limit must be"},
		{"word limit", "limit=ten", "limit must be"},
		{"bad cursor", "cursor=%21%21", "cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(http.MethodGet, "/v1/jobs?"+tc.query, e.viewer)
			requireProblem(t, rec, http.StatusBadRequest, tc.want)
		})
	}

	t.Run("cancel", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/v1/jobs/"+string(j3)+"/cancel", e.editor)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		got := decode[jobView](t, rec)
		require.Equal(t, apiary.JobCanceled, got.Status)
		require.Equal(t, "canceled by request", got.Error)
		require.NotNil(t, got.FinishedAt)
		stored, err := e.recs.Job(ctx, apiary.DefaultAccount, j3)
		require.NoError(t, err)
		require.Equal(t, apiary.JobCanceled, stored.Status)
		require.True(t, stored.Notified, "a worker that picks the job up later does not publish a second final event")
		evs, err := e.bus.Replay(ctx, events.Filter{Account: apiary.DefaultAccount, Job: j3}, 10)
		require.NoError(t, err)
		require.Len(t, evs, 2)
		require.Equal(t, apiary.EventJobCanceled, evs[1].Type)

		rec = e.do(http.MethodPost, "/v1/jobs/"+string(j3)+"/cancel", e.editor)
		requireProblem(t, rec, http.StatusConflict, "job already canceled")
		rec = e.do(http.MethodPost, "/v1/jobs/"+string(j2)+"/cancel", e.editor)
		requireProblem(t, rec, http.StatusConflict, "job already succeeded")
	})
}

func jobIDs(js []jobView) []apiary.JobID {
	out := make([]apiary.JobID, 0, len(js))
	for _, j := range js {
		out = append(out, j.ID)
	}
	return out
}

func docIDs(errs []apiary.DocumentError) []apiary.DocumentID {
	out := make([]apiary.DocumentID, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.DocumentID)
	}
	return out
}
