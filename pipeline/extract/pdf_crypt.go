package extract

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rc4"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"hash"
)

// pdfCrypt decrypts the streams of a PDF encrypted by the standard
// security handler with an empty user password (ISO 32000-2 §7.6.4): the
// common case of a file anyone may open but whose owner restricted
// copying or printing. A file that needs a password to open is refused.
type pdfCrypt struct {
	key []byte
	aes bool // AES-CBC (AESV2, AESV3) rather than RC4
	v5  bool // AESV3: the file key is the object key
	id  bool // the stream filter is Identity: nothing to decrypt
}

// pdfPadding pads passwords (Algorithm 2).
var pdfPadding = []byte("\x28\xbf\x4e\x5e\x4e\x75\x8a\x41\x64\x00\x4e\x56\xff\xfa\x01\x08\x2e\x2e\x00\xb6\xd0\x68\x3e\x80\x2f\x0c\xa9\xfe\x64\x53\x69\x7a")

func newPDFCrypt(f *pdfFile, enc pdfDict) (*pdfCrypt, error) {
	if enc == nil || f.resolve(enc["Filter"]) != pdfName("Standard") {
		return nil, errPDFEncrypted
	}
	v, _ := f.resolve(enc["V"]).(int64)
	r, _ := f.resolve(enc["R"]).(int64)
	o, _ := f.resolve(enc["O"]).(pdfString)
	u, _ := f.resolve(enc["U"]).(pdfString)
	c := &pdfCrypt{}
	if v == 4 || v == 5 {
		cfName, _ := f.resolve(enc["StmF"]).(pdfName)
		if cfName == "Identity" || cfName == "" {
			c.id = true
			return c, nil
		}
		cf := f.resolveDict(f.resolveDict(enc["CF"])[cfName])
		switch f.resolve(cf["CFM"]) {
		case pdfName("AESV2"), pdfName("AESV3"):
			c.aes = true
		case pdfName("V2"):
		default:
			return nil, errPDFEncrypted
		}
	}
	if v == 5 {
		c.v5 = true
		ue, _ := f.resolve(enc["UE"]).(pdfString)
		if len(u) < 48 || len(ue) < 32 {
			return nil, errPDFEncrypted
		}
		hash := func(salt []byte) []byte {
			if r >= 6 {
				return pdfHash2B(nil, salt, nil)
			}
			s := sha256.Sum256(salt)
			return s[:]
		}
		if !bytes.Equal(hash(u[32:40]), u[:32]) {
			return nil, errPDFEncrypted // a user password is needed
		}
		h := hash(u[40:48])
		block, err := aes.NewCipher(h)
		if err != nil {
			return nil, errPDFEncrypted
		}
		c.key = make([]byte, 32)
		cipher.NewCBCDecrypter(block, make([]byte, 16)).CryptBlocks(c.key, ue[:32])
		return c, nil
	}
	if len(o) < 32 {
		return nil, errPDFEncrypted
	}
	n := 5
	if r >= 3 {
		if l, ok := f.resolve(enc["Length"]).(int64); ok && l >= 40 && l <= 128 && l%8 == 0 {
			n = int(l / 8)
		} else {
			n = 16
		}
	}
	p, _ := f.resolve(enc["P"]).(int64)
	var id0 []byte
	if ids := f.resolveArray(f.trailer["ID"]); len(ids) > 0 {
		s, _ := f.resolve(ids[0]).(pdfString)
		id0 = s
	}
	h := md5.New()
	h.Write(pdfPadding)
	h.Write(o[:32])
	_ = binary.Write(h, binary.LittleEndian, uint32(int32(p)))
	h.Write(id0)
	if r >= 4 && f.resolve(enc["EncryptMetadata"]) == false {
		h.Write([]byte{0xff, 0xff, 0xff, 0xff})
	}
	key := h.Sum(nil)
	if r >= 3 {
		for range 50 {
			s := md5.Sum(key[:n])
			key = s[:]
		}
	}
	c.key = key[:n]
	if !c.userPasswordIsEmpty(r, u, id0) {
		return nil, errPDFEncrypted
	}
	return c, nil
}

// userPasswordIsEmpty checks the key against U (Algorithms 4 and 5).
func (c *pdfCrypt) userPasswordIsEmpty(r int64, u, id0 []byte) bool {
	if r == 2 {
		want := make([]byte, 32)
		rc, _ := rc4.NewCipher(c.key)
		rc.XORKeyStream(want, pdfPadding)
		return bytes.Equal(want, u[:min(32, len(u))])
	}
	h := md5.New()
	h.Write(pdfPadding)
	h.Write(id0)
	sum := h.Sum(nil)
	for i := range 20 {
		k := make([]byte, len(c.key))
		for j := range k {
			k[j] = c.key[j] ^ byte(i)
		}
		rc, _ := rc4.NewCipher(k)
		rc.XORKeyStream(sum, sum)
	}
	return len(u) >= 16 && bytes.Equal(sum, u[:16])
}

// pdfHash2B is Algorithm 2.B (ISO 32000-2) for revision 6.
func pdfHash2B(password, salt, udata []byte) []byte {
	h := sha256.Sum256(append(append(append([]byte(nil), password...), salt...), udata...))
	k := h[:]
	for i := 0; ; i++ {
		k1 := bytes.Repeat(append(append(append([]byte(nil), password...), k...), udata...), 64)
		block, _ := aes.NewCipher(k[:16])
		e := make([]byte, len(k1))
		cipher.NewCBCEncrypter(block, k[16:32]).CryptBlocks(e, k1)
		sum := 0
		for _, b := range e[:16] {
			sum += int(b)
		}
		var hf hash.Hash
		switch sum % 3 {
		case 0:
			hf = sha256.New()
		case 1:
			hf = sha512.New384()
		default:
			hf = sha512.New()
		}
		hf.Write(e)
		k = hf.Sum(nil)
		if i >= 63 && int(e[len(e)-1]) <= i-31 {
			return k[:32]
		}
	}
}

// decrypt returns s's data decrypted; data that does not decrypt gives nil.
func (c *pdfCrypt) decrypt(s *pdfStream, data []byte) []byte {
	if c.id || s.dict["Type"] == pdfName("XRef") {
		return data
	}
	key := c.key
	if !c.v5 {
		h := md5.New()
		h.Write(c.key)
		h.Write([]byte{byte(s.num), byte(s.num >> 8), byte(s.num >> 16), byte(s.gen), byte(s.gen >> 8)})
		if c.aes {
			h.Write([]byte("sAlT"))
		}
		key = h.Sum(nil)[:min(len(c.key)+5, 16)]
	}
	if !c.aes {
		out := make([]byte, len(data))
		rc, _ := rc4.NewCipher(key)
		rc.XORKeyStream(out, data)
		return out
	}
	out, err := aesCBCDecrypt(key, data)
	if err != nil {
		return nil
	}
	return out
}

func aesCBCDecrypt(key, data []byte) ([]byte, error) {
	if len(data) < 32 || len(data)%16 != 0 {
		return nil, errors.New("bad AES data")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(data)-16)
	cipher.NewCBCDecrypter(block, data[:16]).CryptBlocks(out, data[16:])
	if pad := int(out[len(out)-1]); pad >= 1 && pad <= 16 {
		out = out[:len(out)-pad]
	}
	return out, nil
}
