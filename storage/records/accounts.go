package records

import (
	"context"
	"fmt"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// AccountStore keeps accounts and their tokens, with each account's admin
// set (tokens.go).
type AccountStore struct {
	accounts, tokens storage.KV
	admins           storage.KV // tokens.go
}

// CreateAccount stores a new account; Conflict if the id is taken.
func (s *AccountStore) CreateAccount(ctx context.Context, a apiary.Account) error {
	if err := a.ID.Validate(); err != nil {
		return err
	}
	return create(ctx, s.accounts, encodeID(string(a.ID)), "account", a)
}

// Account returns the account with id.
func (s *AccountStore) Account(ctx context.Context, id apiary.AccountID) (apiary.Account, error) {
	a, _, err := get[apiary.Account](ctx, s.accounts, encodeID(string(id)), "account")
	return a, err
}

// HasAccounts reports whether any account exists (bootstrap runs when none does).
func (s *AccountStore) HasAccounts(ctx context.Context) (bool, error) {
	keys, err := s.accounts.Keys(ctx, "")
	if err != nil {
		return false, fmt.Errorf("records: list accounts: %w", err)
	}
	return len(keys) > 0, nil
}
