package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/apiaryhq/apiary"
)

// apiClient calls an Apiary API over HTTP, as a client would: the fairness
// bench and `apiary eval` drive Apiary through it.
type apiClient struct {
	base string // http://host:port, no trailing slash
	http *http.Client
}

func newAPIClient(base string) apiClient {
	return apiClient{base: base, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// call sends one request; out, when not nil, gets a 2xx answer's body.
func (c *apiClient) call(ctx context.Context, token, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		se := &statusErr{code: resp.StatusCode, msg: fmt.Sprintf("%s %s: %d %s", method, path, resp.StatusCode, b)}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			se.retryAfter = time.Duration(s) * time.Second
		}
		return resp.StatusCode, se
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// final polls a job until it is final.
func (c *apiClient) final(ctx context.Context, token, id string) error {
	for {
		var j struct {
			Status apiary.JobStatus `json:"status"`
		}
		if _, err := c.call(ctx, token, http.MethodGet, "/v1/jobs/"+id, nil, &j); err != nil {
			return err
		}
		if j.Status.Final() {
			if j.Status != apiary.JobSucceeded {
				return fmt.Errorf("job %s ended %s", id, j.Status)
			}
			return nil
		}
		if err := pause(ctx, 25*time.Millisecond); err != nil {
			return err
		}
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// statusOf is the HTTP status of a call's error, 0 when none.
func statusOf(err error) int {
	var se *statusErr
	if errors.As(err, &se) {
		return se.code
	}
	return 0
}

// statusErr is a call's non-2xx answer.
type statusErr struct {
	code       int
	msg        string
	retryAfter time.Duration // the answer's Retry-After, 0 when none
}

func (e *statusErr) Error() string { return e.msg }

// refusal tells whether code is a 429 or 503 answer.
func refusal(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable
}

// maxRefusedWait bounds how long callRetry waits out 429 and 503 answers
// for one call.
const maxRefusedWait = 5 * time.Minute

// callRetry is call, sending the request again after each 429 or 503
// answer once its Retry-After (1s when it has none) has passed, for up to
// maxRefusedWait in all.
func (c *apiClient) callRetry(ctx context.Context, token, method, path string, body, out any) error {
	deadline := time.Now().Add(maxRefusedWait)
	for {
		code, err := c.call(ctx, token, method, path, body, out)
		if err == nil || !refusal(code) || time.Now().After(deadline) {
			return err
		}
		wait := time.Second
		var se *statusErr
		if errors.As(err, &se) && se.retryAfter > 0 {
			wait = se.retryAfter
		}
		if err := pause(ctx, wait); err != nil {
			return err
		}
	}
}
