package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

// do is call for goroutines: no require, the status and body returned.
func (p *inProcess) do(method, path string, body any) (int, []byte, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return 0, nil, err
		}
	}
	req := httptest.NewRequestWithContext(p.t.Context(), method, path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+p.admin)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	p.srv.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes(), nil
}

// ingestAsync is ingest for goroutines: it submits docs and polls their
// job to its end, returning an error unless it succeeded.
func (p *inProcess) ingestAsync(docs []map[string]string) error {
	code, body, err := p.do(http.MethodPost, "/v1/ingest", map[string]any{"documents": docs})
	if err != nil || code != http.StatusAccepted {
		return fmt.Errorf("ingest: %d %s %v", code, body, err)
	}
	var acc struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal(body, &acc); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		code, body, err := p.do(http.MethodGet, "/v1/jobs/"+acc.JobID, nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("job: %d %s %v", code, body, err)
		}
		var j struct {
			Status string `json:"status"`
			Error  any    `json:"error"`
		}
		if err := json.Unmarshal(body, &j); err != nil {
			return err
		}
		if apiary.JobStatus(j.Status).Final() {
			if j.Status != string(apiary.JobSucceeded) {
				return fmt.Errorf("job %s %s: %s", acc.JobID, j.Status, body)
			}
			return nil
		}
		select {
		case <-p.t.Context().Done():
			return p.t.Context().Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("job %s did not end", acc.JobID)
}

// Rotations racing ingestion and queries lose no document: every document
// ingested before, during and after three rotations is found by a query
// (its chunks' text opens) in this process and in a restarted one, and no
// query during the rotations fails.
func TestRotationRacingIngestion(t *testing.T) {
	keys := map[string][]string{"local": nil}
	if ep := os.Getenv("APIARY_TEST_KMS_ENDPOINT"); ep != "" {
		keys["awskms"] = []string{"--keys", "awskms", "--kms-endpoint", ep}
	}
	for name, args := range keys {
		t.Run(name, func(t *testing.T) {
			dataDir := t.TempDir()
			p := startKeysApp(t, serveConfig(t, dataDir, args...))
			acc := p.newAccount()
			want := []string{"amber honeycomb before"}
			p.ingest([]map[string]string{{"id": "before", "text": want[0]}})

			const jobs, perJob = 4, 4
			var docs [jobs][]map[string]string
			for j := range jobs {
				for i := range perJob {
					text := fmt.Sprintf("amber honeycomb during %d %d", j, i)
					docs[j] = append(docs[j], map[string]string{"id": fmt.Sprintf("during-%d-%d", j, i), "text": text})
					want = append(want, text)
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for j := range jobs {
				wg.Go(func() {
					if err := p.ingestAsync(docs[j]); err != nil {
						errs <- err
					}
				})
			}
			wg.Go(func() {
				for range 3 {
					if code, body, err := p.do(http.MethodPost, "/v1/account/keys/rotate", nil); err != nil || code != http.StatusOK {
						errs <- fmt.Errorf("rotate: %d %s %v", code, body, err)
					}
				}
			})
			wg.Go(func() {
				for range 10 {
					if code, body, err := p.do(http.MethodPost, "/v1/query", map[string]any{"query": "amber honeycomb", "top_k": 30}); err != nil || code != http.StatusOK {
						errs <- fmt.Errorf("query during rotation: %d %s %v", code, body, err)
					}
				}
			})
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			p.ingest([]map[string]string{{"id": "after", "text": "amber honeycomb after"}})
			want = append(want, "amber honeycomb after")
			require.ElementsMatch(t, want, p.texts("amber honeycomb"))
			p.a.Close()

			q := startKeysApp(t, serveConfig(t, dataDir, args...))
			q.useAccount(acc)
			require.ElementsMatch(t, want, q.texts("amber honeycomb"), "after a restart")
		})
	}
}
