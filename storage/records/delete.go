package records

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// DeleteAccountTokens deletes every token of account, every secret of a
// rotated one included, without opening a sealed name: the first step of
// an account's deletion, so that nothing authenticates as the account
// while the rest of it goes.
func (s *Store) DeleteAccountTokens(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	if err := s.deleteTokens(ctx, []apiary.AccountID{account}); err != nil {
		return fmt.Errorf("records: delete account %s tokens: %w", account, err)
	}
	return nil
}

// deleteTokens deletes every token of accounts in one pass over the
// tokens (keyed by hash, they list all together), without opening a
// sealed name.
func (s *Store) deleteTokens(ctx context.Context, accounts []apiary.AccountID) error {
	toks, err := s.sealedTokensOf(ctx, accounts) // the accounts' keys may be erased already
	if err != nil {
		return err
	}
	for _, t := range toks {
		if err := s.tokens.Delete(ctx, t.Hash); err != nil && !errors.Is(err, apiary.ErrNotFound) {
			return err
		}
	}
	return nil
}

// DeleteAccountRecords deletes every record of account, in every bucket,
// the account's own record last: its tokens first (it stops
// authenticating), then its admin set, token uses, webhooks, default webhook secret,
// deliveries and their due entries, connections and their gate, documents, jobs with
// their outcomes and Idempotency-Keys, its lexical key and its key-encryption keys. Deletes go
// through the KV store, which erases the values where it can (natskv).
// The audit log stays until --audit-retention prunes it, so the deletion
// itself remains on record; it holds ids and outcomes, never a secret. A
// missing account is not an error; calling it again finishes a deletion a
// crash cut short. It opens no sealed field: the account's key is erased
// before it runs. It first marks the account deleted (deleted.go), in
// memory and durably, so that no write of the account lands after it.
func (s *Store) DeleteAccountRecords(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	if err := s.markDeleted(ctx, account, time.Now()); err != nil {
		return err
	}
	return s.deleteAccountRecords(ctx, account)
}

// deleteAccountRecords deletes every record of accounts
// (DeleteAccountRecords), with one pass over the buckets that are not
// keyed by account (tokens, due deliveries) for them all.
func (s *Store) deleteAccountRecords(ctx context.Context, accounts ...apiary.AccountID) error {
	if len(accounts) == 0 {
		return nil
	}
	// The accounts' keys are erased: a write racing the deletion must not
	// seal with a copy of its field key still in memory.
	for _, account := range accounts {
		s.AccountStore.fields.forget(account)
	}
	if err := s.deleteTokens(ctx, accounts); err != nil {
		return fmt.Errorf("records: delete accounts' tokens: %w", err)
	}
	prefixes := make(map[string]bool, len(accounts))
	for _, account := range accounts {
		prefix := scopePrefix(account)
		prefixes[prefix] = true
		for _, b := range []struct {
			what string
			kv   storage.KV
		}{
			{"admin set", s.admins},
			{"token uses", s.uses},
			{"webhooks", s.webhooks},
			{"deliveries", s.deliveries},
			{"connections", s.connections},
			{"pending connections gate", s.gates},
			{"documents", s.docs},
			{"outcomes", s.outcomes},
			{"idempotency keys", s.idem},
			{"jobs", s.jobs},
			{"lexical key", s.lexKeys},
			{"key-encryption keys", s.keks},
		} {
			if err := deletePrefix(ctx, b.kv, prefix, nil); err != nil {
				return fmt.Errorf("records: delete account %s: %s: %w", account, b.what, err)
			}
		}
	}
	// Due entries are keyed by time first: the account is their second part.
	if err := deletePrefix(ctx, s.due, "", func(key string) bool {
		_, rest, _ := strings.Cut(key, ".")
		account, _, _ := strings.Cut(rest, ".")
		return prefixes[account+"."]
	}); err != nil {
		return fmt.Errorf("records: delete accounts' due deliveries: %w", err)
	}
	for _, account := range accounts {
		for _, one := range []struct {
			what string
			kv   storage.KV
		}{
			{"default webhook secret", s.secrets},
			{"account", s.accounts},
		} {
			if err := one.kv.Delete(ctx, encodeID(string(account))); err != nil {
				return fmt.Errorf("records: delete account %s: %s: %w", account, one.what, err)
			}
		}
	}
	return nil
}

// deletePrefix deletes the keys of kv that start with prefix and that
// match accepts (nil: all).
func deletePrefix(ctx context.Context, kv storage.KV, prefix string, match func(string) bool) error {
	keys, err := kv.Keys(ctx, prefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if match != nil && !match(k) {
			continue
		}
		if err := kv.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// AccountLeft reports whether anything of account is left to delete (its
// record or a token) and whether it holds an operator token. It opens no
// sealed field, so it answers after the account's key is erased (a
// deletion cut short, asked again).
func (s *Store) AccountLeft(ctx context.Context, account apiary.AccountID) (left, operator bool, err error) {
	if err := account.Validate(); err != nil {
		return false, false, err
	}
	_, _, err = get[apiary.Account](ctx, s.accounts, encodeID(string(account)), "account")
	switch {
	case err == nil:
		left = true
	case !errors.Is(err, apiary.ErrNotFound):
		return false, false, err
	}
	toks, err := s.sealedTokens(ctx, account)
	if err != nil {
		return false, false, err
	}
	for _, t := range toks {
		operator = operator || t.Operator
	}
	return left || len(toks) > 0, operator, nil
}
