package records

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/apiaryhq/apiary"
)

// Tokens are keyed by their hash (authentication looks them up by it).
// Beside them, each account has one admin set record: the ids of its admin
// tokens. Every admin token's creation adds to it and every deletion takes
// from it by compare-and-swap, refusing to take the last one, so that two
// admins revoking each other at once leave one of them.
//
// A token record is created before its id joins the set and leaves the set
// before its record is deleted: a crash in between leaves the set counting
// fewer admins than exist, which can refuse a deletion but never lock an
// account out.

// ErrLastAdmin refuses the deletion of an account's last admin token.
var ErrLastAdmin = apiary.E(apiary.KindConflict, "this is the account's last admin token; create another admin token before deleting it")

type adminSet struct {
	Admins []apiary.TokenID `json:"admins"`
}

func adminSetKey(account apiary.AccountID) string { return scopedKey(account, "admins") }

// CreateToken stores a token record, keyed by its hash.
func (s *AccountStore) CreateToken(ctx context.Context, t apiary.Token) error {
	if t.Hash == "" {
		return apiary.E(apiary.KindInvalid, "token hash is required")
	}
	if err := create(ctx, s.tokens, t.Hash, "token", t); err != nil {
		return err
	}
	if t.Role != apiary.RoleAdmin {
		return nil
	}
	return s.updateAdmins(ctx, t.Account, func(set *adminSet) error {
		if slices.Contains(set.Admins, t.ID) {
			return ErrNoChange
		}
		set.Admins = append(set.Admins, t.ID)
		return nil
	})
}

// updateAdmins is the compare-and-swap of account's admin set. A set that
// does not exist yet (an account from before the set was kept) is made
// from the account's admin tokens first.
func (s *AccountStore) updateAdmins(ctx context.Context, account apiary.AccountID, fn func(*adminSet) error) error {
	key := adminSetKey(account)
	for {
		_, err := update(ctx, s.admins, key, "admin token set", fn)
		if !errors.Is(err, apiary.ErrNotFound) {
			return err
		}
		toks, err := s.Tokens(ctx, account)
		if err != nil {
			return err
		}
		var set adminSet
		for _, t := range toks {
			if t.Role == apiary.RoleAdmin {
				set.Admins = append(set.Admins, t.ID)
			}
		}
		if err := create(ctx, s.admins, key, "admin token set", set); err != nil && !errors.Is(err, apiary.ErrConflict) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// TokenByHash returns the token whose hex SHA-256 is hash.
func (s *AccountStore) TokenByHash(ctx context.Context, hash string) (apiary.Token, error) {
	t, _, err := get[apiary.Token](ctx, s.tokens, hash, "token")
	if err == nil {
		t.Hash = hash // not serialized
	}
	return t, err
}

// Tokens lists account's tokens (without secrets), oldest first.
func (s *AccountStore) Tokens(ctx context.Context, account apiary.AccountID) ([]apiary.Token, error) {
	keys, err := s.tokens.Keys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("records: list tokens: %w", err)
	}
	var out []apiary.Token
	for _, k := range keys {
		t, err := s.TokenByHash(ctx, k)
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if t.Account == account {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteToken revokes account's token id; NotFound when account has no such
// token, ErrLastAdmin (Conflict) when it is the account's last admin token.
func (s *AccountStore) DeleteToken(ctx context.Context, account apiary.AccountID, id apiary.TokenID) error {
	toks, err := s.Tokens(ctx, account)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(toks, func(t apiary.Token) bool { return t.ID == id })
	if i < 0 {
		return apiary.E(apiary.KindNotFound, "no such token")
	}
	if toks[i].Role == apiary.RoleAdmin {
		err := s.updateAdmins(ctx, account, func(set *adminSet) error {
			j := slices.Index(set.Admins, id)
			switch {
			case j < 0:
				return ErrNoChange // not counted (see above): nothing to check
			case len(set.Admins) == 1:
				return ErrLastAdmin
			}
			set.Admins = slices.Delete(set.Admins, j, j+1)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := s.tokens.Delete(ctx, toks[i].Hash); err != nil {
		return fmt.Errorf("records: delete token: %w", err)
	}
	return nil
}
