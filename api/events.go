package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/events"
)

// Job events, read from the event bus: a live Server-Sent Events stream of
// one job (GET /v1/jobs/{id}/events) and pages of the account's recent
// events (GET /v1/events).

// eventView is an event as the API shows it: without the account, which is
// always the caller's.
type eventView struct {
	ID    string           `json:"id"`
	Type  apiary.EventType `json:"type"`
	JobID apiary.JobID     `json:"job_id"`
	// ConnectionID is set on connection.* events.
	ConnectionID string                 `json:"connection_id,omitempty"`
	Status       apiary.JobStatus       `json:"status"`
	Counts       apiary.Counts          `json:"counts"`
	Errors       []apiary.DocumentError `json:"errors"`
	Time         time.Time              `json:"time"`
	Seq          uint64                 `json:"seq"`
}

func viewEvent(ev apiary.Event) eventView {
	if ev.Errors == nil {
		ev.Errors = []apiary.DocumentError{}
	}
	return eventView{ID: ev.ID, Type: ev.Type, JobID: ev.Job, ConnectionID: ev.Connection, Status: ev.Status, Counts: ev.Counts,
		Errors: ev.Errors, Time: ev.Time, Seq: ev.Seq}
}

// replayPage is how many stored events a stream reads at once.
const replayPage = 200

// streamRetryAfter is the Retry-After of a refused stream.
const streamRetryAfter = 5 * time.Second

// streamSet counts the open event streams of each account and ends them
// all on stop. Its zero value is ready.
type streamSet struct {
	mu      sync.Mutex
	open    map[apiary.AccountID]int
	stop    chan struct{} // closed by stopAll; made on first use
	stopped bool
}

// stopC returns the channel closed by stopAll. Call with mu held.
func (s *streamSet) stopC() chan struct{} {
	if s.stop == nil {
		s.stop = make(chan struct{})
	}
	return s.stop
}

// acquire takes one of account's max stream slots.
func (s *streamSet) acquire(account apiary.AccountID, limit int) (stop <-chan struct{}, release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, nil, &apiary.Error{Kind: apiary.KindUnavailable, Msg: "the server is shutting down; reconnect", RetryAfter: streamRetryAfter}
	}
	if s.open[account] >= limit {
		return nil, nil, &apiary.Error{
			Kind:       apiary.KindRateLimited,
			Msg:        fmt.Sprintf("this account already has %d event streams open, the most allowed; close one, or poll GET /v1/jobs/{id}", limit),
			RetryAfter: streamRetryAfter,
		}
	}
	if s.open == nil {
		s.open = make(map[apiary.AccountID]int)
	}
	s.open[account]++
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.open[account]--; s.open[account] <= 0 {
				delete(s.open, account)
			}
		})
	}
	return s.stopC(), release, nil
}

func (s *streamSet) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		close(s.stopC())
	}
}

// StopStreams ends every open event stream and refuses new ones with 503.
// Register it with http.Server.RegisterOnShutdown: Shutdown waits for
// requests in flight, and a stream is one until its job ends.
func (s *Server) StopStreams() { s.streams.stopAll() }

// lastEventID is the Seq after which a stream resumes: the Last-Event-ID
// header (sent by an EventSource when it reconnects) or ?last_event_id=.
// Seq counts the caller's account's events only (see events.Bus), so ids
// and cursors reveal nothing of other accounts.
func lastEventID(c echo.Context) (uint64, error) {
	v := c.Request().Header.Get("Last-Event-ID")
	if v == "" {
		v = c.QueryParam("last_event_id")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63) // sequence numbers stay far below 2^63; larger would wrap
	if err != nil {
		return 0, apiary.E(apiary.KindInvalid, "Last-Event-ID must be the id of an event received earlier (a whole number)")
	}
	return n, nil
}

