// Package kek puts a key-encryption key (KEK) between an account's key and
// its documents' data keys, so that the account key provider (a keyring or
// AWS KMS) is called once per KEK, not once per document.
//
// The hierarchy: the account key (in the wrapped provider) wraps a KEK,
// made by one GenerateDataKey of the wrapped provider and stored wrapped in
// a Store (records, scoped per account); the KEK's plaintext is cached in
// memory for at most MaxAge (then opened again from its record), and a new
// KEK is made after Lifetime or MaxUses data keys; each data key is 32
// fresh random bytes sealed locally (AES-256-GCM) by the KEK, with the
// encryption context as associated data.
//
// A wrapped data key in this format is
//
//	0x00 | version (1) | len(kek id) (uvarint) | kek id | Seal(kek, dataKey, AAD)
//
// with AAD = encrypt.AAD("apiary-kek-v1", kek id, canonical context with
// the account). Both direct formats (keyring, awskms) start with 0x01, so a
// data key wrapped directly before the decorator was on still opens: it is
// handed to the wrapped provider as is.
//
// Provider is itself an encrypt.KeyProvider (it passes encrypttest) and an
// encrypt.Eraser: erasing an account drops its cached KEKs, deletes its KEK
// records and erases the account key below.
//
// Over a base with key versions (encrypt.Versioned: the keyring, awskms)
// it is an encrypt.Rotator. A new KEK is made under the account key's
// newest version, looked up when the KEK is made (never a cached answer
// that a rotation in another process outdated) and again once it is
// stored, when it is re-wrapped if a rotation made a newer version
// meanwhile. RotateAccountKey makes a version and re-wraps every KEK
// under it; a rotation cut short (some KEKs still under an older version)
// is finished by the next call, which makes no version.
package kek

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

var (
	_ encrypt.KeyProvider = (*Provider)(nil)
	_ encrypt.Eraser      = (*Provider)(nil)
	_ encrypt.Rotator     = (*Provider)(nil)
)

const (
	formatMarker byte = 0x00
	formatV1     byte = 1
	aadLabel          = "apiary-kek-v1"
	maxIDLen          = 64
)

// Store keeps accounts' wrapped KEKs (storage/records' KEKStore).
type Store interface {
	CreateKEK(ctx context.Context, account apiary.AccountID, id string, wrapped []byte) error
	KEK(ctx context.Context, account apiary.AccountID, id string) ([]byte, error)
	DeleteKEKs(ctx context.Context, account apiary.AccountID) error
	// For rotation: every KEK id of an account, and a compare-and-swap
	// replacement of one's wrapped form.
	KEKIDs(ctx context.Context, account apiary.AccountID) ([]string, error)
	UpdateKEK(ctx context.Context, account apiary.AccountID, id string, fn func(wrapped []byte) ([]byte, error)) error
}

// Config bounds how long a KEK's plaintext lives in memory.
type Config struct {
	// MaxAge is how long a KEK is used for new data keys, and how long an
	// opened KEK is kept for decrypting, before it is dropped. Default 10 min.
	MaxAge time.Duration
	// MaxUses is how many data keys one KEK wraps before a new one is made.
	// Default 100,000.
	MaxUses int
	// Lifetime is how long one KEK wraps new data keys: past MaxAge it is
	// opened again from its record (one call to the base provider), and
	// only past Lifetime (or MaxUses) is a new one made, so an account
	// busy all year gets a KEK a day per process, not one every MaxAge.
	// Default 24 h.
	Lifetime time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxAge == 0 {
		c.MaxAge = 10 * time.Minute
	}
	if c.MaxUses == 0 {
		c.MaxUses = 100_000
	}
	if c.Lifetime == 0 {
		c.Lifetime = 24 * time.Hour
	}
}

// Validate reports every problem with c (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if c.MaxAge < 0 {
		errs = append(errs, errors.New("kek: MaxAge must not be negative"))
	}
	if c.MaxUses < 0 {
		errs = append(errs, errors.New("kek: MaxUses must not be negative"))
	}
	if c.Lifetime < 0 {
		errs = append(errs, errors.New("kek: Lifetime must not be negative"))
	}
	return errors.Join(errs...)
}

