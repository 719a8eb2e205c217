package milvus

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/apiaryhq/apiary"
)

// scope is the part of the data a call may touch. Every expression sent to
// Milvus (Search, Count, Scan, DeleteDocument) is built from one by filter, so the
// account clause cannot be forgotten by a method.
type scope struct {
	account apiary.AccountID
	// document, when set, narrows to one document's chunks.
	document apiary.DocumentID
	// olderThan, when non-zero, narrows to the document's versions below it.
	olderThan uint64
	// model, when set, narrows to chunks embedded by that model.
	model string
	// after, when set, narrows to chunk ids above it (Scan's pages).
	after apiary.ChunkID
}

// filter validates s and returns its boolean expression. The account clause
// always comes first; string values are quoted by quote, so no id can end
// the literal it sits in.
func (s scope) filter() (string, error) {
	if err := s.account.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(fieldAccount + " == " + quote(string(s.account)))
	if s.document != "" {
		if err := s.document.Validate(); err != nil {
			return "", err
		}
		b.WriteString(" && " + fieldDocument + " == " + quote(string(s.document)))
	}
	if s.olderThan != 0 {
		if s.document == "" {
			return "", apiary.E(apiary.KindInvalid, "a version filter needs a document")
		}
		v, err := version(s.olderThan)
		if err != nil {
			return "", err
		}
		b.WriteString(" && " + fieldVersion + " < " + strconv.FormatInt(v, 10))
	}
	if s.model != "" {
		b.WriteString(" && " + fieldModel + " == " + quote(s.model))
	}
	if s.after != "" {
		// The primary key orders the account's rows by chunk id.
		b.WriteString(" && " + fieldID + " > " + quote(primaryKey(s.account, s.after)))
	}
	return b.String(), nil
}

// quote returns s as a double-quoted Milvus string literal: backslash and
// double quote are escaped, control characters spelled as \uXXXX, anything
// else (including single quotes and non-ASCII text) kept as is.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
