package apiary

import (
	"slices"
	"unicode/utf8"
)

// Limits on a document's title and metadata. Both are kept once per
// document, sealed in its record, and come back with every query result
// that shows one of its chunks.
const (
	MaxTitleBytes         = 1 << 10
	MaxMetadataKeys       = 64
	MaxMetadataKeyBytes   = 128
	MaxMetadataValueBytes = 2 << 10
	MaxMetadataBytes      = 16 << 10 // every key and value together
)

// CheckTitle reports, as Invalid, a title longer than MaxTitleBytes; what
// names it in the message ("documents[0].title").
func CheckTitle(what, title string) error {
	if len(title) > MaxTitleBytes {
		return E(KindInvalid, "%s: %d bytes, the limit is %d", what, len(title), MaxTitleBytes)
	}
	return nil
}

// CheckMetadata reports, as Invalid, the first limit md passes (keys taken
// in sorted order); what names md in the message ("documents[0].metadata").
func CheckMetadata(what string, md map[string]string) error {
	if len(md) > MaxMetadataKeys {
		return E(KindInvalid, "%s: at most %d keys, got %d", what, MaxMetadataKeys, len(md))
	}
	keys := make([]string, 0, len(md))
	total := 0
	for k, v := range md {
		keys = append(keys, k)
		total += len(k) + len(v)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if len(k) > MaxMetadataKeyBytes {
			return E(KindInvalid, "%s: key %q… is %d bytes, the limit is %d", what, Truncate(k, 32), len(k), MaxMetadataKeyBytes)
		}
		if v := md[k]; len(v) > MaxMetadataValueBytes {
			return E(KindInvalid, "%s[%q]: value is %d bytes, the limit is %d", what, k, len(v), MaxMetadataValueBytes)
		}
	}
	if total > MaxMetadataBytes {
		return E(KindInvalid, "%s: keys and values are %d bytes together, the limit is %d", what, total, MaxMetadataBytes)
	}
	return nil
}

// Truncate returns s cut to at most n bytes on a code point boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
