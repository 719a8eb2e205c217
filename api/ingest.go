package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// MaxIdempotencyKeyLen is the longest accepted Idempotency-Key header.
const MaxIdempotencyKeyLen = 255

type ingestRequest struct {
	Documents []ingestDocument `json:"documents"`
	// WebhookURL, when set, gets the job's final event (webhooks.go).
	WebhookURL string `json:"webhook_url,omitempty"`
}

type ingestDocument struct {
	ID       string                     `json:"id"`
	Title    string                     `json:"title"`
	Text     string                     `json:"text"`
	Metadata map[string]json.RawMessage `json:"metadata"`
}

type ingestResponse struct {
	JobID  apiary.JobID     `json:"job_id"`
	Status apiary.JobStatus `json:"status"`
}

// ingestLimits are the per-request limits checked by the decoders.
type ingestLimits struct {
	maxDocuments int
	maxIDLen     int
}

func (s *Server) limits() ingestLimits {
	return ingestLimits{maxDocuments: s.cfg.MaxDocuments, maxIDLen: s.cfg.MaxDocumentIDLen}
}

// ingest accepts documents (JSON or multipart files) and submits them as a
// job (jobs.Service.Submit: staged sealed, recorded, queued).
func (s *Server) ingest(c echo.Context) error {
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	mt, params, err := mediaType(c)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return s.submitBody(c, key, mt, params, body)
}

// submitBody submits the job an ingest body of media type mt asks for:
// documents, files, or a source. key is the Idempotency-Key, if any.
func (s *Server) submitBody(c echo.Context, key, mt string, params map[string]string, body []byte) error {
	if len(body) == 0 {
		return apiary.E(apiary.KindInvalid, "the request body is empty; send {\"documents\": [...]} as JSON or files as multipart/form-data parts named \"file\"")
	}
	var docs []apiary.Document
	var hookURL string
	var creds apiary.Credentials
	var err error
	var sub jobs.Submission
	switch {
	case isJSON(mt) && hasSource(body):
		var spec connectors.Spec
		// The body may hold a credential: wiped when the request is
		// answered (custody keeps its own copy).
		defer clear(body)
		if spec, hookURL, creds, err = s.decodeSourceRequest(c.Request().Context(), principal(c).Account, body); err == nil {
			sub = jobs.SourceSubmission(principal(c).Account, spec, hookURL)
		}
	case isJSON(mt):
		docs, err = decodeIngestJSON(body, s.limits())
		if err == nil {
			hookURL, err = s.ingestWebhookURL(body)
		}
	case mt == echo.MIMEMultipartForm:
		docs, hookURL, err = decodeIngestMultipart(body, params["boundary"], s.limits())
		if err == nil && hookURL != "" {
			err = s.checkWebhookURL("webhook_url", hookURL)
		}
	case mt == "":
		err = unsupportedMediaType("the Content-Type header is missing; send application/json or multipart/form-data")
	default:
		err = unsupportedMediaType("Content-Type %q is not supported here; send application/json or multipart/form-data", mt)
	}
	if err != nil {
		return err
	}

	if sub.Kind == "" {
		sub = jobs.Submission{Account: principal(c).Account, Kind: apiary.JobKindIngest, Source: "upload",
			Documents: docs, WebhookURL: hookURL}
	}
	sub.IdempotencyKey = key
	if key != "" {
		sub.RequestHash = requestHash(c.Request().Header.Get(echo.HeaderContentType), body)
	}
	var job apiary.Job
	var replayed bool
	if !creds.Empty() {
		job, replayed, err = s.submitWithCredentials(c.Request().Context(), sub, creds)
	} else {
		job, replayed, err = s.jobs.Submit(c.Request().Context(), sub)
	}
	if err != nil {
		return err
	}
	if replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return acceptedJob(c, job)
}

