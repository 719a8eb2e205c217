package records

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// Customer-given text that is not an id (webhook URLs and descriptions, a
// job's webhook_url, token and account names) is stored sealed, and
// Idempotency-Keys and request hashes as keyed hashes, under a key of the
// account's (FieldKeys): a copy of the buckets shows none of it, and it is
// gone with the account's key. A sealed field is bound to its account,
// record and field name: moved elsewhere, it does not open. The stores seal
// on every write and open on every read, so their callers see plain values.
// Without FieldKeys (tests of this package alone) fields are stored as given.

// FieldKeys gives each account's 256-bit key for its records' sealed fields
// and keyed hashes (cmd/apiary derives it from the account's key).
type FieldKeys interface {
	Key(ctx context.Context, account apiary.AccountID) ([]byte, error)
}

// Prefixes of stored field values. They start with a NUL byte, which no
// value a caller gives may hold (URLs, names and Idempotency-Keys are
// checked printable), so a stored form is never taken for a plain value.
const (
	sealedPrefix = "\x00sealed1:"
	hashedPrefix = "\x00hmac1:"
)

// fieldSealer seals and hashes record fields; a nil one (or one without
// keys) leaves them as they are.
type fieldSealer struct{ keys FieldKeys }

// SealFields makes every store seal record fields with keys from now on.
// Call it once, before the store is used.
func (s *Store) SealFields(keys FieldKeys) {
	f := &fieldSealer{keys: keys}
	s.AccountStore.fields, s.JobStore.fields, s.WebhookStore.fields, s.DeliveryStore.fields = f, f, f, f
}

// field is one string field of a record, named for the associated data.
type field struct {
	name string
	v    *string
}

func (f *fieldSealer) on() bool { return f != nil && f.keys != nil }

// forget drops account's field key from the key source's memory, when it
// keeps one (lexical.DerivedKeys does): the account's key is erased.
func (f *fieldSealer) forget(account apiary.AccountID) {
	if !f.on() {
		return
	}
	if fk, ok := f.keys.(interface{ Forget(apiary.AccountID) }); ok {
		fk.Forget(account)
	}
}

// key derives the key of one use from account's field key.
func (f *fieldSealer) key(ctx context.Context, account apiary.AccountID, use string) ([]byte, error) {
	k, err := f.keys.Key(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("records: field key of %s: %w", account, err)
	}
	return hkdf.Key(sha256.New, k, nil, "apiary records "+use, 32)
}

func fieldAD(account apiary.AccountID, record, name string) []byte {
	return []byte(strings.Join([]string{"apiary record field", string(account), record, name}, "\x00"))
}

// aead is AES-256-GCM under account's sealing key.
func (f *fieldSealer) aead(ctx context.Context, account apiary.AccountID, record string) (cipher.AEAD, error) {
	key, err := f.key(ctx, account, "seal")
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("records: sealing key of %s: %w", record, err)
	}
	return cipher.NewGCM(block)
}

// seal replaces each non-empty field of account's record with its sealed
// form.
func (f *fieldSealer) seal(ctx context.Context, account apiary.AccountID, record string, fields ...field) error {
	if !f.on() || !anySet(fields, "") {
		return nil
	}
	aead, err := f.aead(ctx, account, record)
	if err != nil {
		return err
	}
	for _, fl := range fields {
		if *fl.v == "" || strings.HasPrefix(*fl.v, sealedPrefix) {
			continue
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(*fl.v)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("records: seal %s: %w", record, err)
		}
		ct := aead.Seal(nonce, nonce, []byte(*fl.v), fieldAD(account, record, fl.name))
		*fl.v = sealedPrefix + base64.RawStdEncoding.EncodeToString(ct)
	}
	return nil
}

// open reverses seal; plain values (stored before fields were sealed) are
// left as they are.
func (f *fieldSealer) open(ctx context.Context, account apiary.AccountID, record string, fields ...field) error {
	if !anySet(fields, sealedPrefix) {
		return nil
	}
	if !f.on() {
		return apiary.E(apiary.KindOther, "records: %s has sealed fields and no key to open them", record)
	}
	aead, err := f.aead(ctx, account, record)
	if err != nil {
		return err
	}
	for _, fl := range fields {
		enc, ok := strings.CutPrefix(*fl.v, sealedPrefix)
		if !ok {
			continue
		}
		ct, err := base64.RawStdEncoding.DecodeString(enc)
		if err != nil || len(ct) < aead.NonceSize() {
			return apiary.E(apiary.KindOther, "records: %s field %s is not a sealed value", record, fl.name)
		}
		pt, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], fieldAD(account, record, fl.name))
		if err != nil {
			return apiary.E(apiary.KindOther, "records: %s field %s does not open with the account's key", record, fl.name)
		}
		*fl.v = string(pt)
	}
	return nil
}

