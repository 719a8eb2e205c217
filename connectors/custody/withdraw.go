package custody

import (
	"context"
	"crypto/hpke"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/apiaryhq/apiary"
)

// The HPKE suite of a withdrawal: a hybrid KEM (X25519 and ML-KEM-768, so
// a recording of the bus stays sealed even against a future quantum
// computer), HKDF-SHA256, AES-256-GCM.
var (
	suiteKEM  = hpke.MLKEM768X25519()
	suiteKDF  = hpke.HKDFSHA256()
	suiteAEAD = hpke.AES256GCM()
)

const (
	opWithdraw = "withdraw"
	opRelease  = "release"
)

// The refusals a holder answers with.
const (
	refusedNotHeld  = "not_held"
	refusedNotOwner = "not_owner"
	refusedInvalid  = "invalid"
)

// request is what a worker sends the holder. It carries ids and a public
// key, never a credential.
type request struct {
	Op      string           `json:"op"`
	Account apiary.AccountID `json:"account"`
	Job     apiary.JobID     `json:"job"`
	// Owner is the asking run (apiary.Job.Owner), checked against the record.
	Owner string `json:"owner,omitempty"`
	// Key is the run's fresh HPKE public key for this one withdrawal.
	Key []byte `json:"key,omitempty"`
}

// reply is the holder's answer: the credentials sealed to the request's
// key, or why not.
type reply struct {
	Sealed  []byte `json:"sealed,omitempty"`
	Refused string `json:"refused,omitempty"`
}

func encodeRequest(r request) ([]byte, error) { return json.Marshal(r) }

// info binds a sealed reply to the one withdrawal it answers.
func info(holder string, r request) []byte {
	return fmt.Appendf(nil, "apiary custody v1\x00%s\x00%s\x00%s\x00%s", holder, r.Account, r.Job, r.Owner)
}