// sourceRequest is an ingestion from a connector's source:
// {"source": {"provider": "web", "url": ..., "max_pages": ...}} or
// {"source": {"provider": "s3", "bucket": ..., "prefix": ..., "region": ...,
// "endpoint": ..., "access_key_id": ..., "secret_access_key": ...,
// "session_token": ...}}. The credential fields are read apart, by
// decodeSourceCredentials, into Secrets; here they are only raw bytes,
// wiped once decoded.
type sourceRequest struct {
	Source struct {
		Provider string `json:"provider"`
		URL      string `json:"url"`
		MaxPages *int   `json:"max_pages"`
		Bucket   string `json:"bucket"`
		Prefix   string `json:"prefix"`
		Region   string `json:"region"`
		Endpoint string `json:"endpoint"`
		// The token providers (gdrive, sharepoint, notion, confluence,
		// github): what to read, and the OAuth connection that reads it
		// (else an ephemeral access_token).
		Sync         bool            `json:"sync"`
		Location     string          `json:"location"`
		Items        json.RawMessage `json:"items"`
		Site         string          `json:"site"`
		MaxItems     *int            `json:"max_items"`
		ConnectionID string          `json:"connection_id"`

		AccessToken     json.RawMessage `json:"access_token"`
		AccessKeyID     json.RawMessage `json:"access_key_id"`
		SecretAccessKey json.RawMessage `json:"secret_access_key"`
		SessionToken    json.RawMessage `json:"session_token"`
		ExpiresAt       json.RawMessage `json:"expires_at"`
	} `json:"source"`
	WebhookURL string `json:"webhook_url,omitempty"`
}

// wipeCredentials clears the raw copies of the credential fields.
func (r *sourceRequest) wipeCredentials() {
	for _, b := range [][]byte{r.Source.AccessToken, r.Source.AccessKeyID, r.Source.SecretAccessKey, r.Source.SessionToken} {
		clear(b)
	}
}

// hasSource reports whether a JSON ingest body names a source rather than
// documents.
func hasSource(body []byte) bool {
	var probe struct {
		Source json.RawMessage `json:"source"`
	}
	return json.Unmarshal(body, &probe) == nil && probe.Source != nil
}

