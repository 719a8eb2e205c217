package custody

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
)

// Leases reads a job's record, to check who holds its lease (the record
// store; storage/records).
type Leases interface {
	Job(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error)
}

// Transport carries withdrawals and release notices to the process that
// holds a job's credentials (natscustody). Requests and replies are opaque
// bytes: what holds a credential in them is sealed.
type Transport interface {
	// Request sends req to holder and returns its reply. It returns an
	// error wrapping ErrNoHolder when no process answers as holder.
	Request(ctx context.Context, holder string, req []byte) ([]byte, error)
	// Notify sends msg to holder without waiting for an answer.
	Notify(ctx context.Context, holder string, msg []byte) error
	// Serve answers the requests and notices sent to holder with h (its
	// reply is dropped for a notice) until stop is called.
	Serve(holder string, h func(ctx context.Context, req []byte) []byte) (stop func() error, err error)
}

// ErrNoHolder is what a Transport's Request wraps when nobody answers as
// the holder: the process stopped.
var ErrNoHolder = errors.New("custody: no process answers as the holder")

// The errors of Withdraw, for errors.Is.
var (
	// ErrHolderGone: the process that held the credentials stopped. Permanent.
	ErrHolderGone = apiary.E(apiary.KindPermanent, apiary.ReasonHolderGone)
	// ErrTokenGone: the holder no longer has them (they expired, or the job
	// ended). Permanent.
	ErrTokenGone = apiary.E(apiary.KindPermanent, apiary.ReasonTokenGone)
	// ErrNotLeaseOwner: the holder refused, the asking run does not hold
	// the job's lease. A conflict: the run should stop, another one has
	// the job.
	ErrNotLeaseOwner = apiary.E(apiary.KindConflict, "custody: this run does not hold the job's lease; the token is handed to the current run only")
	// ErrNoCredentials: the job was not submitted with ephemeral credentials.
	ErrNoCredentials = apiary.E(apiary.KindInvalid, "custody: the job has no ephemeral credentials")
)