// entry is a KEK's plaintext in memory: made is when the KEK was made,
// born when this plaintext was opened (or made).
type entry struct {
	id   string
	key  []byte
	made time.Time
	born time.Time
	uses int
}

func (e *entry) expired(now time.Time, maxAge time.Duration) bool { return now.Sub(e.born) >= maxAge }

// account is one account's cached KEKs. mu serialises the making of a new
// current KEK, so that concurrent first uses make one.
type account struct {
	mu      sync.Mutex
	current *entry
	opened  map[string]*entry // for Decrypt, by KEK id
}

// Provider is the KEK decorator. Safe for concurrent use.
type Provider struct {
	base  encrypt.KeyProvider
	store Store
	cfg   Config

	mu       sync.Mutex
	accounts map[apiary.AccountID]*account
}

// New decorates base with KEKs kept in store.
func New(base encrypt.KeyProvider, store Store, cfg Config) (*Provider, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "kek: config")
	}
	if base == nil || store == nil {
		return nil, apiary.E(apiary.KindInvalid, "kek: a base provider and a store are required")
	}
	return &Provider{base: base, store: store, cfg: cfg, accounts: make(map[apiary.AccountID]*account)}, nil
}

func (p *Provider) account(id apiary.AccountID) *account {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.accounts[id]
	if !ok {
		a = &account{opened: make(map[string]*entry)}
		p.accounts[id] = a
	}
	return a
}

// kekContext is the encryption context a KEK is wrapped under by the base
// provider (which adds the account).
func kekContext(id string) encrypt.Context { return encrypt.Context{"purpose": "kek", "kek": id} }

// CreateAccountKey makes the account's key in the wrapped provider.
func (p *Provider) CreateAccountKey(ctx context.Context, acc apiary.AccountID) error {
	return p.base.CreateAccountKey(ctx, acc)
}

// currentKEK returns a copy of the KEK new data keys of acc are wrapped
// with (the caller wipes it): the current one, opened again from its
// record once it has been in memory MaxAge; a new one, made and stored,
// when there is none or the current one is past Lifetime or MaxUses.
func (p *Provider) currentKEK(ctx context.Context, acc apiary.AccountID) (string, []byte, error) {
	a := p.account(acc)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	e := a.current
	switch {
	case e == nil || now.Sub(e.made) >= p.cfg.Lifetime || e.uses >= p.cfg.MaxUses:
		if e != nil {
			a.current = nil
			if a.opened[e.id] != e {
				encrypt.Wipe(e.key)
			}
		}
		id, key, err := p.newKEK(ctx, acc)
		if err != nil {
			return "", nil, err
		}
		a.current = &entry{id: id, key: key, made: now, born: now}
	case e.expired(now, p.cfg.MaxAge):
		key, err := p.unwrap(ctx, acc, e.id)
		if err != nil {
			return "", nil, err
		}
		a.current = &entry{id: e.id, key: key, made: e.made, born: now, uses: e.uses}
		if a.opened[e.id] != e {
			encrypt.Wipe(e.key)
		}
	}
	e = a.current
	e.uses++
	return e.id, append([]byte(nil), e.key...), nil
}

// newKEK makes a KEK for acc under the newest version of its account key,
// stores it wrapped and returns its id and plaintext (the caller's to
// wipe). The newest version is looked up first, not taken from a cache
// that a rotation in another process may have outdated; and again once
// the KEK is stored: a rotation that made a newer version meanwhile may
// have listed acc's KEKs before this one was stored, so this one is
// re-wrapped here. (A rotation makes its version before it lists the KEKs
// to re-wrap, so a KEK stored before that version existed is on its list.)
func (p *Provider) newKEK(ctx context.Context, acc apiary.AccountID) (string, []byte, error) {
	r, vs := rotator(p.base)
	if vs != nil {
		if _, err := vs.CurrentVersion(ctx, acc); err != nil {
			return "", nil, fmt.Errorf("kek: new key-encryption key for %s: %w", acc, err)
		}
	}
	id := apiary.RandomID("kek_")
	dk, err := p.base.GenerateDataKey(ctx, acc, kekContext(id))
	if err != nil {
		return "", nil, fmt.Errorf("kek: new key-encryption key for %s: %w", acc, err)
	}
	if err := p.store.CreateKEK(ctx, acc, id, dk.Wrapped); err != nil {
		encrypt.Wipe(dk.Plaintext)
		return "", nil, fmt.Errorf("kek: store key-encryption key for %s: %w", acc, err)
	}
	if vs == nil {
		return id, dk.Plaintext, nil
	}
	cur, err := vs.CurrentVersion(ctx, acc)
	if err == nil {
		if v, ok := vs.WrappedVersion(dk.Wrapped); !ok || v < cur {
			err = p.rewrapKEK(ctx, acc, r, vs, id, cur)
		}
	}
	if err != nil {
		// The KEK stays stored under the older version, unused: the
		// account's next rotation re-wraps it (see RotateAccountKey).
		encrypt.Wipe(dk.Plaintext)
		return "", nil, fmt.Errorf("kek: new key-encryption key for %s: %w", acc, err)
	}
	return id, dk.Plaintext, nil
}

