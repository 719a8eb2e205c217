package storage

// ValidName reports whether s is a usable bucket name: one or more of
// A-Z, a-z, 0-9, '_' and '-'.
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ValidKey reports whether key is tokens of [A-Za-z0-9_=-] joined by '.',
// the key form every KV adapter accepts.
func ValidKey(key string) bool {
	return key != "" && ValidKeyPrefix(key) && key[len(key)-1] != '.'
}

// ValidKeyPrefix is ValidKey, except that "" and a trailing '.' are allowed.
func ValidKeyPrefix(p string) bool {
	prev := byte('.') // an empty first token is refused
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '.' && prev == '.':
			return false
		case c != '.' && !nameByte(c) && c != '=':
			return false
		}
		prev = c
	}
	return true
}
