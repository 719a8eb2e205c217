package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue"
)

// Event streams are tested through a real HTTP server: a recorder cannot
// show what reaches the client while the handler still runs.

// httpServer serves e's API on a loopback port until the test ends.
func httpServer(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(specHandler(t, e.srv.Handler()))
	t.Cleanup(srv.Close) // after the streams below are closed: it waits for them
	return srv
}

// sseMsg is one Server-Sent Events message, or one comment.
type sseMsg struct {
	id, event, data, comment string
}

// sseStream is a client's view of GET .../events.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	lines  *bufio.Scanner
	cancel context.CancelFunc
}

// openStream sends GET path with token and header; the answer may be an
// error (check resp.StatusCode). The stream is closed when the test ends.
func openStream(t *testing.T, srv *httptest.Server, path, token string, header http.Header) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	require.NoError(t, err)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	s := &sseStream{t: t, resp: resp, lines: bufio.NewScanner(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

// close hangs up, as a client that goes away.
func (s *sseStream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// requireOpen checks that the stream is open with the headers of an event stream.
func (s *sseStream) requireOpen() {
	s.t.Helper()
	require.Equal(s.t, http.StatusOK, s.resp.StatusCode)
	h := s.resp.Header
	require.Equal(s.t, "text/event-stream", h.Get("Content-Type"))
	require.Equal(s.t, "no-cache", h.Get("Cache-Control"))
	require.Equal(s.t, "no", h.Get("X-Accel-Buffering"))
	require.Equal(s.t, "nosniff", h.Get("X-Content-Type-Options"))
	require.NotEmpty(s.t, h.Get("X-Request-Id"))
}

// requireProblem checks that the stream was refused with status.
func (s *sseStream) requireProblem(status int, want string) {
	s.t.Helper()
	body, err := io.ReadAll(s.resp.Body)
	require.NoError(s.t, err)
	require.Equal(s.t, status, s.resp.StatusCode, string(body))
	require.Equal(s.t, problemContentType, s.resp.Header.Get("Content-Type"))
	var p problem
	require.NoError(s.t, json.Unmarshal(body, &p), string(body))
	require.Equal(s.t, status, p.Status)
	require.Contains(s.t, p.Detail, want)
}

// next reads the next message or comment; io.EOF when the server ended the stream.
func (s *sseStream) next() (sseMsg, error) {
	var m sseMsg
	seen := false
	for s.lines.Scan() {
		line := s.lines.Text()
		if line == "" {
			if seen {
				return m, nil
			}
			continue
		}
		seen = true
		if c, ok := strings.CutPrefix(line, ":"); ok {
			m.comment = strings.TrimSpace(c)
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			m.id = value
		case "event":
			m.event = value
		case "data":
			m.data = value
		default:
			s.t.Fatalf("unexpected field in %q", line)
		}
	}
	if err := s.lines.Err(); err != nil {
		return m, err
	}
	require.False(s.t, seen, "the stream ended inside a message")
	return m, io.EOF
}

// nextEvent skips comments and returns the next event.
func (s *sseStream) nextEvent() sseMsg {
	s.t.Helper()
	for {
		m, err := s.next()
		require.NoError(s.t, err)
		if m.comment == "" {
			return m
		}
	}
}

// rest reads events until the server ends the stream.
func (s *sseStream) rest() []sseMsg {
	s.t.Helper()
	var out []sseMsg
	for {
		m, err := s.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(s.t, err, "the stream must end by itself")
		if m.comment == "" {
			out = append(out, m)
		}
	}
}

// view decodes a message's data and checks that it matches its id and event fields.
func (m sseMsg) view(t *testing.T) eventView {
	t.Helper()
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(m.data), &raw), m.data)
	require.NotContains(t, raw, "account_id", "the account is the caller's; it is not repeated")
	var v eventView
	require.NoError(t, json.Unmarshal([]byte(m.data), &v))
	require.Equal(t, m.id, strconv.FormatUint(v.Seq, 10))
	require.Equal(t, m.event, string(v.Type))
	require.NotEmpty(t, v.ID)
	return v
}

func types(msgs []sseMsg) []apiary.EventType {
	out := make([]apiary.EventType, len(msgs))
	for i, m := range msgs {
		out[i] = apiary.EventType(m.event)
	}
	return out
}

func lastEventIDHeader(id string) http.Header {
	return http.Header{"Last-Event-Id": {id}}
}

// publish puts an event of job's current record on the bus, as a worker would.
func (e *env) publishEvent(t *testing.T, account apiary.AccountID, id apiary.JobID, typ apiary.EventType) {
	t.Helper()
	j, err := e.recs.Job(context.Background(), account, id)
	require.NoError(t, err)
	require.NoError(t, e.bus.Publish(context.Background(), apiary.NewJobEvent(j, typ)))
}

// delivery takes the next job from the queue.
func (e *env) delivery(t *testing.T) *queue.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		ds, err := e.queue.Receive(ctx, 1) // waits up to the poll interval
		require.NoError(t, err)
		if len(ds) == 1 {
			return ds[0]
		}
	}
}

func TestJobEventsStreamAWorkersJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := httpServer(t, e)
	job := e.ingest(e.editor,
		map[string]any{"id": "a", "text": "alpha"},
		map[string]any{"id": "b", "text": "beta"},
		map[string]any{"id": "c", "text": "gamma"})
	path := "/v1/jobs/" + string(job) + "/events"

	s := openStream(t, srv, path, e.viewer, nil)
	s.requireOpen()
	queued := s.nextEvent()
	require.Equal(t, string(apiary.EventJobQueued), queued.event, "what happened before the client came is replayed")
	require.Equal(t, apiary.JobQueued, queued.view(t).Status)

	// The client is following: the real ingestion handler runs the job now.
	svc := jobs.New(jobs.Config{ProgressEvery: time.Nanosecond}, e.recs, e.queue, e.bus, e.stager)
	h := workers.NewIngestHandler(workers.IngestConfig{DocConcurrency: 1}, svc, e.stager, e.pipe)
	d := e.delivery(t)
	require.Equal(t, job, d.Msg.Job)
	require.NoError(t, h.Handle(t.Context(), d))
	require.NoError(t, d.Ack(t.Context()))

	live := s.rest() // ends by itself after the final event
	all := append([]sseMsg{queued}, live...)
	require.Equal(t, []apiary.EventType{apiary.EventJobQueued, apiary.EventJobStarted, apiary.EventJobProgress,
		apiary.EventJobProgress, apiary.EventJobProgress, apiary.EventJobSucceeded}, types(all))
	var prev uint64
	for i, m := range all {
		v := m.view(t)
		require.Equal(t, job, v.JobID)
		require.Greater(t, v.Seq, prev, "events come in order")
		prev = v.Seq
		if m.event == string(apiary.EventJobProgress) {
			require.Equal(t, i-1, v.Counts.DocumentsDone)
		}
	}
	final := all[len(all)-1].view(t)
	require.Equal(t, apiary.JobSucceeded, final.Status)
	require.Equal(t, apiary.Counts{DocumentsTotal: 3, DocumentsDone: 3, Chunks: final.Counts.Chunks}, final.Counts)
	require.Positive(t, final.Counts.Chunks)
	require.Equal(t, apiary.FinalEventID(job), final.ID)

	t.Run("a finished job replays and ends", func(t *testing.T) {
		s := openStream(t, srv, path, e.viewer, nil)
		s.requireOpen()
		require.Equal(t, all, s.rest())
	})
	t.Run("resume after the started event", func(t *testing.T) {
		s := openStream(t, srv, path, e.viewer, lastEventIDHeader(all[1].id))
		s.requireOpen()
		require.Equal(t, all[2:], s.rest())
	})
	t.Run("resume after the final event: 204 stops an EventSource", func(t *testing.T) {
		s := openStream(t, srv, path, e.viewer, lastEventIDHeader(all[5].id))
		require.Equal(t, http.StatusNoContent, s.resp.StatusCode)
	})
}

