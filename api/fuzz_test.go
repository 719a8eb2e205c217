package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
)

// FuzzIngestJSON feeds arbitrary bodies to the JSON ingest decoder: it must
// never panic, and every error must be the caller's (a 4xx), never a 500.
func FuzzIngestJSON(f *testing.F) {
	for _, s := range []string{
		`{"documents":[{"id":"a","text":"x"}]}`,
		`{"documents":[{"id":"a","title":"t","text":"x","metadata":{"k":"v","n":1.5e3,"b":true}}]}`,
		`{"documents":[{"id":"a","text":"x","metadata":{"k":{"n":1}}}]}`,
		`{"documents":[]}`,
		`{"documents":null}`,
		`{"documents":[{"id":"a","text":"x"},{"id":"a","text":"y"}]}`,
		`{"documents":[{"id":" a","text":"x"}]}`,
		"{\"documents\":[{\"id\":\"a\",\"text\":\"\xff\"}]}",
		`{"documents":[{"id":"a","text":"\ud800"}]}`,
		`[1,2,3]`,
		`{"documents":[1]}`,
		`{"documents":[{"id":1}]}`,
		`{"documents":[{"id":"a","text":"x"}]}{}`,
		``,
		`{`,
	} {
		f.Add([]byte(s))
	}
	e := echo.New()
	c := e.NewContext(httptest.NewRequest(http.MethodPost, "/", nil), httptest.NewRecorder())
	lim := ingestLimits{maxDocuments: 5, maxIDLen: apiary.MaxDocumentIDLen}
	f.Fuzz(func(t *testing.T, body []byte) {
		docs, err := decodeIngestJSON(body, lim)
		if err != nil {
			if p := problemFor(err, c); p.Status >= 500 || p.Detail == "" {
				t.Fatalf("decode error answers %d %q: %v", p.Status, p.Detail, err)
			}
			return
		}
		if len(docs) == 0 || len(docs) > lim.maxDocuments {
			t.Fatalf("accepted %d documents", len(docs))
		}
		for _, d := range docs {
			if d.ID.Validate() != nil || d.Text == "" {
				t.Fatalf("accepted an invalid document %q", d.ID)
			}
		}
	})
}