// decodeSourceRequest parses and checks a source request: the spec (what
// is staged: no credential) and the ephemeral credentials, which a
// provider that reads with one (s3) requires and the others refuse. The
// caller owns the credentials (empty on error).
func (s *Server) decodeSourceRequest(ctx context.Context, account apiary.AccountID, body []byte) (connectors.Spec, string, apiary.Credentials, error) {
	var req sourceRequest
	defer req.wipeCredentials()
	if err := decodeJSON(body, &req); err != nil {
		return connectors.Spec{}, "", apiary.Credentials{}, err
	}
	src := req.Source
	spec := connectors.Spec{Provider: src.Provider, URL: src.URL,
		Bucket: src.Bucket, Prefix: src.Prefix, Region: src.Region, Endpoint: src.Endpoint,
		Location: src.Location, Site: src.Site, Connection: src.ConnectionID, Sync: src.Sync}
	for name, n := range map[string]*int{"max_pages": src.MaxPages, "max_items": src.MaxItems} {
		if n == nil {
			continue
		}
		if *n < 1 || *n > connectors.HardMaxItems {
			return connectors.Spec{}, "", apiary.Credentials{}, apiary.E(apiary.KindInvalid, "source.%s must be 1 to %d", name, connectors.HardMaxItems)
		}
		spec.MaxItems = *n
	}
	if src.MaxPages != nil && src.MaxItems != nil {
		return connectors.Spec{}, "", apiary.Credentials{}, apiary.E(apiary.KindInvalid, "source: send max_pages (web) or max_items, not both")
	}
	var err error
	if spec.Items, err = decodeItems(src.Items); err != nil {
		return connectors.Spec{}, "", apiary.Credentials{}, err
	}
	if err := s.resolveConnection(ctx, account, &spec); err != nil {
		return connectors.Spec{}, "", apiary.Credentials{}, err
	}
	if err := spec.Validate(s.cfg.AllowPrivateSources); err != nil {
		return connectors.Spec{}, "", apiary.Credentials{}, err
	}
	if spec.Provider == "gdrive" && s.cfg.DrivePickedOnly && spec.Items == nil {
		return connectors.Spec{}, "", apiary.Credentials{}, apiary.E(apiary.KindInvalid,
			"source.items is required: this server's Google Drive access (scope drive.file) reaches only the files picked for Apiary, so it cannot list a location")
	}
	if req.WebhookURL != "" {
		if err := s.checkWebhookURL("webhook_url", req.WebhookURL); err != nil {
			return connectors.Spec{}, "", apiary.Credentials{}, err
		}
	}
	var probe struct {
		Source json.RawMessage `json:"source"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return connectors.Spec{}, "", apiary.Credentials{}, apiary.E(apiary.KindInvalid, "source must be an object")
	}
	defer clear(probe.Source)
	creds, err := decodeSourceCredentials(probe.Source)
	if err != nil {
		return connectors.Spec{}, "", apiary.Credentials{}, err
	}
	switch {
	case spec.Provider == "s3" && !creds.Token.Empty():
		err = apiary.E(apiary.KindInvalid, "source: the s3 provider takes an access key (access_key_id, secret_access_key, session_token), not access_token")
	case spec.Provider == "s3" && creds.Empty():
		err = apiary.E(apiary.KindInvalid, "source: the s3 provider needs an ephemeral credential: access_key_id and secret_access_key, with session_token for temporary keys")
	case spec.Connection != "" && !creds.Empty():
		err = apiary.E(apiary.KindInvalid, "source: send connection_id or an ephemeral access_token, not both")
	case !spec.NeedsCredential() && !creds.Empty():
		err = apiary.E(apiary.KindInvalid, "source: the %s provider takes no credential", spec.Provider)
	case spec.Provider != "s3" && spec.NeedsCredential() && !creds.AccessKeyID.Empty():
		err = apiary.E(apiary.KindInvalid, "source: the %s provider reads with a bearer token: send access_token (or connection_id), not an access key", spec.Provider)
	case spec.Provider != "s3" && spec.NeedsCredential() && creds.Empty():
		err = apiary.E(apiary.KindInvalid, "source: the %s provider reads with a connection (connection_id, see POST /v1/connections) or an ephemeral access_token", spec.Provider)
	}
	if err != nil {
		creds.Wipe()
		return connectors.Spec{}, "", apiary.Credentials{}, err
	}
	return spec, req.WebhookURL, creds, nil
}

// decodeItems reads a source's "items": absent or "all" (nil: everything
// the location holds) or an array of item ids.
func decodeItems(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `"all"` {
		return nil, nil
	}
	var items []string
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, apiary.E(apiary.KindInvalid, `source.items must be "all" or an array of item ids`)
	}
	if items == nil {
		items = []string{}
	}
	return items, nil
}

// resolveConnection checks the connection a source request names: one of
// the caller's own (another account's answers 404, like a missing one),
// active, and of the OAuth provider that spec's provider reads with; the
// provider may be left out, then it is the connection's.
func (s *Server) resolveConnection(ctx context.Context, account apiary.AccountID, spec *connectors.Spec) error {
	if spec.Connection == "" {
		return nil
	}
	if !strings.HasPrefix(spec.Connection, "con_") || len(spec.Connection) > 64 {
		return apiary.E(apiary.KindNotFound, "source.connection_id: no such connection")
	}
	conn, err := s.conns.Connection(ctx, account, spec.Connection)
	if errors.Is(err, apiary.ErrNotFound) {
		return apiary.E(apiary.KindNotFound, "source.connection_id: no such connection")
	}
	if err != nil {
		return err
	}
	reads := connectors.ProviderOf(conn.Provider)
	switch {
	case reads == "":
		return apiary.E(apiary.KindInvalid, "source.connection_id: a %s connection reads no documents; connect one of: google, microsoft, notion, atlassian, github", conn.Provider)
	case spec.Provider == "":
		spec.Provider = reads
	case spec.Provider != reads:
		return apiary.E(apiary.KindInvalid, "source.connection_id is a %s connection, which reads %s, not %s", conn.Provider, reads, spec.Provider)
	}
	if conn.Status != records.ConnectionActive {
		return apiary.E(apiary.KindConflict, "source.connection_id: the connection is %s; it reads nothing until it is authorized again (POST /v1/connections)", conn.Status)
	}
	return nil
}

func acceptedJob(c echo.Context, j apiary.Job) error {
	c.Response().Header().Set(echo.HeaderLocation, "/v1/jobs/"+string(j.ID))
	return c.JSON(http.StatusAccepted, ingestResponse{JobID: j.ID, Status: j.Status})
}

// requestHash identifies a request for idempotency: SHA-256 of its content
// type and body, credentials left out (requestHashInput).
func requestHash(contentType string, body []byte) string {
	sum := sha256.Sum256(requestHashInput(contentType, body))
	return hex.EncodeToString(sum[:])
}

// idempotencyKey returns the Idempotency-Key header: up to 255 printable
// ASCII characters, or "".
func idempotencyKey(c echo.Context) (string, error) {
	vals := c.Request().Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	if len(vals) > 1 {
		return "", apiary.E(apiary.KindInvalid, "send at most one Idempotency-Key header")
	}
	key := vals[0]
	if key == "" || len(key) > MaxIdempotencyKeyLen {
		return "", apiary.E(apiary.KindInvalid, "Idempotency-Key must be 1 to %d characters", MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return "", apiary.E(apiary.KindInvalid, "Idempotency-Key may hold only printable ASCII characters without spaces (a UUID is a good choice)")
		}
	}
	return key, nil
}

// decodeIngestJSON parses {"documents":[...]} and validates it.
func decodeIngestJSON(body []byte, lim ingestLimits) ([]apiary.Document, error) {
	if n := countDocuments(body, lim.maxDocuments); n > lim.maxDocuments {
		return nil, apiary.E(apiary.KindInvalid, "more than %d documents in one request; the limit is %d, split them over several requests", lim.maxDocuments, lim.maxDocuments)
	}
	var req ingestRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	if req.Documents == nil {
		return nil, apiary.E(apiary.KindInvalid, "the body must be {\"documents\": [...]}; the documents field is missing")
	}
	docs := make([]apiary.Document, 0, len(req.Documents))
	for i, d := range req.Documents {
		meta, err := scalarMap(fmt.Sprintf("documents[%d].metadata", i), d.Metadata)
		if err != nil {
			return nil, err
		}
		if d.Text == "" {
			return nil, apiary.E(apiary.KindInvalid, "documents[%d] has no text; send text, or upload files as multipart/form-data", i)
		}
		if !utf8.ValidString(d.Text) {
			return nil, apiary.E(apiary.KindInvalid, "documents[%d].text is not valid UTF-8", i)
		}
		docs = append(docs, apiary.Document{
			ID:       apiary.DocumentID(d.ID),
			Title:    d.Title,
			Text:     d.Text,
			Metadata: meta,
		})
	}
	if err := checkDocuments(docs, lim); err != nil {
		return nil, err
	}
	return docs, nil
}

// maxURLLen bounds a webhook_url form field.
const maxURLLen = 2048

// decodeIngestMultipart parses one or more "file" parts, an optional "id" and
// an optional "webhook_url".
func decodeIngestMultipart(body []byte, boundary string, lim ingestLimits) ([]apiary.Document, string, error) {
	if boundary == "" {
		return nil, "", apiary.E(apiary.KindInvalid, "the multipart/form-data Content-Type has no boundary parameter")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var (
		docs    []apiary.Document
		id      string
		hasID   bool
		hookURL string
	)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", apiary.E(apiary.KindInvalid, "malformed multipart body: %v", err)
		}
		switch part.FormName() {
		case "file":
			if len(docs) == lim.maxDocuments {
				return nil, "", apiary.E(apiary.KindInvalid, "more than %d documents in one request; the limit is %d, split them over several requests", lim.maxDocuments, lim.maxDocuments)
			}
			name := part.FileName()
			if name == "" {
				return nil, "", apiary.E(apiary.KindInvalid, "a \"file\" part has no filename; the filename is the document id")
			}
			data, err := io.ReadAll(part)
			if err != nil {
				return nil, "", apiary.E(apiary.KindInvalid, "malformed multipart body in file %q: %v", name, err)
			}
			if len(data) == 0 {
				return nil, "", apiary.E(apiary.KindInvalid, "file %q is empty", name)
			}
			ct, err := detectContentType(name, part.Header.Get(echo.HeaderContentType), data)
			if err != nil {
				return nil, "", err
			}
			docs = append(docs, apiary.Document{ID: apiary.DocumentID(name), Title: name, ContentType: ct, Raw: data})
		case "webhook_url":
			v, err := io.ReadAll(io.LimitReader(part, maxURLLen+1))
			if err != nil || len(v) > maxURLLen {
				return nil, "", apiary.E(apiary.KindInvalid, "the form field \"webhook_url\" must be a URL of at most %d bytes", maxURLLen)
			}
			hookURL = string(v)
		case "id":
			if hasID {
				return nil, "", apiary.E(apiary.KindInvalid, "the form field \"id\" is given twice")
			}
			v, err := io.ReadAll(io.LimitReader(part, int64(lim.maxIDLen)+1))
			if err != nil {
				return nil, "", apiary.E(apiary.KindInvalid, "malformed multipart body in field \"id\": %v", err)
			}
			id, hasID = string(v), true
		default:
			return nil, "", apiary.E(apiary.KindInvalid, "unknown form field %q; send files as parts named \"file\", and optionally a field \"id\" (single file) and a field \"webhook_url\"", part.FormName())
		}
	}
	if len(docs) == 0 {
		return nil, "", apiary.E(apiary.KindInvalid, "the multipart body has no file; send each document as a part named \"file\"")
	}
	if hasID {
		if len(docs) > 1 {
			return nil, "", apiary.E(apiary.KindInvalid, "the form field \"id\" names a single file, but %d files were sent; without it each file's name is its id", len(docs))
		}
		docs[0].ID = apiary.DocumentID(id)
	}
	if err := checkDocuments(docs, lim); err != nil {
		return nil, "", err
	}
	return docs, hookURL, nil
}

// checkDocuments applies the checks common to every ingest body, the
// limits on titles and metadata (apiary.MaxTitleBytes and the like) among
// them.
func checkDocuments(docs []apiary.Document, lim ingestLimits) error {
	switch {
	case len(docs) == 0:
		return apiary.E(apiary.KindInvalid, "the documents list is empty; send at least one document")
	case len(docs) > lim.maxDocuments:
		return apiary.E(apiary.KindInvalid, "%d documents in one request; the limit is %d, split them over several requests", len(docs), lim.maxDocuments)
	}
	seen := make(map[apiary.DocumentID]int, len(docs))
	for i, d := range docs {
		if err := d.ID.Validate(); err != nil {
			return apiary.E(apiary.KindInvalid, "documents[%d]: %s", i, apiary.Message(err))
		}
		if len(d.ID) > lim.maxIDLen {
			return apiary.E(apiary.KindInvalid, "documents[%d]: document id is longer than %d bytes", i, lim.maxIDLen)
		}
		if j, dup := seen[d.ID]; dup {
			return apiary.E(apiary.KindInvalid, "documents[%d] and documents[%d] have the same id %q; ids must be unique in a request", j, i, d.ID)
		}
		seen[d.ID] = i
		if d.Text == "" && len(d.Raw) == 0 {
			return apiary.E(apiary.KindInvalid, "document %q is empty", d.ID)
		}
		if err := apiary.CheckTitle(fmt.Sprintf("documents[%d].title", i), d.Title); err != nil {
			return err
		}
		if err := apiary.CheckMetadata(fmt.Sprintf("documents[%d].metadata", i), d.Metadata); err != nil {
			return err
		}
	}
	return nil
}

// countDocuments counts the elements of body's top-level "documents" array,
// stopping at max+1, by streaming its tokens: a body of a million tiny
// documents is refused before it is decoded into a million structs. A body
// it cannot read counts 0 (decodeJSON then says what is wrong with it).
func countDocuments(body []byte, max int) int {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0
	}
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return 0
		}
		if key != "documents" {
			if skipValue(dec) != nil {
				return 0
			}
			continue
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return 0
		}
		for dec.More() {
			if n++; n > max {
				return n
			}
			if skipValue(dec) != nil {
				return 0
			}
		}
		if _, err := dec.Token(); err != nil {
			return 0
		}
	}
	return n
}

// skipValue reads the next value of dec whole, without keeping it.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}