// jobEvents streams a job's events as Server-Sent Events: first those that
// already happened (after Last-Event-ID), then new ones as they come. The
// stream ends after the job's final event, when the client goes away, or on
// StopStreams. A finished job whose events the client all has answers 204.
// A job whose record is final but whose final event does not
// come within a heartbeat (it was lost) ends the stream too, after every
// stored event of the job is written.
func (s *Server) jobEvents(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	after, err := lastEventID(c)
	if err != nil {
		return err
	}
	p := principal(c)
	ctx := c.Request().Context()
	job, err := s.deps.Records.Job(ctx, p.Account, id)
	if err != nil {
		return err
	}
	if job.Status.Final() && after > 0 {
		// The client has every event of a finished job: 204 tells an
		// EventSource to stop reconnecting.
		rest, err := s.deps.Events.Replay(ctx, events.Filter{Account: p.Account, Job: id, AfterSeq: after}, 1)
		if err != nil {
			return err
		}
		if len(rest) == 0 {
			return c.NoContent(http.StatusNoContent)
		}
	}
	stop, release, err := s.streams.acquire(p.Account, s.cfg.MaxStreamsPerAccount)
	if err != nil {
		return err
	}
	defer release()

	ctx, cancel := context.WithCancel(ctx)
	evs := make(chan apiary.Event)
	followErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		f := events.Filter{Account: p.Account, Job: id, AfterSeq: after}
		followErr <- s.deps.Events.Follow(ctx, f, func(ev apiary.Event) (bool, error) {
			select {
			case evs <- ev:
				return !ev.Type.Final(), nil
			case <-ctx.Done():
				return false, nil
			}
		})
	})
	defer func() {
		cancel()
		wg.Wait()
	}()

	w := newSSEWriter(c.Response())
	if err := w.open(); err != nil {
		return nil // the client is gone
	}
	// sent is the Seq of the last event written: the follower may deliver
	// again what a drain already wrote.
	sent := after
	// drain writes the job's stored events after sent, so that a stream
	// never ends on a final job before its stored events are out however
	// slowly the follower delivers them. done: the final event is written
	// or the client is gone.
	drain := func() (done bool, err error) {
		for {
			page, err := s.deps.Events.Replay(ctx, events.Filter{Account: p.Account, Job: id, AfterSeq: sent}, replayPage)
			if err != nil {
				return false, fmt.Errorf("api: replay events of job %s: %w", id, err)
			}
			for _, ev := range page {
				sent = ev.Seq
				if err := w.event(ev); err != nil || ev.Type.Final() {
					return true, nil
				}
			}
			if len(page) < replayPage {
				return false, nil
			}
		}
	}
	final := job.Status.Final()
	if final {
		if done, err := drain(); done || err != nil {
			return err
		}
	}
	tick := time.NewTicker(s.cfg.SSEHeartbeat)
	defer tick.Stop()
	quiet := false // no event since the last tick
	for {
		select {
		case ev := <-evs:
			if ev.Seq <= sent {
				continue // a drain wrote it
			}
			quiet, sent = false, ev.Seq
			if err := w.event(ev); err != nil || ev.Type.Final() {
				return nil
			}
		case err := <-followErr:
			if err == nil || ctx.Err() != nil {
				return nil
			}
			// Headers are sent: the error handler only logs this, and the
			// client reconnects with Last-Event-ID.
			return fmt.Errorf("api: follow events of job %s: %w", id, err)
		case <-tick.C:
			if final && quiet {
				return nil
			}
			quiet = true
			if err := w.comment("keep-alive"); err != nil {
				return nil
			}
			if !final {
				if final = s.jobFinal(ctx, p.Account, id); final {
					if done, err := drain(); done || err != nil {
						return err
					}
				}
			}
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// jobFinal re-reads a job's record; an error counts as not final.
func (s *Server) jobFinal(ctx context.Context, account apiary.AccountID, id apiary.JobID) bool {
	j, err := s.deps.Records.Job(ctx, account, id)
	return err == nil && j.Status.Final()
}

// sseWriter writes Server-Sent Events, flushing each one.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// open sends the stream's headers.
func (w *sseWriter) open() error {
	h := w.w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	// A stream outlives any server-wide write timeout.
	_ = w.rc.SetWriteDeadline(time.Time{})
	w.w.WriteHeader(http.StatusOK)
	return w.rc.Flush()
}

func (w *sseWriter) event(ev apiary.Event) error {
	data, err := json.Marshal(viewEvent(ev))
	if err != nil {
		return err
	}
	w.buf.Reset()
	fmt.Fprintf(&w.buf, "id: %d\n", ev.Seq)
	if typ := string(ev.Type); typ != "" && !strings.ContainsAny(typ, "\r\n") {
		fmt.Fprintf(&w.buf, "event: %s\n", typ)
	}
	fmt.Fprintf(&w.buf, "data: %s\n\n", data)
	return w.send()
}

func (w *sseWriter) comment(text string) error {
	w.buf.Reset()
	fmt.Fprintf(&w.buf, ": %s\n\n", text)
	return w.send()
}

func (w *sseWriter) send() error {
	if _, err := w.w.Write(w.buf.Bytes()); err != nil {
		return err
	}
	return w.rc.Flush()
}

type eventList struct {
	Events     []eventView `json:"events"`
	NextCursor string      `json:"next_cursor"`
}

// listEvents answers one page of the account's events, oldest first, after
// the cursor ?after=. next_cursor is always set: the Seq of the page's last
// event, or the cursor given when there is none yet; a page shorter than
// limit is the end for now, and polling again with next_cursor gets what
// came since.
func (s *Server) listEvents(c echo.Context) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	var after uint64
	if v := c.QueryParam("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 63); err != nil {
			return apiary.E(apiary.KindInvalid, "after must be the next_cursor of an earlier page (a whole number)")
		}
	}
	evs, err := s.deps.Events.Replay(c.Request().Context(), events.Filter{Account: principal(c).Account, AfterSeq: after}, limit)
	if err != nil {
		return err
	}
	out := eventList{Events: make([]eventView, 0, len(evs)), NextCursor: strconv.FormatUint(after, 10)}
	for _, ev := range evs {
		out.Events = append(out.Events, viewEvent(ev))
		out.NextCursor = strconv.FormatUint(ev.Seq, 10)
	}
	return c.JSON(http.StatusOK, out)
}
