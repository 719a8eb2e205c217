package connectors

import (
	"encoding/base64"
	"encoding/json"
	"hash/fnv"
	"strings"
)

// Hash identifies s in a connector's cursors: its location and its picked
// items, so that a cursor of another source or pick list is refused.
func (s Source) Hash() uint64 {
	h := fnv.New64a()
	h.Write([]byte(strings.TrimSpace(s.Location)))
	for _, id := range s.Items {
		h.Write([]byte{0})
		h.Write([]byte(id))
	}
	return h.Sum64()
}

// EncodeCursor is a cursor holding state: its JSON in URL-safe base64.
// The caller (a connector) keeps in state only what it checks again when
// the cursor comes back: a cursor is the caller's input.
func EncodeCursor(state any) Cursor {
	b, _ := json.Marshal(state)
	return Cursor(base64.RawURLEncoding.EncodeToString(b))
}

// DecodeCursor reads into state a cursor EncodeCursor made; false when c
// is not one. The connector then validates every field it holds.
func DecodeCursor(c Cursor, state any) bool {
	b, err := base64.RawURLEncoding.DecodeString(string(c))
	return err == nil && json.Unmarshal(b, state) == nil
}
