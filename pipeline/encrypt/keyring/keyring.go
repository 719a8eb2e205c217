// Package keyring is the local KeyProvider: one random 256-bit key per
// account, each stored in its own file sealed by a root key.
//
// Layout: <Dir>/<account>.key holds Seal(rootKey, accountKey,
// "apiary-keyring-v1|<account>"), mode 0600, in a directory of mode 0700.
// Files are created with O_EXCL, so that concurrent creators — in this
// process or another — end with exactly one key. Unsealed account keys are
// cached in memory for the life of the Keyring.
//
// Data keys are 32 random bytes wrapped with Seal(accountKey, dataKey,
// Canonical(encCtx + account)); a wrapped key presented under another
// account or another context fails to open with an error of kind Permanent.
//
// Nothing in this package logs or returns a key in an error.
package keyring

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

var _ encrypt.KeyProvider = (*Keyring)(nil)

// Config configures a Keyring.
type Config struct {
	// Dir holds one file per account key. Required; created (0700) if missing.
	Dir string
	// RootKey seals the account keys: exactly 32 bytes. Required. Keep it out
	// of Dir (see LoadOrCreateRootKey and ParseRootKey).
	RootKey []byte
}

// String never shows the root key.
func (c Config) String() string {
	return fmt.Sprintf("keyring.Config{Dir: %q, RootKey: [redacted]}", c.Dir)
}

func (c *Config) setDefaults() {}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("keyring: Dir is required"))
	}
	if len(c.RootKey) != encrypt.KeySize {
		errs = append(errs, fmt.Errorf("keyring: RootKey must be %d bytes, got %d", encrypt.KeySize, len(c.RootKey)))
	}
	return errors.Join(errs...)
}

// Keyring is the local KeyProvider. Safe for concurrent use.
type Keyring struct {
	dir  string
	root []byte

	mu    sync.Mutex
	cache map[apiary.AccountID][]byte
}

// New opens (creating if needed) the keyring in cfg.Dir.
func New(cfg Config) (*Keyring, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "keyring: config")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: create dir: %w", err)
	}
	return &Keyring{
		dir:   cfg.Dir,
		root:  append([]byte(nil), cfg.RootKey...),
		cache: make(map[apiary.AccountID][]byte),
	}, nil
}

func (k *Keyring) path(account apiary.AccountID) string {
	return filepath.Join(k.dir, string(account)+".key")
}

func fileAAD(account apiary.AccountID) []byte {
	return []byte("apiary-keyring-v1|" + string(account))
}

// CreateAccountKey makes account's key if it has none; otherwise it does
// nothing. Concurrent calls end with one key.
func (k *Keyring) CreateAccountKey(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := k.accountKey(account); err == nil {
		return nil
	} else if apiary.KindOf(err) != apiary.KindNotFound {
		return err
	}
	key := make([]byte, encrypt.KeySize)
	defer encrypt.Wipe(key)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("keyring: create account key %s: %w", account, err)
	}
	sealed, err := encrypt.Seal(k.root, key, fileAAD(account))
	if err != nil {
		return fmt.Errorf("keyring: create account key %s: %w", account, err)
	}
	if err := writeExclusive(k.path(account), sealed); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // another creator won; its key stands
		}
		return fmt.Errorf("keyring: create account key %s: %w", account, err)
	}
	return nil
}

// writeExclusive writes data to a temporary file and links it at path, so
// that a reader never sees a half-written key file and only one of several
// concurrent writers wins (fs.ErrExist for the others).
func writeExclusive(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// os.Link fails with EEXIST when path exists: the O_EXCL of renames.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// accountKey returns the unsealed key of account, from the cache or its
// file; NotFound when the account has no key.
func (k *Keyring) accountKey(account apiary.AccountID) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.cache[account]; ok {
		return key, nil
	}
	sealed, err := os.ReadFile(k.path(account))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, apiary.E(apiary.KindNotFound, "keyring: no key for account %s", account)
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: read account key %s: %w", account, err)
	}
	key, err := encrypt.Open(k.root, sealed, fileAAD(account))
	if err != nil {
		return nil, apiary.Wrap(err, apiary.KindPermanent, "keyring: account key %s does not open with this root key", account)
	}
	k.cache[account] = key
	return key, nil
}