func TestJobEventsResumeWithLastEventID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := httpServer(t, e)
	acc := apiary.DefaultAccount
	job := e.ingest(e.editor, map[string]any{"id": "a", "text": "alpha"})
	path := "/v1/jobs/" + string(job) + "/events"

	first := openStream(t, srv, path, e.viewer, nil)
	first.requireOpen()
	queued := first.nextEvent()
	require.Equal(t, string(apiary.EventJobQueued), queued.event)
	e.publishEvent(t, acc, job, apiary.EventJobStarted)
	started := first.nextEvent()
	require.Equal(t, string(apiary.EventJobStarted), started.event, "an event published after the client connected arrives")
	first.close() // the client drops; what follows happens while it is away

	e.publishEvent(t, acc, job, apiary.EventJobProgress)
	e.publishEvent(t, acc, job, apiary.EventJobProgress)
	_, err := e.recs.UpdateJob(t.Context(), acc, job, func(j *apiary.Job) error {
		j.Status = apiary.JobSucceeded
		return nil
	})
	require.NoError(t, err)
	e.publishEvent(t, acc, job, apiary.EventJobSucceeded)

	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
	}{
		{"header", "", lastEventIDHeader(started.id)},
		{"query", "?last_event_id=" + started.id, nil},
		{"header wins over query", "?last_event_id=" + queued.id, lastEventIDHeader(started.id)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStream(t, srv, path+tc.query, e.viewer, tc.header)
			s.requireOpen()
			missed := s.rest()
			require.Equal(t, []apiary.EventType{apiary.EventJobProgress, apiary.EventJobProgress, apiary.EventJobSucceeded}, types(missed))
			for _, m := range missed {
				require.Greater(t, m.view(t).Seq, started.view(t).Seq)
			}
		})
	}

	for _, bad := range []string{"abc", "-1", "1.5", "99999999999999999999999", "18446744073709551615"} {
		rec := e.do(http.MethodGet, path, e.viewer, request{header: lastEventIDHeader(bad)})
		requireProblem(t, rec, http.StatusBadRequest, "Last-Event-ID")
	}
}

func TestJobEventsHeartbeatAndLostFinalEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.SSEHeartbeat = 10 * time.Millisecond })
	srv := httpServer(t, e)
	job := e.ingest(e.editor, map[string]any{"id": "a", "text": "alpha"})
	path := "/v1/jobs/" + string(job) + "/events"

	s := openStream(t, srv, path, e.viewer, nil)
	s.requireOpen()
	require.Equal(t, string(apiary.EventJobQueued), s.nextEvent().event)
	for range 3 { // a job that is not final keeps its stream open with keep-alives
		m, err := s.next()
		require.NoError(t, err)
		require.Equal(t, sseMsg{comment: "keep-alive"}, m)
	}

	// The job ends but its final event never comes (its publisher lost it):
	// the stream still ends, a heartbeat later.
	_, err := e.recs.UpdateJob(t.Context(), apiary.DefaultAccount, job, func(j *apiary.Job) error {
		j.Status = apiary.JobFailed
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, s.rest())

	again := openStream(t, srv, path, e.viewer, nil)
	again.requireOpen()
	require.Equal(t, []apiary.EventType{apiary.EventJobQueued}, types(again.rest()))
}

// stalledFollower is the real bus whose Follow delivers nothing until its
// context ends: a follower slower than any heartbeat.
type stalledFollower struct{ events.Bus }

func (stalledFollower) Follow(ctx context.Context, _ events.Filter, _ func(apiary.Event) (bool, error)) error {
	<-ctx.Done()
	return nil
}

