package awskms

import (
	"bytes"
	"testing"
)

// FuzzSplit: any bytes either are refused or split into a version in
// range, a non-empty blob and a check of checkSize that put back together
// (seal's framing) give the input; never a panic.
func FuzzSplit(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	f.Add(seal(1, key, []byte("blob"), []byte("ctx")))
	f.Add(seal(2, key, []byte("blob"), []byte("ctx")))
	f.Add(seal(maxKeyVersion, key, []byte("b"), nil))
	f.Add([]byte{2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, wrapped []byte) {
		v, blob, sum, ok := split(wrapped)
		if !ok {
			return
		}
		if v < 1 || v > maxKeyVersion || len(blob) == 0 || len(sum) != checkSize {
			t.Fatalf("split(%x) = %d, %x, %x", wrapped, v, blob, sum)
		}
		framed := seal(v, key, blob, nil)
		if !bytes.Equal(framed[:len(framed)-checkSize], wrapped[:len(wrapped)-checkSize]) {
			t.Fatalf("split(%x) does not frame back: version %d", wrapped, v)
		}
	})
}
