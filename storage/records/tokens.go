package records

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

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
	stored := t
	if err := s.fields.sealToken(ctx, &stored); err != nil {
		return err
	}
	if err := create(ctx, s.tokens, t.Hash, "token", stored); err != nil {
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
			if t.Role == apiary.RoleAdmin && !slices.Contains(set.Admins, t.ID) {
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

// TokenByHash returns the token whose hex SHA-256 is hash, without its
// name: authentication needs none, so it never waits on the account's key
// to open it (Tokens lists names).
func (s *AccountStore) TokenByHash(ctx context.Context, hash string) (apiary.Token, error) {
	t, _, err := get[apiary.Token](ctx, s.tokens, hash, "token")
	if err != nil {
		return t, err
	}
	t.Hash = hash // not serialized
	t.Name = ""
	return t, nil
}

// Tokens lists account's token records (without secrets), oldest first. A
// rotated token has one record per secret still valid, all with its id: the
// current one and those Replaced but in their grace period.
func (s *AccountStore) Tokens(ctx context.Context, account apiary.AccountID) ([]apiary.Token, error) {
	out, err := s.sealedTokens(ctx, account)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if err := s.fields.openToken(ctx, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sealedTokens is Tokens with the names left sealed: it needs no key of the
// account, so it answers after the account's key is erased.
func (s *AccountStore) sealedTokens(ctx context.Context, account apiary.AccountID) ([]apiary.Token, error) {
	return s.sealedTokensOf(ctx, []apiary.AccountID{account})
}

// sealedTokensOf lists the token records of accounts, sealed, in one pass
// over the tokens.
func (s *AccountStore) sealedTokensOf(ctx context.Context, accounts []apiary.AccountID) ([]apiary.Token, error) {
	keys, err := s.tokens.Keys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("records: list tokens: %w", err)
	}
	of := make(map[apiary.AccountID]bool, len(accounts))
	for _, a := range accounts {
		of[a] = true
	}
	var out []apiary.Token
	for _, k := range keys {
		t, _, err := get[apiary.Token](ctx, s.tokens, k, "token")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !of[t.Account] {
			continue
		}
		t.Hash = k
		out = append(out, t)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// currentToken finds account's token id: its current (not Replaced) record,
// and every record of it.
func (s *AccountStore) currentToken(ctx context.Context, account apiary.AccountID, id apiary.TokenID) (apiary.Token, []apiary.Token, error) {
	toks, err := s.Tokens(ctx, account)
	if err != nil {
		return apiary.Token{}, nil, err
	}
	var cur *apiary.Token
	var all []apiary.Token
	for _, t := range toks {
		if t.ID != id {
			continue
		}
		all = append(all, t)
		if !t.Replaced {
			cur = &t
		}
	}
	if cur == nil {
		return apiary.Token{}, nil, apiary.E(apiary.KindNotFound, "no such token")
	}
	return *cur, all, nil
}

// errRotatedMeanwhile refuses the second of two rotations of one token at
// once: each would leave a secret of its own.
var errRotatedMeanwhile = apiary.E(apiary.KindConflict, "the token was rotated or deleted at the same time; list the tokens and rotate again if needed")

// RotateToken gives account's token next.ID a new secret: it stores next
// (the same id, keyed by the new hash) and marks the current secret's record
// Replaced, valid until graceUntil (or its own earlier expiry); a graceUntil
// not after now deletes it at once. Earlier rotations' secrets end now: a
// token has at most one old secret working, and "grace 0s" leaves none. The token keeps its id, so its place in
// the admin set does not change. NotFound when the account has no such
// token; Conflict when it was rotated at the same time (the mark is a
// compare-and-swap: one rotation wins, the other's secret is withdrawn).
func (s *AccountStore) RotateToken(ctx context.Context, account apiary.AccountID, next apiary.Token, now, graceUntil time.Time) error {
	if next.Hash == "" || next.Account != account {
		return apiary.E(apiary.KindInvalid, "the rotated token needs a hash and the same account")
	}
	cur, all, err := s.currentToken(ctx, account, next.ID)
	if err != nil {
		return err
	}
	stored := next
	if err := s.fields.sealToken(ctx, &stored); err != nil {
		return err
	}
	if err := create(ctx, s.tokens, next.Hash, "token", stored); err != nil {
		return err
	}
	_, err = update(ctx, s.tokens, cur.Hash, "token", func(t *apiary.Token) error {
		if t.Replaced {
			return errRotatedMeanwhile
		}
		t.Replaced = true
		if t.ExpiresAt == nil || graceUntil.Before(*t.ExpiresAt) {
			t.ExpiresAt = &graceUntil
		}
		return nil
	})
	if errors.Is(err, apiary.ErrNotFound) {
		err = errRotatedMeanwhile // deleted meanwhile
	}
	if err != nil {
		if derr := s.tokens.Delete(ctx, next.Hash); derr != nil {
			return fmt.Errorf("records: withdraw rotated token: %w", errors.Join(err, derr))
		}
		return err
	}
	if !graceUntil.After(now) {
		if err := s.tokens.Delete(ctx, cur.Hash); err != nil {
			return fmt.Errorf("records: delete rotated token: %w", err)
		}
	}
	for _, t := range all { // earlier rotations' secrets: only the one just replaced keeps a grace
		if t.Replaced {
			if err := s.tokens.Delete(ctx, t.Hash); err != nil {
				return fmt.Errorf("records: delete earlier token secret: %w", err)
			}
		}
	}
	return nil
}

// tokenUse is when a token last authenticated. It is kept apart from the
// token record, which authentication reads on every request and which
// changes only when the token is made, rotated or revoked.
type tokenUse struct {
	At time.Time `json:"at"`
}

func tokenUseKey(account apiary.AccountID, id apiary.TokenID) string {
	return scopedKey(account, string(id))
}

// TouchToken records that account's token id authenticated at now, unless
// a use less than every before is recorded: at most one write per token
// per every, however many processes serve it.
func (s *AccountStore) TouchToken(ctx context.Context, account apiary.AccountID, id apiary.TokenID, now time.Time, every time.Duration) error {
	key, use := tokenUseKey(account, id), tokenUse{At: now.UTC().Truncate(time.Second)}
	for {
		_, err := update(ctx, s.uses, key, "token use", func(u *tokenUse) error {
			if now.Sub(u.At) < every {
				return ErrNoChange
			}
			*u = use
			return nil
		})
		if !errors.Is(err, apiary.ErrNotFound) {
			return err
		}
		if err := create(ctx, s.uses, key, "token use", use); !errors.Is(err, apiary.ErrConflict) {
			return err
		}
	}
}

// TokenUses returns when each of account's tokens last authenticated;
// a token never used is absent.
func (s *AccountStore) TokenUses(ctx context.Context, account apiary.AccountID) (map[apiary.TokenID]time.Time, error) {
	ids, err := scopedIDs(ctx, s.uses, account, "", false)
	if err != nil {
		return nil, err
	}
	out := make(map[apiary.TokenID]time.Time, len(ids))
	for _, id := range ids {
		u, _, err := get[tokenUse](ctx, s.uses, tokenUseKey(account, apiary.TokenID(id)), "token use")
		if errors.Is(err, apiary.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[apiary.TokenID(id)] = u.At
	}
	return out, nil
}

// DeleteToken revokes account's token id; NotFound when account has no such
// token, ErrLastAdmin (Conflict) when it is the account's last admin token.
func (s *AccountStore) DeleteToken(ctx context.Context, account apiary.AccountID, id apiary.TokenID) error {
	cur, all, err := s.currentToken(ctx, account, id)
	if err != nil {
		return err
	}
	if cur.Role == apiary.RoleAdmin {
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
	// Every secret of it, a rotation's replaced ones too, and again for one
	// a concurrent rotation stored after the listing (that rotation then
	// finds its current record gone and withdraws its own, or it marked it
	// before and its record is in the next listing).
	for range 3 {
		if len(all) == 0 {
			break
		}
		for _, t := range all {
			if err := s.tokens.Delete(ctx, t.Hash); err != nil {
				return fmt.Errorf("records: delete token: %w", err)
			}
		}
		toks, err := s.Tokens(ctx, account)
		if err != nil {
			return err
		}
		all = slices.DeleteFunc(toks, func(t apiary.Token) bool { return t.ID != id })
	}
	if err := s.uses.Delete(ctx, tokenUseKey(account, id)); err != nil && !errors.Is(err, apiary.ErrNotFound) {
		return fmt.Errorf("records: delete token use: %w", err)
	}
	return nil
}