// unwrap reads acc's KEK id from its record and opens it through the base
// provider.
func (p *Provider) unwrap(ctx context.Context, acc apiary.AccountID, id string) ([]byte, error) {
	w, err := p.store.KEK(ctx, acc, id)
	if apiary.KindOf(err) == apiary.KindNotFound {
		// Another account's KEK, an altered id or an erased KEK: the same
		// refusal as any wrapped key that does not open.
		return nil, refused()
	}
	if err != nil {
		return nil, fmt.Errorf("kek: read key-encryption key of %s: %w", acc, err)
	}
	key, err := p.base.Decrypt(ctx, acc, w, kekContext(id))
	if err != nil {
		return nil, fmt.Errorf("kek: open key-encryption key of %s: %w", acc, err)
	}
	return key, nil
}

// GenerateDataKey returns 32 fresh random bytes sealed by the account's
// current KEK under encCtx.
func (p *Provider) GenerateDataKey(ctx context.Context, acc apiary.AccountID, encCtx encrypt.Context) (encrypt.DataKey, error) {
	if err := acc.Validate(); err != nil {
		return encrypt.DataKey{}, err
	}
	if err := ctx.Err(); err != nil {
		return encrypt.DataKey{}, err
	}
	id, kek, err := p.currentKEK(ctx, acc)
	if err != nil {
		return encrypt.DataKey{}, err
	}
	defer encrypt.Wipe(kek)
	dk := make([]byte, encrypt.KeySize)
	if _, err := rand.Read(dk); err != nil {
		return encrypt.DataKey{}, fmt.Errorf("kek: generate data key: %w", err)
	}
	sealed, err := encrypt.Seal(kek, dk, aad(id, acc, encCtx))
	if err != nil {
		encrypt.Wipe(dk)
		return encrypt.DataKey{}, fmt.Errorf("kek: generate data key: %w", err)
	}
	out := make([]byte, 0, 2+binary.MaxVarintLen64+len(id)+len(sealed))
	out = append(out, formatMarker, formatV1)
	out = binary.AppendUvarint(out, uint64(len(id)))
	out = append(out, id...)
	return encrypt.DataKey{Plaintext: dk, Wrapped: append(out, sealed...)}, nil
}

// Decrypt opens a data key: one in this package's format with its KEK
// (from memory, or its record unwrapped by the base provider); any other
// (wrapped directly by the base provider) by the base provider.
func (p *Provider) Decrypt(ctx context.Context, acc apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	if len(wrapped) == 0 || wrapped[0] != formatMarker {
		return p.base.Decrypt(ctx, acc, wrapped, encCtx)
	}
	if err := acc.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, sealed, ok := split(wrapped)
	if !ok {
		return nil, refused()
	}
	kek, err := p.openedKEK(ctx, acc, id)
	if err != nil {
		return nil, err
	}
	defer encrypt.Wipe(kek)
	return encrypt.Open(kek, sealed, aad(id, acc, encCtx))
}

