package eval

// Stem returns the Porter stem of a lower-case word, as Martin Porter's
// reference implementation (porter.c, the one Lucene's PorterStemFilter
// follows) computes it, with its two departures from the 1980 paper:
// "bli" → "ble" in step 2 (not "abli" → "able") and "logi" → "log".
// Words of one or two letters, and words with anything but a to z, are
// returned unchanged.
func Stem(word string) string {
	if len(word) <= 2 {
		return word
	}
	for i := 0; i < len(word); i++ {
		if word[i] < 'a' || word[i] > 'z' {
			return word
		}
	}
	s := &stemmer{b: []byte(word), k: len(word) - 1}
	s.step1ab()
	if s.k > 0 {
		s.step1c()
		s.step2()
		s.step3()
		s.step4()
		s.step5()
	}
	return string(s.b[:s.k+1])
}

// stemmer is porter.c's state: the word is b[0..k]; j marks the end of the
// stem before a suffix that ends matched.
type stemmer struct {
	b    []byte
	k, j int
}

// cons tells whether b[i] is a consonant: not a, e, i, o or u, and a y only
// at the start or after a vowel.
func (s *stemmer) cons(i int) bool {
	switch s.b[i] {
	case 'a', 'e', 'i', 'o', 'u':
		return false
	case 'y':
		return i == 0 || !s.cons(i-1)
	}
	return true
}

// m counts the vowel-consonant sequences in b[0..j]: [C](VC)^m[V].
func (s *stemmer) m() int {
	n, i := 0, 0
	for ; ; i++ {
		if i > s.j {
			return n
		}
		if !s.cons(i) {
			break
		}
	}
	i++
	for {
		for ; ; i++ {
			if i > s.j {
				return n
			}
			if s.cons(i) {
				break
			}
		}
		i++
		n++
		for ; ; i++ {
			if i > s.j {
				return n
			}
			if !s.cons(i) {
				break
			}
		}
		i++
	}
}

// vowelInStem tells whether b[0..j] has a vowel.
func (s *stemmer) vowelInStem() bool {
	for i := 0; i <= s.j; i++ {
		if !s.cons(i) {
			return true
		}
	}
	return false
}

// doublec tells whether b[j-1..j] is a double consonant.
func (s *stemmer) doublec(j int) bool {
	return j >= 1 && s.b[j] == s.b[j-1] && s.cons(j)
}

// cvc tells whether b[i-2..i] is consonant-vowel-consonant with the last
// not w, x or y: where a short word gets its e back (hop → hope).
func (s *stemmer) cvc(i int) bool {
	if i < 2 || !s.cons(i) || s.cons(i-1) || !s.cons(i-2) {
		return false
	}
	c := s.b[i]
	return c != 'w' && c != 'x' && c != 'y'
}

// ends tells whether b[0..k] ends with suffix, and then sets j before it.
func (s *stemmer) ends(suffix string) bool {
	n := len(suffix)
	if n > s.k+1 || string(s.b[s.k+1-n:s.k+1]) != suffix {
		return false
	}
	s.j = s.k - n
	return true
}

// setTo replaces b[j+1..k] with r.
func (s *stemmer) setTo(r string) {
	s.b = append(s.b[:s.j+1], r...)
	s.k = s.j + len(r)
}

// r replaces the suffix with rep when the stem has m() > 0.
func (s *stemmer) r(rep string) {
	if s.m() > 0 {
		s.setTo(rep)
	}
}

// step1ab removes plurals and -ed or -ing.
func (s *stemmer) step1ab() {
	if s.b[s.k] == 's' {
		switch {
		case s.ends("sses"):
			s.k -= 2
		case s.ends("ies"):
			s.setTo("i")
		case s.b[s.k-1] != 's':
			s.k--
		}
	}
	if s.ends("eed") {
		if s.m() > 0 {
			s.k--
		}
		return
	}
	if (s.ends("ed") || s.ends("ing")) && s.vowelInStem() {
		s.k = s.j
		switch {
		case s.ends("at"):
			s.setTo("ate")
		case s.ends("bl"):
			s.setTo("ble")
		case s.ends("iz"):
			s.setTo("ize")
		case s.doublec(s.k):
			s.k--
			if c := s.b[s.k]; c == 'l' || c == 's' || c == 'z' {
				s.k++
			}
		case s.m() == 1 && s.cvc(s.k):
			s.setTo("e")
		}
	}
}

