package records

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// AccountStore keeps accounts and their tokens, with each account's admin
// set (tokens.go) and its wrapped lexical key.
type AccountStore struct {
	accounts, tokens storage.KV
	admins           storage.KV // tokens.go
	uses             storage.KV // tokens.go: each token's last use
	lexKeys          storage.KV
	fields           *fieldSealer
}

// CreateAccount stores a new account; Conflict if the id is taken.
func (s *AccountStore) CreateAccount(ctx context.Context, a apiary.Account) error {
	if err := a.ID.Validate(); err != nil {
		return err
	}
	if err := s.fields.sealAccount(ctx, &a); err != nil {
		return err
	}
	return create(ctx, s.accounts, encodeID(string(a.ID)), "account", a)
}

// Account returns the account with id.
func (s *AccountStore) Account(ctx context.Context, id apiary.AccountID) (apiary.Account, error) {
	return s.getAccount(ctx, encodeID(string(id)))
}

// getAccount reads the account at key, its sealed fields open.
func (s *AccountStore) getAccount(ctx context.Context, key string) (apiary.Account, error) {
	a, _, err := get[apiary.Account](ctx, s.accounts, key, "account")
	if err != nil {
		return a, err
	}
	return a, s.fields.openAccount(ctx, &a)
}

// HasAccounts reports whether any account exists (bootstrap runs when none does).
func (s *AccountStore) HasAccounts(ctx context.Context) (bool, error) {
	keys, err := s.accounts.Keys(ctx, "")
	if err != nil {
		return false, fmt.Errorf("records: list accounts: %w", err)
	}
	return len(keys) > 0, nil
}

// lexicalKeyID is the id of an account's one lexical key record.
const lexicalKeyID = "lexical"

type lexicalKey struct {
	Wrapped []byte `json:"wrapped"`
}

// LexicalKey returns account's wrapped lexical key (package
// pipeline/lexical), or NotFound when none is stored.
func (s *AccountStore) LexicalKey(ctx context.Context, account apiary.AccountID) ([]byte, error) {
	k, _, err := get[lexicalKey](ctx, s.lexKeys, scopedKey(account, lexicalKeyID), "lexical key")
	return k.Wrapped, err
}

// CreateLexicalKey stores account's wrapped lexical key unless one is
// stored (Conflict): of two racing creators, the first wins and the second
// reads the winner's.
func (s *AccountStore) CreateLexicalKey(ctx context.Context, account apiary.AccountID, wrapped []byte) error {
	if err := account.Validate(); err != nil {
		return err
	}
	if len(wrapped) == 0 {
		return apiary.E(apiary.KindInvalid, "lexical key is empty")
	}
	return create(ctx, s.lexKeys, scopedKey(account, lexicalKeyID), "lexical key", lexicalKey{Wrapped: wrapped})
}

// UpdateAccount applies fn to account id's record and stores the result
// with a compare-and-swap, retrying on concurrent writes; fn returning
// ErrNoChange stores nothing. NotFound when there is no such account.
func (s *AccountStore) UpdateAccount(ctx context.Context, id apiary.AccountID, fn func(*apiary.Account) error) (apiary.Account, error) {
	return updateSealed(ctx, s.accounts, encodeID(string(id)), "account", fn, s.fields.openAccount, s.fields.sealAccount)
}

// Accounts returns every account, ordered by id: a cross-account read, for
// the checks the service makes when it starts (the embedding model of each
// account's chunks). Names are left out: opening them would need every
// account's key at once.
func (s *AccountStore) Accounts(ctx context.Context) ([]apiary.Account, error) {
	keys, err := s.accounts.Keys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("records: list accounts: %w", err)
	}
	out := make([]apiary.Account, 0, len(keys))
	for _, k := range keys {
		a, _, err := get[apiary.Account](ctx, s.accounts, k, "account")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		a.Name = ""
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b apiary.Account) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out, nil
}