// openedKEK returns a copy of acc's KEK id (the caller wipes it), from
// memory or from its record through the base provider.
func (p *Provider) openedKEK(ctx context.Context, acc apiary.AccountID, id string) ([]byte, error) {
	a := p.account(acc)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if e := a.current; e != nil && e.id == id && !e.expired(now, p.cfg.MaxAge) {
		return append([]byte(nil), e.key...), nil
	}
	if e, ok := a.opened[id]; ok {
		if !e.expired(now, p.cfg.MaxAge) {
			return append([]byte(nil), e.key...), nil
		}
		delete(a.opened, id)
		if a.current != e {
			encrypt.Wipe(e.key)
		}
	}
	key, err := p.unwrap(ctx, acc, id)
	if err != nil {
		return nil, err
	}
	for oid, e := range a.opened { // drop the expired while here
		if e.expired(now, p.cfg.MaxAge) {
			delete(a.opened, oid)
			encrypt.Wipe(e.key)
		}
	}
	a.opened[id] = &entry{id: id, key: key, born: now}
	return append([]byte(nil), key...), nil
}

// EraseAccountKey forgets acc's KEKs in memory, deletes their records and
// erases the account key in the base provider, which must be an
// encrypt.Eraser.
func (p *Provider) EraseAccountKey(ctx context.Context, acc apiary.AccountID) error {
	p.Forget(acc)
	if err := p.store.DeleteKEKs(ctx, acc); err != nil {
		return fmt.Errorf("kek: erase key-encryption keys of %s: %w", acc, err)
	}
	er, err := asEraser(p.base, acc)
	if err != nil {
		return err
	}
	return er.EraseAccountKey(ctx, acc)
}

// Forget drops acc's KEKs from memory, wiped: the next use opens them
// again from their records (or makes a new one), through the base
// provider. An account deleted by another process is forgotten here so
// that nothing more is sealed or opened with a KEK whose record is gone.
func (p *Provider) Forget(acc apiary.AccountID) {
	p.mu.Lock()
	a := p.accounts[acc]
	delete(p.accounts, acc)
	p.mu.Unlock()
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.current != nil {
		encrypt.Wipe(a.current.key)
	}
	for _, e := range a.opened {
		encrypt.Wipe(e.key)
	}
	a.current, a.opened = nil, map[string]*entry{}
}

// asEraser is base as an encrypt.Eraser, or the error saying it is not one.
func asEraser(base encrypt.KeyProvider, acc apiary.AccountID) (encrypt.Eraser, error) {
	er, ok := base.(encrypt.Eraser)
	if !ok {
		return nil, apiary.E(apiary.KindInvalid, "kek: erase account key %s: the account key provider cannot erase keys", acc)
	}
	return er, nil
}

// asRotator is base as an encrypt.Rotator, or the error saying it is not one.
func asRotator(base encrypt.KeyProvider, acc apiary.AccountID) (encrypt.Rotator, error) {
	r, ok := base.(encrypt.Rotator)
	if !ok {
		return nil, noVersions(acc)
	}
	return r, nil
}

func noVersions(acc apiary.AccountID) error {
	return apiary.E(apiary.KindInvalid, "kek: rotate account key %s: the account key provider has no key versions", acc)
}

// rotator is base's rotation, and its key versions as seen through any
// Counter around it (the outermost counting the lookups); both nil when
// it has no versions.
func rotator(base encrypt.KeyProvider) (encrypt.Rotator, encrypt.Versioned) {
	inner := base
	for {
		c, ok := inner.(*Counter)
		if !ok {
			break
		}
		inner = c.base
	}
	vs, ok := inner.(encrypt.Versioned)
	if !ok {
		return nil, nil
	}
	if c, ok := base.(*Counter); ok {
		return c, countedVersions{Versioned: vs, c: c} // the Counter counts re-wraps and lookups
	}
	return vs, vs
}