// Withdraw returns the credentials of job for the run that holds its lease
// (job is the record as that run started it: jobs.Run.Job). The caller
// owns the copy it gets and should Wipe it when done. Errors: ErrHolderGone
// and ErrTokenGone (permanent: the job cannot run), ErrNotLeaseOwner,
// ErrNoCredentials, and KindUnavailable when the holder does not answer in
// time.
func (c *Custody) Withdraw(ctx context.Context, job apiary.Job) (apiary.Credentials, error) {
	if job.Holder == "" {
		return apiary.Credentials{}, ErrNoCredentials
	}
	req := request{Op: opWithdraw, Account: job.Account, Job: job.ID, Owner: job.Owner}
	if job.Holder == c.cfg.Holder {
		if refused := c.check(ctx, req); refused != "" {
			return apiary.Credentials{}, refusal(refused, job)
		}
		creds, ok := c.copyOf(key{job.Account, job.ID})
		if !ok {
			return apiary.Credentials{}, refusal(refusedNotHeld, job)
		}
		return creds, nil
	}
	if c.cfg.Transport == nil {
		// A single process that did not accept the token: whoever did is
		// not here.
		return apiary.Credentials{}, ErrHolderGone
	}
	priv, err := suiteKEM.GenerateKey()
	if err != nil {
		return apiary.Credentials{}, fmt.Errorf("custody: generate key for job %s: %w", job.ID, err)
	}
	req.Key = priv.PublicKey().Bytes()
	msg, err := encodeRequest(req)
	if err != nil {
		return apiary.Credentials{}, fmt.Errorf("custody: encode request for job %s: %w", job.ID, err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	raw, err := c.cfg.Transport.Request(rctx, job.Holder, msg)
	switch {
	case errors.Is(err, ErrNoHolder):
		return apiary.Credentials{}, fmt.Errorf("custody: withdraw job %s from %s: %w", job.ID, job.Holder, ErrHolderGone)
	case err != nil:
		return apiary.Credentials{}, apiary.Wrap(err, apiary.KindUnavailable, "custody: the process holding the token did not answer (it may be frozen or cut off); if the job fails, resubmit with a fresh token and a new Idempotency-Key")
	}
	var rep reply
	if err := json.Unmarshal(raw, &rep); err != nil {
		return apiary.Credentials{}, fmt.Errorf("custody: reply for job %s: %w", job.ID, err)
	}
	if rep.Refused != "" {
		return apiary.Credentials{}, refusal(rep.Refused, job)
	}
	plain, err := hpke.Open(priv, suiteKDF, suiteAEAD, info(job.Holder, req), rep.Sealed)
	if err != nil {
		return apiary.Credentials{}, fmt.Errorf("custody: open reply for job %s: %w", job.ID, err)
	}
	defer clear(plain)
	creds, err := decodeCredentials(plain)
	if err != nil {
		return apiary.Credentials{}, fmt.Errorf("custody: reply for job %s: %w", job.ID, err)
	}
	return creds, nil
}

func refusal(code string, job apiary.Job) error {
	switch code {
	case refusedNotHeld:
		return fmt.Errorf("custody: job %s: %w", job.ID, ErrTokenGone)
	case refusedNotOwner:
		return fmt.Errorf("custody: job %s: %w", job.ID, ErrNotLeaseOwner)
	}
	return fmt.Errorf("custody: job %s: the holder refused the request (%s)", job.ID, code)
}

// check returns why a withdrawal of r is refused, "" when it is not: the
// job's record must name r.Owner as the holder of its unexpired lease, and
// the job must not have ended (then its credentials are wiped).
func (c *Custody) check(ctx context.Context, r request) string {
	job, err := c.cfg.Leases.Job(ctx, r.Account, r.Job)
	switch {
	case errors.Is(err, apiary.ErrNotFound):
		c.Release(r.Account, r.Job)
		return refusedNotHeld
	case err != nil:
		c.cfg.Logger.WarnContext(ctx, "could not read the job record to check a token withdrawal", "account", r.Account, "job_id", r.Job, "err", err)
		return refusedNotOwner
	case job.Status.Final():
		c.Release(r.Account, r.Job)
		return refusedNotHeld
	case r.Owner == "" || job.Owner != r.Owner || !job.Leased(time.Now()):
		return refusedNotOwner
	}
	return ""
}

// serve answers a request from another process: a withdrawal, sealed to
// its key, or a release notice (acted on only when the record says the job
// ended).
func (c *Custody) serve(ctx context.Context, raw []byte) []byte {
	var r request
	if err := json.Unmarshal(raw, &r); err != nil || r.Account == "" || r.Job == "" {
		return mustJSON(reply{Refused: refusedInvalid})
	}
	switch r.Op {
	case opRelease:
		if job, err := c.cfg.Leases.Job(ctx, r.Account, r.Job); errors.Is(err, apiary.ErrNotFound) || (err == nil && job.Status.Final()) {
			c.Release(r.Account, r.Job)
		}
		return nil
	case opWithdraw:
	default:
		return mustJSON(reply{Refused: refusedInvalid})
	}
	pub, err := suiteKEM.NewPublicKey(r.Key)
	if err != nil {
		return mustJSON(reply{Refused: refusedInvalid})
	}
	if refused := c.check(ctx, r); refused != "" {
		return mustJSON(reply{Refused: refused})
	}
	creds, ok := c.copyOf(key{r.Account, r.Job})
	if !ok {
		return mustJSON(reply{Refused: refusedNotHeld})
	}
	plain := encodeCredentials(creds)
	creds.Wipe()
	sealed, err := hpke.Seal(pub, suiteKDF, suiteAEAD, info(c.cfg.Holder, r), plain)
	clear(plain)
	if err != nil {
		c.cfg.Logger.ErrorContext(ctx, "could not seal a token for its worker", "account", r.Account, "job_id", r.Job, "err", err)
		return mustJSON(reply{Refused: refusedInvalid})
	}
	return mustJSON(reply{Sealed: sealed})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // replies are plain structs of bytes and strings
	}
	return b
}

// encodeCredentials lays c out as four length-prefixed secrets and the
// expiry in Unix nanoseconds (0 when unknown). The caller wipes the result.
func encodeCredentials(c apiary.Credentials) []byte {
	var b []byte
	for _, s := range []apiary.Secret{c.Token, c.AccessKeyID, c.SecretAccessKey, c.SessionToken} {
		b = binary.AppendUvarint(b, uint64(len(s.Reveal())))
		b = append(b, s.Reveal()...)
	}
	var exp int64
	if !c.Expiry.IsZero() {
		exp = c.Expiry.UnixNano()
	}
	return binary.BigEndian.AppendUint64(b, uint64(exp))
}

// decodeCredentials reads what encodeCredentials wrote, into fresh bytes.
func decodeCredentials(b []byte) (apiary.Credentials, error) {
	var out [4]apiary.Secret
	malformed := func() (apiary.Credentials, error) {
		for _, s := range out {
			s.Wipe()
		}
		return apiary.Credentials{}, errors.New("malformed credentials")
	}
	for i := range out {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return malformed()
		}
		if n > 0 {
			out[i] = apiary.SecretFromBytes(append([]byte(nil), b[k:k+int(n)]...))
		}
		b = b[k+int(n):]
	}
	if len(b) != 8 {
		return malformed()
	}
	c := apiary.Credentials{Token: out[0], AccessKeyID: out[1], SecretAccessKey: out[2], SessionToken: out[3]}
	if exp := int64(binary.BigEndian.Uint64(b)); exp != 0 {
		c.Expiry = time.Unix(0, exp)
	}
	return c, nil
}
