package api

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// Custody holds the ephemeral credentials of ingest requests in this
// process's memory until their job ends (connectors/custody.Custody).
type Custody interface {
	// Holder is this process's id, recorded in the job so that its worker
	// knows whom to ask.
	Holder() string
	// Deposit takes creds over for account's job; they are wiped when it
	// fails too.
	Deposit(account apiary.AccountID, job apiary.JobID, creds apiary.Credentials) error
	// Ended wipes the credentials of a job that reached its final state.
	Ended(ctx context.Context, job apiary.Job)
}

// credentialFields are the fields of an ingest request's "source" that
// carry, or describe, an ephemeral credential. They are kept out of the
// Idempotency-Key's request hash: a retry with a fresh token is the same
// request.
var credentialFields = []string{"access_token", "access_key_id", "secret_access_key", "session_token", "expires_at"}

// maxCredentialBytes bounds one credential field.
const maxCredentialBytes = 16 << 10

// decodeSourceCredentials reads the credential fields of a "source" object:
// either access_token, or access_key_id with secret_access_key (and
// optionally session_token); expires_at (RFC 3339), optional, is when they
// stop working. It returns empty credentials when source has none. The
// values go straight into apiary.Secrets; no error quotes them.
func decodeSourceCredentials(source json.RawMessage) (apiary.Credentials, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(source, &fields); err != nil {
		return apiary.Credentials{}, apiary.E(apiary.KindInvalid, "source must be an object")
	}
	var c apiary.Credentials
	var err error
	set := func(name string, dst *apiary.Secret) {
		raw, ok := fields[name]
		if !ok || err != nil {
			return
		}
		*dst, err = secretFromJSON(name, raw)
	}
	set("access_token", &c.Token)
	set("access_key_id", &c.AccessKeyID)
	set("secret_access_key", &c.SecretAccessKey)
	set("session_token", &c.SessionToken)
	if raw, ok := fields["expires_at"]; ok && err == nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			err = apiary.E(apiary.KindInvalid, "source.expires_at must be an RFC 3339 time")
		} else if c.Expiry, err = time.Parse(time.RFC3339, s); err != nil {
			err = apiary.E(apiary.KindInvalid, "source.expires_at must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
		}
	}
	keys := !c.AccessKeyID.Empty() || !c.SecretAccessKey.Empty() || !c.SessionToken.Empty()
	switch {
	case err != nil:
	case !c.Token.Empty() && keys:
		err = apiary.E(apiary.KindInvalid, "source: send either access_token or an access key (access_key_id, secret_access_key, session_token), not both")
	case keys && (c.AccessKeyID.Empty() || c.SecretAccessKey.Empty()):
		err = apiary.E(apiary.KindInvalid, "source: an access key needs both access_key_id and secret_access_key")
	case c.Empty() && !c.Expiry.IsZero():
		err = apiary.E(apiary.KindInvalid, "source.expires_at is given without a credential")
	}
	if err != nil {
		c.Wipe()
		return apiary.Credentials{}, err
	}
	return c, nil
}

// secretFromJSON copies the JSON string raw into a Secret. A string
// without escapes (a token's usual form) is copied byte for byte, never
// through a Go string, which could not be wiped.
func secretFromJSON(name string, raw json.RawMessage) (apiary.Secret, error) {
	raw = bytes.TrimSpace(raw)
	bad := apiary.E(apiary.KindInvalid, "source.%s must be a non-empty string of at most %d bytes", name, maxCredentialBytes)
	if len(raw) < 3 || raw[0] != '"' || raw[len(raw)-1] != '"' || len(raw) > maxCredentialBytes+2 {
		return apiary.Secret{}, bad
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		for _, b := range inner {
			if b < 0x20 {
				return apiary.Secret{}, bad
			}
		}
		return apiary.SecretFromBytes(bytes.Clone(inner)), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || s == "" {
		return apiary.Secret{}, bad
	}
	return apiary.NewSecret(s), nil
}

// submitWithCredentials submits sub with ephemeral creds: the job records
// this process as their holder, and they are deposited in its custody
// before the job is queued, so that the job's worker can ask for them.
// creds are taken over: they are wiped whenever they are not deposited (a
// replayed request, a refusal, an error).
func (s *Server) submitWithCredentials(ctx context.Context, sub jobs.Submission, creds apiary.Credentials) (apiary.Job, bool, error) {
	if s.deps.Custody == nil {
		creds.Wipe()
		return apiary.Job{}, false, apiary.E(apiary.KindInvalid, "this server does not accept ephemeral tokens")
	}
	if creds.Empty() {
		return apiary.Job{}, false, apiary.E(apiary.KindInvalid, "source: the request has no credential")
	}
	deposited := false
	sub.Holder = s.deps.Custody.Holder()
	sub.Deposit = func(j apiary.Job) error {
		deposited = true
		return s.deps.Custody.Deposit(j.Account, j.ID, creds)
	}
	job, replayed, err := s.jobs.Submit(ctx, sub)
	if !deposited {
		creds.Wipe()
	}
	return job, replayed, err
}

// requestHashInput is what identifies a request for its Idempotency-Key:
// its content type and body, with the credential fields of a JSON body's
// "source" left out (credentialFields), so that the hash — stored in the
// job record — is never derived from a token, and a retry with a fresh
// token is the same request. A body without them is taken byte for byte.
func requestHashInput(contentType string, body []byte) []byte {
	out := append([]byte(contentType), 0)
	if stripped, ok := withoutCredentials(body); ok {
		return append(out, stripped...)
	}
	return append(out, body...)
}

// withoutCredentials returns a JSON object body re-encoded (keys sorted)
// with credentialFields removed from its "source" object, and whether
// there were any to remove.
func withoutCredentials(body []byte) ([]byte, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return nil, false
	}
	var source map[string]json.RawMessage
	if json.Unmarshal(top["source"], &source) != nil {
		return nil, false
	}
	removed := false
	for _, f := range credentialFields {
		if _, ok := source[f]; ok {
			delete(source, f)
			removed = true
		}
	}
	if !removed {
		return nil, false
	}
	src, err := json.Marshal(source)
	if err != nil {
		return nil, false
	}
	top["source"] = src
	out, err := json.Marshal(top)
	if err != nil {
		return nil, false
	}
	return out, true
}