// RotateAccountKey moves acc to a new version of its account key in the
// base provider, which must be an encrypt.Versioned, and re-wraps every
// KEK of acc under it; it returns the version. Data keys are not touched:
// those under a KEK follow it; those wrapped directly keep opening under
// their old version (Rewrap moves one).
//
// A rotation has finished when every KEK of acc is wrapped by the newest
// version, and only then does the next call make a new version. A call
// that finds KEKs under an older version (a rotation cut short by an
// outage or a crash, or a KEK made while another process rotated)
// re-wraps them under the newest version and returns it, making none: so
// retrying a failed rotation until it succeeds makes one version, not one
// per try. Re-wrapping is idempotent; concurrent calls each make a
// version only when each finds the last rotation finished.
func (p *Provider) RotateAccountKey(ctx context.Context, acc apiary.AccountID) (int, error) {
	r, vs := rotator(p.base)
	if vs == nil {
		return 0, noVersions(acc)
	}
	v, err := vs.CurrentVersion(ctx, acc)
	if err != nil {
		return 0, fmt.Errorf("kek: rotate account key %s: %w", acc, err)
	}
	ids, err := p.keksBelow(ctx, acc, vs, v)
	if err != nil {
		return 0, fmt.Errorf("kek: rotate account key %s: %w", acc, err)
	}
	if len(ids) == 0 {
		if v, err = r.RotateAccountKey(ctx, acc); err != nil {
			return 0, fmt.Errorf("kek: rotate account key %s: %w", acc, err)
		}
		// Listed after the version exists: see newKEK.
		if ids, err = p.store.KEKIDs(ctx, acc); err != nil {
			return v, fmt.Errorf("kek: rotate account key %s: %w", acc, err)
		}
	}
	for _, id := range ids {
		err := p.rewrapKEK(ctx, acc, r, vs, id, v)
		if err != nil && apiary.KindOf(err) != apiary.KindNotFound { // NotFound: erased meanwhile
			return v, fmt.Errorf("kek: rotate account key %s: re-wrap key-encryption key: %w", acc, err)
		}
	}
	return v, nil
}

// keksBelow lists the KEKs of acc wrapped by a version older than version
// (or in no format vs knows, which a re-wrap then refuses).
func (p *Provider) keksBelow(ctx context.Context, acc apiary.AccountID, vs encrypt.Versioned, version int) ([]string, error) {
	ids, err := p.store.KEKIDs(ctx, acc)
	if err != nil {
		return nil, err
	}
	var below []string
	for _, id := range ids {
		w, err := p.store.KEK(ctx, acc, id)
		if apiary.KindOf(err) == apiary.KindNotFound {
			continue // erased meanwhile
		}
		if err != nil {
			return nil, err
		}
		if v, ok := vs.WrappedVersion(w); !ok || v < version {
			below = append(below, id)
		}
	}
	return below, nil
}

// rewrapKEK re-wraps acc's KEK id under the newest version of the account
// key, unless it is wrapped by version or a newer one already.
func (p *Provider) rewrapKEK(ctx context.Context, acc apiary.AccountID, r encrypt.Rotator, vs encrypt.Versioned, id string, version int) error {
	return p.store.UpdateKEK(ctx, acc, id, func(w []byte) ([]byte, error) {
		if v, ok := vs.WrappedVersion(w); ok && v >= version {
			return w, nil
		}
		return r.Rewrap(ctx, acc, w, kekContext(id))
	})
}

// Rewrap returns a data key wrapped under acc's newest account key
// version: one under a KEK as it is (its KEK is re-wrapped by
// RotateAccountKey), one wrapped directly re-wrapped by the base provider.
func (p *Provider) Rewrap(ctx context.Context, acc apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	if len(wrapped) > 0 && wrapped[0] == formatMarker {
		if _, err := p.Decrypt(ctx, acc, wrapped, encCtx); err != nil {
			return nil, err
		}
		return wrapped, nil
	}
	r, err := asRotator(p.base, acc)
	if err != nil {
		return nil, err
	}
	return r.Rewrap(ctx, acc, wrapped, encCtx)
}

func refused() error { return apiary.E(apiary.KindPermanent, "decrypt: authentication failed") }

// split parses a wrapped key of this package's format. The id length must
// be a varint in its shortest form (last byte not 0), so that a wrapped key
// has one encoding.
func split(wrapped []byte) (id string, sealed []byte, ok bool) {
	if len(wrapped) < 3 || wrapped[0] != formatMarker || wrapped[1] != formatV1 {
		return "", nil, false
	}
	n, w := binary.Uvarint(wrapped[2:])
	if w <= 0 || w > 1 && wrapped[1+w] == 0 || n == 0 || n > maxIDLen || uint64(len(wrapped)-2-w) < n {
		return "", nil, false
	}
	start := 2 + w
	return string(wrapped[start : start+int(n)]), wrapped[start+int(n):], true
}

func aad(id string, acc apiary.AccountID, c encrypt.Context) []byte {
	m := make(encrypt.Context, len(c)+1)
	for k, v := range c {
		m[k] = v
	}
	m["account"] = string(acc)
	return encrypt.AAD(aadLabel, id, string(m.Canonical()))
}