// step1c turns a final y into i when there is another vowel in the stem.
func (s *stemmer) step1c() {
	if s.ends("y") && s.vowelInStem() {
		s.b[s.k] = 'i'
	}
}

// replacement is one suffix rule of steps 2 and 3.
type replacement struct{ suffix, with string }

// step2Rules and step3Rules are keyed by the suffix's letter that the step
// switches on (the penultimate letter for step 2, the last for step 3).
var (
	step2Rules = map[byte][]replacement{
		'a': {{"ational", "ate"}, {"tional", "tion"}},
		'c': {{"enci", "ence"}, {"anci", "ance"}},
		'e': {{"izer", "ize"}},
		'l': {{"bli", "ble"}, {"alli", "al"}, {"entli", "ent"}, {"eli", "e"}, {"ousli", "ous"}},
		'o': {{"ization", "ize"}, {"ation", "ate"}, {"ator", "ate"}},
		's': {{"alism", "al"}, {"iveness", "ive"}, {"fulness", "ful"}, {"ousness", "ous"}},
		't': {{"aliti", "al"}, {"iviti", "ive"}, {"biliti", "ble"}},
		'g': {{"logi", "log"}},
	}
	step3Rules = map[byte][]replacement{
		'e': {{"icate", "ic"}, {"ative", ""}, {"alize", "al"}},
		'i': {{"iciti", "ic"}},
		'l': {{"ical", "ic"}, {"ful", ""}},
		's': {{"ness", ""}},
	}
	step4Suffixes = map[byte][]string{
		'a': {"al"},
		'c': {"ance", "ence"},
		'e': {"er"},
		'i': {"ic"},
		'l': {"able", "ible"},
		'n': {"ant", "ement", "ment", "ent"},
		's': {"ism"},
		't': {"ate", "iti"},
		'u': {"ous"},
		'v': {"ive"},
		'z': {"ize"},
	}
)

// replaceFirst applies the first rule whose suffix ends the word.
func (s *stemmer) replaceFirst(rules []replacement) {
	for _, r := range rules {
		if s.ends(r.suffix) {
			s.r(r.with)
			return
		}
	}
}

// step2 maps double suffixes to single ones (-ization → -ize).
func (s *stemmer) step2() { s.replaceFirst(step2Rules[s.b[s.k-1]]) }

// step3 deals with -ic-, -full, -ness and the like.
func (s *stemmer) step3() { s.replaceFirst(step3Rules[s.b[s.k]]) }

// step4 removes -ant, -ence and the like when the stem has m() > 1.
func (s *stemmer) step4() {
	matched := false
	if s.b[s.k-1] == 'o' {
		// -ion after s or t, and -ou (as in -ous).
		matched = s.ends("ion") && s.j >= 0 && (s.b[s.j] == 's' || s.b[s.j] == 't') || s.ends("ou")
	} else {
		for _, suf := range step4Suffixes[s.b[s.k-1]] {
			if s.ends(suf) {
				matched = true
				break
			}
		}
	}
	if matched && s.m() > 1 {
		s.k = s.j
	}
}

// step5 removes a final -e when the stem has m() > 1 (or m() = 1 and it is
// not cvc), and turns -ll into -l when m() > 1.
func (s *stemmer) step5() {
	s.j = s.k
	if s.b[s.k] == 'e' {
		if a := s.m(); a > 1 || a == 1 && !s.cvc(s.k-1) {
			s.k--
		}
	}
	if s.b[s.k] == 'l' && s.doublec(s.k) && s.m() > 1 {
		s.k--
	}
}
