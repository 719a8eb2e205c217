package apiary

import (
	"fmt"
	"log/slog"
	"time"
)

// Redacted is what a Secret shows of itself, wherever it is printed,
// logged or encoded.
const Redacted = "[redacted]"

// Secret holds a customer credential (an access token, a secret key) in
// memory. It never shows its value: every formatter (%v, %+v, %#v, %s, %q,
// %x, …), log/slog, JSON and text encoding print Redacted instead. Only
// Reveal returns the bytes, for the one call that sends them to their
// vendor. Wipe zeroes them. The zero Secret is empty.
//
// A Secret is shared by copying: copies hold the same bytes, so Wipe on one
// wipes them all. It is not safe for concurrent Wipe and Reveal.
type Secret struct {
	b []byte
}

// NewSecret takes the bytes of s into a Secret. Go strings cannot be wiped,
// so prefer SecretFromBytes where the value arrives as bytes.
func NewSecret(s string) Secret { return Secret{b: []byte(s)} }

// SecretFromBytes takes ownership of b: the caller must not use it after.
func SecretFromBytes(b []byte) Secret { return Secret{b: b} }

// Reveal returns the secret's bytes; the caller must not keep or change
// them, nor log them.
func (s Secret) Reveal() []byte { return s.b }

// Empty reports whether the secret holds no bytes (it was never set).
func (s Secret) Empty() bool { return len(s.b) == 0 }

// Wipe zeroes the secret's bytes, in every copy of it.
func (s Secret) Wipe() { clear(s.b) }

func (Secret) String() string   { return Redacted }
func (Secret) GoString() string { return Redacted }

// Format prints Redacted for every verb, so that no flag or verb (%x, %q,
// %#v) reaches the bytes.
func (Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, Redacted) }

func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

var (
	_ fmt.Formatter  = Secret{}
	_ fmt.Stringer   = Secret{}
	_ fmt.GoStringer = Secret{}
	_ slog.LogValuer = Secret{}
)

// Credentials are what an ephemeral source of one job authenticates with:
// a bearer token, or an access key (ID, secret and session token, as S3
// takes). They live in memory only (connectors/custody), for at most
// MaxCredentialLifetime, and are wiped when their job ends.
type Credentials struct {
	// Token is a bearer access token.
	Token Secret
	// AccessKeyID, SecretAccessKey and SessionToken are a temporary
	// access key.
	AccessKeyID, SecretAccessKey, SessionToken Secret
	// Expiry is when the credentials stop working, if the caller said;
	// zero when unknown.
	Expiry time.Time
}

// MaxCredentialLifetime bounds how long ephemeral credentials are kept,
// whatever their own expiry.
const MaxCredentialLifetime = time.Hour

// Empty reports whether c holds no credential at all.
func (c Credentials) Empty() bool {
	return c.Token.Empty() && c.AccessKeyID.Empty() && c.SecretAccessKey.Empty() && c.SessionToken.Empty()
}

// Wipe zeroes every secret of c.
func (c Credentials) Wipe() {
	for _, s := range c.secrets() {
		s.Wipe()
	}
}

func (c Credentials) secrets() []Secret {
	return []Secret{c.Token, c.AccessKeyID, c.SecretAccessKey, c.SessionToken}
}

// String is Credentials' own: it says which fields are set, never their
// values (the Secrets would redact themselves anyway).
func (c Credentials) String() string {
	return fmt.Sprintf("credentials{token:%t access_key:%t expiry:%s}", !c.Token.Empty(), !c.AccessKeyID.Empty(), c.Expiry.Format(time.RFC3339))
}

// ReasonHolderGone is the reason of a job failed because the process
// holding its ephemeral token stopped: the token is gone with it, and the
// job cannot run without it.
const ReasonHolderGone = "the token was held in memory by a process that stopped; resubmit with a fresh token and a new Idempotency-Key"

// ReasonTokenGone is the reason of a job whose ephemeral token is no
// longer held: it expired (its own expiry, or MaxCredentialLifetime), or
// the job ended.
const ReasonTokenGone = "the token is no longer held (it expired before the job could use it); resubmit with a fresh token and a new Idempotency-Key"