// GenerateDataKey returns 32 fresh random bytes and their wrapping under
// account's key and encCtx (with "account" set to account).
func (k *Keyring) GenerateDataKey(ctx context.Context, account apiary.AccountID, encCtx encrypt.Context) (encrypt.DataKey, error) {
	if err := account.Validate(); err != nil {
		return encrypt.DataKey{}, err
	}
	if err := ctx.Err(); err != nil {
		return encrypt.DataKey{}, err
	}
	ak, err := k.accountKey(account)
	if err != nil {
		return encrypt.DataKey{}, err
	}
	dk := make([]byte, encrypt.KeySize)
	if _, err := rand.Read(dk); err != nil {
		return encrypt.DataKey{}, fmt.Errorf("keyring: generate data key: %w", err)
	}
	wrapped, err := encrypt.Seal(ak, dk, canonical(account, encCtx))
	if err != nil {
		encrypt.Wipe(dk)
		return encrypt.DataKey{}, fmt.Errorf("keyring: generate data key: %w", err)
	}
	return encrypt.DataKey{Plaintext: dk, Wrapped: wrapped}, nil
}

// Decrypt unwraps a data key wrapped by GenerateDataKey for the same account
// and context. NotFound when account has no key; Permanent when the wrapped
// key belongs to another account or context or was tampered with.
func (k *Keyring) Decrypt(ctx context.Context, account apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	if err := account.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ak, err := k.accountKey(account)
	if err != nil {
		return nil, err
	}
	return encrypt.Open(ak, wrapped, canonical(account, encCtx))
}

func canonical(account apiary.AccountID, c encrypt.Context) []byte {
	m := make(encrypt.Context, len(c)+1)
	for key, v := range c {
		m[key] = v
	}
	m["account"] = string(account)
	return m.Canonical()
}

// LoadOrCreateRootKey reads a 32-byte root key from path, or creates path
// (0600, its directory 0700) with 32 random bytes when it does not exist. It
// refuses a key file that group or others may read or write.
func LoadOrCreateRootKey(path string) ([]byte, error) {
	key, err := readRootKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keyring: create root key dir: %w", err)
	}
	key = make([]byte, encrypt.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keyring: generate root key: %w", err)
	}
	err = writeExclusive(path, key)
	if errors.Is(err, fs.ErrExist) {
		encrypt.Wipe(key)
		return readRootKey(path) // another process created it first
	}
	if err != nil {
		encrypt.Wipe(key)
		return nil, fmt.Errorf("keyring: write root key %s: %w", path, err)
	}
	return key, nil
}

func readRootKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("keyring: open root key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: stat root key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, apiary.E(apiary.KindInvalid,
			"keyring: root key file %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)",
			path, st.Mode().Perm(), path)
	}
	buf, err := io.ReadAll(io.LimitReader(f, encrypt.KeySize+1))
	if err != nil {
		encrypt.Wipe(buf)
		return nil, fmt.Errorf("keyring: read root key: %w", err)
	}
	if len(buf) != encrypt.KeySize {
		encrypt.Wipe(buf)
		return nil, apiary.E(apiary.KindInvalid, "keyring: root key file %s must hold exactly %d bytes", path, encrypt.KeySize)
	}
	return buf, nil
}

// ParseRootKey decodes a root key given as text: standard or URL-safe
// base64 (padded or not) or hex, of exactly 32 bytes. Its errors never echo
// the input.
func ParseRootKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	decoders := []func(string) ([]byte, error){
		hex.DecodeString,
		base64.StdEncoding.DecodeString,
		base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString,
		base64.RawURLEncoding.DecodeString,
	}
	for _, dec := range decoders {
		b, err := dec(s)
		if err == nil && len(b) == encrypt.KeySize {
			return b, nil
		}
		encrypt.Wipe(b)
	}
	return nil, apiary.E(apiary.KindInvalid, "keyring: root key must be %d bytes in base64 or hex", encrypt.KeySize)
}