// hash replaces each non-empty field, not already hashed, with its keyed
// hash: HMAC-SHA256 under a key of account's, the field's name as domain.
// Equal values hash equal, so hashed values are looked up and compared.
func (f *fieldSealer) hash(ctx context.Context, account apiary.AccountID, fields ...field) error {
	if !f.on() || !anySet(fields, "") {
		return nil
	}
	key, err := f.key(ctx, account, "hash")
	if err != nil {
		return err
	}
	for _, fl := range fields {
		if *fl.v == "" || strings.HasPrefix(*fl.v, hashedPrefix) {
			continue
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(fl.name))
		mac.Write([]byte{0})
		mac.Write([]byte(*fl.v))
		*fl.v = hashedPrefix + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	return nil
}

// anySet reports whether a field is non-empty and starts with prefix.
func anySet(fields []field, prefix string) bool {
	for _, fl := range fields {
		if *fl.v != "" && strings.HasPrefix(*fl.v, prefix) {
			return true
		}
	}
	return false
}

// --- the fields of each record ---

func webhookFields(w *Webhook) []field {
	return []field{{"url", &w.URL}, {"description", &w.Description}}
}

func (f *fieldSealer) sealWebhook(ctx context.Context, w *Webhook) error {
	return f.seal(ctx, w.Account, "webhook "+w.ID, webhookFields(w)...)
}

func (f *fieldSealer) openWebhook(ctx context.Context, w *Webhook) error {
	return f.open(ctx, w.Account, "webhook "+w.ID, webhookFields(w)...)
}

func (f *fieldSealer) sealDelivery(ctx context.Context, d *Delivery) error {
	return f.seal(ctx, d.Account, "delivery "+d.Endpoint+" "+d.ID, field{"url", &d.URL})
}

func (f *fieldSealer) openDelivery(ctx context.Context, d *Delivery) error {
	return f.open(ctx, d.Account, "delivery "+d.Endpoint+" "+d.ID, field{"url", &d.URL})
}

// sealJob seals a job's webhook_url and hashes its Idempotency-Key and
// request hash (as ClaimIdempotencyKey does, so the stored job still names
// its key).
func (f *fieldSealer) sealJob(ctx context.Context, j *apiary.Job) error {
	if err := f.hash(ctx, j.Account, idemFields(&j.IdempotencyKey, &j.RequestHash)...); err != nil {
		return err
	}
	return f.seal(ctx, j.Account, "job "+string(j.ID), field{"webhook_url", &j.WebhookURL})
}

func (f *fieldSealer) openJob(ctx context.Context, j *apiary.Job) error {
	return f.open(ctx, j.Account, "job "+string(j.ID), field{"webhook_url", &j.WebhookURL})
}

func idemFields(key, requestHash *string) []field {
	return []field{{"idempotency key", key}, {"request hash", requestHash}}
}

func (f *fieldSealer) sealAccount(ctx context.Context, a *apiary.Account) error {
	return f.seal(ctx, a.ID, "account", field{"name", &a.Name})
}

func (f *fieldSealer) openAccount(ctx context.Context, a *apiary.Account) error {
	return f.open(ctx, a.ID, "account", field{"name", &a.Name})
}

func (f *fieldSealer) sealToken(ctx context.Context, t *apiary.Token) error {
	return f.seal(ctx, t.Account, "token "+string(t.ID), field{"name", &t.Name})
}

func (f *fieldSealer) openToken(ctx context.Context, t *apiary.Token) error {
	return f.open(ctx, t.Account, "token "+string(t.ID), field{"name", &t.Name})
}

// updateSealed is update for a record with sealed fields: fn sees the
// record open, the store gets it sealed, the caller gets it open.
func updateSealed[T any](ctx context.Context, kv storage.KV, key, what string, fn func(*T) error, open, seal func(context.Context, *T) error) (T, error) {
	v, err := update(ctx, kv, key, what, func(v *T) error {
		if err := open(ctx, v); err != nil {
			return err
		}
		if err := fn(v); err != nil {
			return err
		}
		return seal(ctx, v)
	})
	if err != nil {
		return v, err
	}
	return v, open(ctx, &v)
}