// Config tunes a Custody. The zero value of each field means its default.
type Config struct {
	// Holder is this process's holder id, the subject suffix it answers on;
	// it names the process in job records. Default: a fresh random id.
	Holder string
	// MaxLifetime bounds how long credentials are kept, whatever their own
	// expiry. Default (and most) apiary.MaxCredentialLifetime.
	MaxLifetime time.Duration
	// MaxPerAccount bounds the credentials held for one account. Default 100.
	MaxPerAccount int
	// MaxTotal bounds the credentials held in all. Default 10,000.
	MaxTotal int
	// Leases reads job records to check leases. Required.
	Leases Leases
	// Transport reaches other processes' custody; nil in a single process
	// (serve), where every job's holder is this one.
	Transport Transport
	// RequestTimeout bounds one withdrawal across processes. Default 10 s.
	RequestTimeout time.Duration
	// Logger gets what could not be done. Never a credential: only ids.
	// Default: silent.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Holder == "" {
		c.Holder = apiary.RandomID("hld_")
	}
	if c.MaxLifetime <= 0 || c.MaxLifetime > apiary.MaxCredentialLifetime {
		c.MaxLifetime = apiary.MaxCredentialLifetime
	}
	if c.MaxPerAccount <= 0 {
		c.MaxPerAccount = 100
	}
	if c.MaxTotal <= 0 {
		c.MaxTotal = 10_000
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type key struct {
	account apiary.AccountID
	job     apiary.JobID
}

type entry struct {
	creds apiary.Credentials
	timer *time.Timer
}

// Custody holds ephemeral credentials by (account, job). See the package
// documentation for what it promises.
type Custody struct {
	cfg Config

	mu        sync.Mutex
	held      map[key]*entry
	perAcct   map[apiary.AccountID]int
	closed    bool
	stopServe func() error
}

// New returns a custody with cfg. With a Transport it answers withdrawals
// and release notices sent to its holder id until Close.
func New(cfg Config) (*Custody, error) {
	cfg.setDefaults()
	if cfg.Leases == nil {
		return nil, errors.New("custody: Config.Leases is required")
	}
	c := &Custody{cfg: cfg, held: map[key]*entry{}, perAcct: map[apiary.AccountID]int{}}
	if cfg.Transport != nil {
		stop, err := cfg.Transport.Serve(cfg.Holder, c.serve)
		if err != nil {
			return nil, fmt.Errorf("custody: serve holder %s: %w", cfg.Holder, err)
		}
		c.stopServe = stop
	}
	return c, nil
}

// Holder is this process's holder id, to record in the jobs it deposits for.
func (c *Custody) Holder() string { return c.cfg.Holder }

// Close stops answering other processes and wipes everything held.
func (c *Custody) Close() error {
	c.mu.Lock()
	c.closed = true
	for k, e := range c.held {
		c.dropLocked(k, e)
	}
	c.mu.Unlock()
	if c.stopServe != nil {
		return c.stopServe()
	}
	return nil
}

// Deposit keeps creds for account's job until the job ends or they expire:
// at min(creds.Expiry, now+MaxLifetime). Custody takes creds over: the
// caller must not use them after, and they are wiped also when Deposit
// fails. Credentials already expired are invalid; one past a bound is
// refused (KindRateLimited per account, KindUnavailable in total).
func (c *Custody) Deposit(account apiary.AccountID, job apiary.JobID, creds apiary.Credentials) error {
	if creds.Empty() {
		return apiary.E(apiary.KindInvalid, "the source has no credential")
	}
	life := c.cfg.MaxLifetime
	if !creds.Expiry.IsZero() {
		life = min(life, time.Until(creds.Expiry))
	}
	if life <= 0 {
		creds.Wipe()
		return apiary.E(apiary.KindInvalid, "the token has already expired; send a fresh one")
	}
	k := key{account, job}
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	switch {
	case c.closed:
		err = apiary.E(apiary.KindUnavailable, "this API process is stopping; retry on another")
	case c.held[k] != nil:
		err = apiary.E(apiary.KindConflict, "custody: job %s already has credentials", job)
	case c.perAcct[account] >= c.cfg.MaxPerAccount:
		err = &apiary.Error{Kind: apiary.KindRateLimited, RetryAfter: time.Minute,
			Msg: fmt.Sprintf("this account already has %d jobs with an ephemeral token that have not ended; wait for some to end", c.cfg.MaxPerAccount)}
	case len(c.held) >= c.cfg.MaxTotal:
		err = &apiary.Error{Kind: apiary.KindUnavailable, RetryAfter: time.Minute,
			Msg: "this API process holds as many ephemeral tokens as it may; retry later"}
	}
	if err != nil {
		creds.Wipe()
		return err
	}
	e := &entry{creds: creds}
	e.timer = time.AfterFunc(life, func() { c.expire(k, e) })
	c.held[k] = e
	c.perAcct[account]++
	return nil
}

// Release wipes the credentials held here for account's job, if any.
func (c *Custody) Release(account apiary.AccountID, job apiary.JobID) {
	k := key{account, job}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.held[k]; e != nil {
		c.dropLocked(k, e)
	}
}

// Ended is told that job reached its final state (the job service's
// jobs.Config.Ended): the credentials are wiped here, or, when another
// process holds them, a notice asks it to (it checks the record first).
func (c *Custody) Ended(ctx context.Context, job apiary.Job) {
	switch {
	case job.Holder == "":
	case job.Holder == c.cfg.Holder:
		c.Release(job.Account, job.ID)
	case c.cfg.Transport != nil:
		msg, err := encodeRequest(request{Op: opRelease, Account: job.Account, Job: job.ID})
		if err == nil {
			err = c.cfg.Transport.Notify(ctx, job.Holder, msg)
		}
		if err != nil {
			c.cfg.Logger.WarnContext(ctx, "could not ask the holder to wipe an ended job's token; it expires on its own",
				"account", job.Account, "job_id", job.ID, "holder", job.Holder, "err", err)
		}
	}
}

// Held reports how many credentials this process holds.
func (c *Custody) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

func (c *Custody) expire(k key, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[k] == e {
		c.dropLocked(k, e)
	}
}

func (c *Custody) dropLocked(k key, e *entry) {
	e.timer.Stop()
	e.creds.Wipe()
	delete(c.held, k)
	if c.perAcct[k.account]--; c.perAcct[k.account] <= 0 {
		delete(c.perAcct, k.account)
	}
}

// copyOf returns a copy of the credentials held for k, which the caller
// owns, and whether there are any.
func (c *Custody) copyOf(k key) (apiary.Credentials, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.held[k]
	if e == nil {
		return apiary.Credentials{}, false
	}
	return cloneCredentials(e.creds), true
}

func cloneCredentials(c apiary.Credentials) apiary.Credentials {
	cp := func(s apiary.Secret) apiary.Secret {
		if s.Empty() {
			return apiary.Secret{}
		}
		return apiary.SecretFromBytes(append([]byte(nil), s.Reveal()...))
	}
	return apiary.Credentials{Token: cp(c.Token), AccessKeyID: cp(c.AccessKeyID),
		SecretAccessKey: cp(c.SecretAccessKey), SessionToken: cp(c.SessionToken), Expiry: c.Expiry}
}
