package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
)

// Token format: "apy_" + 33 base62 characters encoding 24 random bytes
// (192 bits) + 6 base62 characters encoding the CRC-32 (IEEE) of those 33
// characters, so that a mistyped or truncated token, or a random string, is
// rejected without a lookup, and secret scanners can recognise the prefix.
const (
	tokenPrefix      = "apy_"
	tokenRandomBytes = 24
	tokenRandomLen   = 33 // ceil(192 / log2(62))
	tokenCheckLen    = 6  // 62^6 > 2^32
	tokenLen         = len(tokenPrefix) + tokenRandomLen + tokenCheckLen
	base62Alphabet   = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// encodeBase62 writes n in base62, left-padded with '0' to width characters.
func encodeBase62(n *big.Int, width int) string {
	out := make([]byte, width)
	for i := range out {
		out[i] = '0'
	}
	v := new(big.Int).Set(n)
	base, mod := big.NewInt(62), new(big.Int)
	for i := width - 1; i >= 0 && v.Sign() > 0; i-- {
		v.DivMod(v, base, mod)
		out[i] = base62Alphabet[mod.Int64()]
	}
	return string(out)
}

func tokenChecksum(random string) string {
	return encodeBase62(new(big.Int).SetUint64(uint64(crc32.ChecksumIEEE([]byte(random)))), tokenCheckLen)
}

// NewToken returns a fresh API token. Show it once; store only HashToken(token).
func NewToken() (string, error) {
	var b [tokenRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("api: new token: %w", err)
	}
	random := encodeBase62(new(big.Int).SetBytes(b[:]), tokenRandomLen)
	return tokenPrefix + random + tokenChecksum(random), nil
}

// CheckTokenFormat reports whether s is shaped like a token NewToken makes.
// It never echoes s in its error.
func CheckTokenFormat(s string) error {
	if !strings.HasPrefix(s, tokenPrefix) {
		return apiary.E(apiary.KindUnauthenticated, "malformed token: it must start with %q", tokenPrefix)
	}
	if len(s) != tokenLen {
		return apiary.E(apiary.KindUnauthenticated, "malformed token: it must be %d characters long", tokenLen)
	}
	for i := len(tokenPrefix); i < len(s); i++ {
		if strings.IndexByte(base62Alphabet, s[i]) < 0 {
			return apiary.E(apiary.KindUnauthenticated, "malformed token: it may hold only 0-9, A-Z and a-z after the prefix")
		}
	}
	random, check := s[len(tokenPrefix):len(tokenPrefix)+tokenRandomLen], s[len(tokenPrefix)+tokenRandomLen:]
	if tokenChecksum(random) != check {
		return apiary.E(apiary.KindUnauthenticated, "malformed token: checksum mismatch (was it copied whole?)")
	}
	return nil
}

// HashToken returns the hex SHA-256 of token: the only form of it that is stored.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// issueToken makes a new token for account and stores its record; expires
// may be nil (no expiry).
func issueToken(ctx context.Context, recs AccountRecords, account apiary.AccountID, name string, role apiary.Role, operator bool, expires *time.Time) (apiary.Token, string, error) {
	t := apiary.Token{
		ID:        apiary.NewTokenID(),
		Account:   account,
		Name:      name,
		Role:      role,
		Operator:  operator,
		CreatedAt: time.Now().UTC(),
		ExpiresAt: expires,
	}
	secret, err := newTokenSecret(&t)
	if err != nil {
		return apiary.Token{}, "", err
	}
	if err := recs.CreateToken(ctx, t); err != nil {
		return apiary.Token{}, "", fmt.Errorf("api: create token: %w", err)
	}
	return t, secret, nil
}

// Bootstrap prepares an empty installation: when no account exists it creates
// the account apiary.DefaultAccount, its key, and an operator admin token. The
// token is the given one when token is not empty (it must pass
// CheckTokenFormat), else a new random one that Bootstrap returns as issued so
// that the caller can show it once. created is false when an account already
// existed (or a concurrent Bootstrap created it first); issued is then "".
//
// Bootstrap is safe to run concurrently and to rerun after a crash: the token
// is stored before the account, so an account never exists without a token.
func Bootstrap(ctx context.Context, recs AccountRecords, keys encrypt.KeyProvider, token string) (issued string, created bool, err error) {
	if token != "" {
		if err := CheckTokenFormat(token); err != nil {
			return "", false, apiary.Wrap(err, apiary.KindInvalid,
				"api: bootstrap: the given operator token is not an Apiary token (generate one with `apiary token`, or leave it empty to have one generated)")
		}
	}
	has, err := recs.HasAccounts(ctx)
	if err != nil {
		return "", false, fmt.Errorf("api: bootstrap: %w", err)
	}
	if has {
		return "", false, nil
	}
	account := apiary.DefaultAccount
	if err := keys.CreateAccountKey(ctx, account); err != nil {
		return "", false, fmt.Errorf("api: bootstrap: create account key: %w", err)
	}
	generated := token == ""
	if generated {
		if token, err = NewToken(); err != nil {
			return "", false, fmt.Errorf("api: bootstrap: %w", err)
		}
	}
	tok := apiary.Token{
		ID:        apiary.NewTokenID(),
		Account:   account,
		Name:      "operator",
		Role:      apiary.RoleAdmin,
		Operator:  true,
		Hash:      HashToken(token),
		Prefix:    token[:tokenPrefixShown],
		CreatedAt: time.Now().UTC(),
	}
	switch err := recs.CreateToken(ctx, tok); {
	case err == nil:
	case errors.Is(err, apiary.ErrConflict) && !generated:
		// The same given token was stored by a concurrent or crashed bootstrap.
	default:
		return "", false, fmt.Errorf("api: bootstrap: create operator token: %w", err)
	}
	err = recs.CreateAccount(ctx, apiary.Account{ID: account, Name: "Default", CreatedAt: time.Now().UTC()})
	if errors.Is(err, apiary.ErrConflict) {
		// Someone else bootstrapped first; withdraw our random token, which
		// nobody will ever see.
		if generated {
			if derr := recs.DeleteToken(ctx, account, tok.ID); derr != nil && !errors.Is(derr, apiary.ErrNotFound) {
				return "", false, fmt.Errorf("api: bootstrap: withdraw unused token: %w", derr)
			}
		}
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("api: bootstrap: create account: %w", err)
	}
	if generated {
		return token, true, nil
	}
	return "", true, nil
}

// NewOperatorToken mints a new operator token (an admin of
// apiary.DefaultAccount that may also create accounts) named name and
// returns its secret, to be shown once. It is how an operator who lost
// theirs gets one back: `apiary token --operator`. Made outside the API,
// it is recorded in the operator's account's audit log all the same.
func NewOperatorToken(ctx context.Context, recs interface {
	AccountRecords
	AuditRecords
}, name string) (string, error) {
	if _, err := recs.Account(ctx, apiary.DefaultAccount); err != nil {
		return "", fmt.Errorf("api: new operator token: %w", err)
	}
	tok, secret, err := issueToken(ctx, recs, apiary.DefaultAccount, name, apiary.RoleAdmin, true, nil)
	if err != nil {
		return "", err
	}
	e := records.AuditEntry{Account: apiary.DefaultAccount, Operator: true, Action: "token.create", Target: string(tok.ID),
		Result: auditSuccess, Status: http.StatusCreated, RequestID: "apiary token --operator"}
	if _, err := recs.AppendAudit(ctx, e); err != nil {
		if derr := recs.DeleteToken(ctx, apiary.DefaultAccount, tok.ID); derr != nil {
			err = errors.Join(err, derr)
		}
		return "", fmt.Errorf("api: new operator token: audit: %w", err)
	}
	return secret, nil
}

// Token lifecycle: expiry, rotation with a grace period, last use.
const (
	maxTokenLifetime   = 5 * 366 * 24 * time.Hour // an expiry further out is a mistake
	minTokenLifetime   = time.Minute
	defaultRotateGrace = 24 * time.Hour
	maxRotateGrace     = 30 * 24 * time.Hour
	tokenPrefixShown   = len(tokenPrefix) + 6 // "apy_" and 6 of its 33 random characters
	touchEvery         = time.Minute          // last use is written at most this often per token
)

var errExpiredToken = apiary.E(apiary.KindUnauthenticated, "this token has expired; ask an admin of the account for a new one")

// tokenExpiry is the optional expiry of a token being made or rotated:
// expires_in seconds from now, or expires_at (RFC 3339), not both.
type tokenExpiry struct {
	ExpiresIn *int64     `json:"expires_in,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// at returns the expiry the request asks for (nil: none), refusing one in
// the past, under a minute away or more than five years out.
func (x tokenExpiry) at(now time.Time) (*time.Time, error) {
	var at time.Time
	switch {
	case x.ExpiresIn != nil && x.ExpiresAt != nil:
		return nil, apiary.E(apiary.KindInvalid, "give expires_in or expires_at, not both")
	case x.ExpiresIn != nil:
		if *x.ExpiresIn < int64(minTokenLifetime/time.Second) || *x.ExpiresIn > int64(maxTokenLifetime/time.Second) {
			return nil, apiary.E(apiary.KindInvalid, "expires_in must be a number of seconds from %d to %d (five years)",
				int64(minTokenLifetime/time.Second), int64(maxTokenLifetime/time.Second))
		}
		at = now.Add(time.Duration(*x.ExpiresIn) * time.Second)
	case x.ExpiresAt != nil:
		at = *x.ExpiresAt
		if at.Sub(now) < minTokenLifetime {
			return nil, apiary.E(apiary.KindInvalid, "expires_at must be at least a minute in the future (RFC 3339, e.g. %s)",
				now.Add(30*24*time.Hour).UTC().Format(time.RFC3339))
		}
		if at.Sub(now) > maxTokenLifetime {
			return nil, apiary.E(apiary.KindInvalid, "expires_at must be at most five years from now")
		}
	default:
		return nil, nil
	}
	at = at.UTC().Truncate(time.Second)
	return &at, nil
}

// newTokenSecret makes a secret and the parts of a token record that come
// from it.
func newTokenSecret(t *apiary.Token) (string, error) {
	secret, err := NewToken()
	if err != nil {
		return "", err
	}
	t.Hash, t.Prefix = HashToken(secret), secret[:tokenPrefixShown]
	return secret, nil
}

type rotateTokenRequest struct {
	// Grace is how long the old secret keeps working (a Go duration,
	// default 24h, "0s" to end it at once, at most 720h).
	Grace *string `json:"grace,omitempty"`
	tokenExpiry
}

// rotateToken gives a token of the caller's account a new secret, shown in
// this answer only; the old secret keeps working for the grace period.
// The token keeps its id, name and role.
func (s *Server) rotateToken(c echo.Context) error {
	var req rotateTokenRequest
	if err := readOptionalJSON(c, &req); err != nil {
		return err
	}
	grace := defaultRotateGrace
	if req.Grace != nil {
		g, err := time.ParseDuration(*req.Grace)
		if err != nil || g < 0 || g > maxRotateGrace {
			return apiary.E(apiary.KindInvalid, "grace must be a duration from \"0s\" to \"720h\" (default \"24h\")")
		}
		grace = g
	}
	now := s.cfg.Now().UTC()
	expires, err := req.at(now)
	if err != nil {
		return err
	}
	id := apiary.TokenID(c.Param("id"))
	p, ctx := principal(c), c.Request().Context()
	cur, err := s.visibleToken(c, id)
	if err != nil {
		return err
	}
	if cur.Expired(now) {
		if expires == nil {
			return apiary.E(apiary.KindConflict, "this token has expired: give expires_in or expires_at to rotate it with a new expiry, or create a new token")
		}
		grace = 0 // its secret stays expired
	}
	next := cur
	next.CreatedAt, next.Replaced = now, false
	if expires != nil {
		next.ExpiresAt = expires
	}
	secret, err := newTokenSecret(&next)
	if err != nil {
		return err
	}
	if err := s.deps.Records.RotateToken(ctx, p.Account, next, now, now.Add(grace)); err != nil {
		return err
	}
	v := viewToken(next)
	if grace > 0 {
		until := now.Add(grace)
		if cur.ExpiresAt != nil && cur.ExpiresAt.Before(until) {
			until = *cur.ExpiresAt
		}
		v.PreviousValidUntil = &until
	}
	return c.JSON(http.StatusOK, createTokenResponse{tokenView: v, Token: secret})
}

// visibleToken finds the current record of the caller's account's token
// id. An operator token is the operator's: to anyone else it does not
// exist.
func (s *Server) visibleToken(c echo.Context, id apiary.TokenID) (apiary.Token, error) {
	p := principal(c)
	toks, err := s.deps.Records.Tokens(c.Request().Context(), p.Account)
	if err != nil {
		return apiary.Token{}, err
	}
	for _, t := range toks {
		if t.ID == id && !t.Replaced && (!t.Operator || p.Operator) {
			return t, nil
		}
	}
	return apiary.Token{}, apiary.E(apiary.KindNotFound, "no such token")
}

// touches remembers when this process last recorded each token's use, so
// that authentication writes at most once a minute per token.
type touches struct {
	mu   sync.Mutex
	last map[apiary.TokenID]time.Time
}

// due reports whether id's use at now is to be recorded, and if so notes it.
func (t *touches) due(id apiary.TokenID, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.last[id]; ok && now.Sub(at) < touchEvery {
		return false
	}
	if t.last == nil || len(t.last) >= maxLimiters {
		t.last = make(map[apiary.TokenID]time.Time) // bounded: forgetting costs one write per token
	}
	t.last[id] = now
	return true
}

// touchToken records t's use, at most once a minute: a failure is only
// logged.
func (s *Server) touchToken(c echo.Context, t apiary.Token, now time.Time) {
	if !s.touched.due(t.ID, now) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 5*time.Second)
	defer cancel()
	if err := s.deps.Records.TouchToken(ctx, t.Account, t.ID, now, touchEvery); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "recording a token's last use failed",
			slog.String("token_id", string(t.ID)), slog.String("request_id", requestID(c)), slog.Any("err", err))
	}
}

// checkAnotherAdmin refuses to delete admin token id when no other admin
// token of the account still works (the others expired): records refuses
// the last admin token, but counts expired ones.
func (s *Server) checkAnotherAdmin(c echo.Context, id apiary.TokenID) error {
	toks, err := s.deps.Records.Tokens(c.Request().Context(), principal(c).Account)
	if err != nil {
		return err
	}
	now, others := s.cfg.Now(), 0
	for _, t := range toks {
		if t.ID == id || t.Role != apiary.RoleAdmin || t.Replaced {
			continue
		}
		if !t.Expired(now) {
			return nil
		}
		others++
	}
	if others == 0 {
		return nil // the last admin token: records refuses it (ErrLastAdmin)
	}
	return apiary.E(apiary.KindConflict, "every other admin token of the account has expired; create another admin token before deleting this one")
}
