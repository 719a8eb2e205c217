package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
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

// issueToken makes a new token for account and stores its record.
func issueToken(ctx context.Context, recs AccountRecords, account apiary.AccountID, name string, role apiary.Role, operator bool) (apiary.Token, string, error) {
	secret, err := NewToken()
	if err != nil {
		return apiary.Token{}, "", err
	}
	t := apiary.Token{
		ID:        apiary.NewTokenID(),
		Account:   account,
		Name:      name,
		Role:      role,
		Operator:  operator,
		Hash:      HashToken(secret),
		CreatedAt: time.Now().UTC(),
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
// theirs gets one back: `apiary token --operator`.
func NewOperatorToken(ctx context.Context, recs AccountRecords, name string) (string, error) {
	if _, err := recs.Account(ctx, apiary.DefaultAccount); err != nil {
		return "", fmt.Errorf("api: new operator token: %w", err)
	}
	_, secret, err := issueToken(ctx, recs, apiary.DefaultAccount, name, apiary.RoleAdmin, true)
	return secret, err
}