// A finished job's stream sends every stored event before it ends, however
// slowly its follower delivers them (the heartbeat must not end it first:
// TestJobEventsHeartbeatAndLostFinalEvent flaked on exactly that under load).
func TestJobEventsOfAFinishedJobDoNotWaitForTheFollower(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, d *Deps) {
		c.SSEHeartbeat = 10 * time.Millisecond
		d.Events = stalledFollower{d.Events}
	})
	srv := httpServer(t, e)
	job := e.ingest(e.editor, map[string]any{"id": "a", "text": "alpha"})
	_, err := e.recs.UpdateJob(t.Context(), apiary.DefaultAccount, job, func(j *apiary.Job) error {
		j.Status = apiary.JobFailed // its final event lost
		return nil
	})
	require.NoError(t, err)
	s := openStream(t, srv, "/v1/jobs/"+string(job)+"/events", e.viewer, nil)
	s.requireOpen()
	require.Equal(t, []apiary.EventType{apiary.EventJobQueued}, types(s.rest()))

	// The job's final event stored: the stream ends on it.
	e.publishEvent(t, apiary.DefaultAccount, job, apiary.EventJobFailed)
	s = openStream(t, srv, "/v1/jobs/"+string(job)+"/events", e.viewer, nil)
	s.requireOpen()
	require.Equal(t, []apiary.EventType{apiary.EventJobQueued, apiary.EventJobFailed}, types(s.rest()))
}

func TestJobEventsAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := httpServer(t, e)
	job := e.ingest(e.editor, map[string]any{"id": "a", "text": "alpha"})
	_, otherAdmin := e.otherAccount("other")
	foreign := e.ingest(otherAdmin, map[string]any{"id": "a", "text": "alpha"})

	openStream(t, srv, "/v1/jobs/"+string(job)+"/events", "", nil).requireProblem(http.StatusUnauthorized, "missing bearer token")
	openStream(t, srv, "/v1/jobs/"+string(foreign)+"/events", e.admin, nil).requireProblem(http.StatusNotFound, "no such job")
	openStream(t, srv, "/v1/jobs/"+string(apiary.NewJobID())+"/events", e.viewer, nil).requireProblem(http.StatusNotFound, "no such job")
	openStream(t, srv, "/v1/jobs/nope/events", e.viewer, nil).requireProblem(http.StatusNotFound, "no job")

	// The other account's stream of its own job shows its own events only.
	s := openStream(t, srv, "/v1/jobs/"+string(foreign)+"/events", otherAdmin, nil)
	s.requireOpen()
	m := s.nextEvent()
	require.Equal(t, foreign, m.view(t).JobID)
}

func TestJobEventsStreamLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.MaxStreamsPerAccount = 2 })
	srv := httpServer(t, e)
	job := e.ingest(e.editor, map[string]any{"id": "a", "text": "alpha"})
	path := "/v1/jobs/" + string(job) + "/events"

	first := openStream(t, srv, path, e.viewer, nil)
	first.requireOpen()
	second := openStream(t, srv, path, e.editor, nil)
	second.requireOpen()
	refused := openStream(t, srv, path, e.viewer, nil)
	require.NotEmpty(t, refused.resp.Header.Get("Retry-After"))
	refused.requireProblem(http.StatusTooManyRequests, "2 event streams open")

	_, otherAdmin := e.otherAccount("other")
	foreign := e.ingest(otherAdmin, map[string]any{"id": "a", "text": "alpha"})
	openStream(t, srv, "/v1/jobs/"+string(foreign)+"/events", otherAdmin, nil).requireOpen()

	first.close() // frees a slot once the server sees the client gone
	require.Eventually(t, func() bool {
		s := openStream(t, srv, path, e.viewer, nil)
		if s.resp.StatusCode != http.StatusOK {
			s.close()
			return false
		}
		return true
	}, 20*time.Second, 5*time.Millisecond)

	// StopStreams (for http.Server.RegisterOnShutdown) ends every stream.
	e.srv.StopStreams()
	require.Equal(t, string(apiary.EventJobQueued), second.nextEvent().event)
	require.Empty(t, second.rest())
	openStream(t, srv, path, e.viewer, nil).requireProblem(http.StatusServiceUnavailable, "shutting down")
}

func TestListEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acc := apiary.DefaultAccount
	j1 := e.ingest(e.editor, map[string]any{"id": "a", "text": "alpha"})
	_, otherAdmin := e.otherAccount("other")
	foreign := e.ingest(otherAdmin, map[string]any{"id": "a", "text": "alpha"})
	j2 := e.ingest(e.editor, map[string]any{"id": "b", "text": "beta"})
	e.publishEvent(t, acc, j1, apiary.EventJobStarted)
	e.publishEvent(t, acc, j1, apiary.EventJobProgress)
	j3 := e.ingest(e.editor, map[string]any{"id": "c", "text": "gamma"})

	page := func(token, query string) eventList {
		t.Helper()
		rec := e.do(http.MethodGet, "/v1/events"+query, token)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), "account_id")
		return decode[eventList](t, rec)
	}

	var got []eventView
	cursor := ""
	for range 10 {
		p := page(e.viewer, "?limit=2&after="+cursor)
		require.LessOrEqual(t, len(p.Events), 2)
		if len(p.Events) == 0 {
			require.Equal(t, cursor, p.NextCursor, "an empty page keeps the cursor")
			break
		}
		got = append(got, p.Events...)
		cursor = p.NextCursor
		require.Equal(t, strconv.FormatUint(p.Events[len(p.Events)-1].Seq, 10), cursor)
	}
	type ev struct {
		Job  apiary.JobID
		Type apiary.EventType
	}
	var jobs []ev
	for i, v := range got {
		jobs = append(jobs, ev{v.JobID, v.Type})
		if i > 0 {
			// The other account's job came in between: the cursor shows no gap.
			require.Equal(t, got[i-1].Seq+1, v.Seq, "an account's cursors count its own events only")
		}
	}
	require.Equal(t, []ev{{j1, apiary.EventJobQueued}, {j2, apiary.EventJobQueued}, {j1, apiary.EventJobStarted},
		{j1, apiary.EventJobProgress}, {j3, apiary.EventJobQueued}}, jobs, "the account's events only, in order")

	// Polling with the last cursor finds what came since.
	e.publishEvent(t, acc, j3, apiary.EventJobStarted)
	p := page(e.viewer, "?after="+cursor)
	require.Len(t, p.Events, 1)
	require.Equal(t, j3, p.Events[0].JobID)
	require.Equal(t, apiary.EventJobStarted, p.Events[0].Type)

	other := page(otherAdmin, "")
	require.Len(t, other.Events, 1)
	require.Equal(t, foreign, other.Events[0].JobID)
	require.Equal(t, []apiary.DocumentError{}, other.Events[0].Errors)

	for _, q := range []string{"?after=x", "?after=-1", "?after=1.5", "?after=18446744073709551615"} {
		requireProblem(t, e.do(http.MethodGet, "/v1/events"+q, e.viewer), http.StatusBadRequest, "after must be")
	}
	for _, q := range []string{"?limit=0", "?limit=501", "?limit=x"} {
		requireProblem(t, e.do(http.MethodGet, "/v1/events"+q, e.viewer), http.StatusBadRequest, "limit")
	}
	requireProblem(t, e.do(http.MethodGet, "/v1/events", ""), http.StatusUnauthorized, "missing bearer token")
}

func TestStreamSet(t *testing.T) {
	t.Parallel()
	var s streamSet
	_, r1, err := s.acquire("acc_a", 1)
	require.NoError(t, err)
	_, _, err = s.acquire("acc_a", 1)
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err))
	_, r2, err := s.acquire("acc_b", 1)
	require.NoError(t, err)
	r1()
	r1() // releasing twice frees one slot only
	stop, r3, err := s.acquire("acc_a", 1)
	require.NoError(t, err)
	_, _, err = s.acquire("acc_a", 1)
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err))
	s.stopAll()
	s.stopAll()
	<-stop
	_, _, err = s.acquire("acc_c", 1)
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
	r2()
	r3()
	require.Empty(t, s.open)
}

func TestEventsConfig(t *testing.T) {
	t.Parallel()
	var c Config
	c.setDefaults()
	require.Equal(t, 15*time.Second, c.SSEHeartbeat)
	require.Equal(t, 20, c.MaxStreamsPerAccount)
	bad := Config{SSEHeartbeat: -1, MaxStreamsPerAccount: -1}
	bad.setDefaults()
	err := bad.Validate()
	require.ErrorContains(t, err, "SSEHeartbeat")
	require.ErrorContains(t, err, "MaxStreamsPerAccount")
}
