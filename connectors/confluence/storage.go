package confluence

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/net/html"
)

// Confluence's storage format is XHTML with Confluence's own elements in
// the ac: (macros, links, images, tasks, layouts) and ri: (resource
// identifiers: pages, attachments, users) namespaces, and CDATA sections
// in code macros. StorageToMarkdown reads it with x/net/html's tokenizer,
// which forgives what a strict XML decoder would refuse (undeclared
// prefixes, HTML entities, stray markup), into a small tree of its own
// (the HTML5 tree builder would move or swallow the ac: elements), and
// renders the tree as CommonMark with GitHub tables.

// node is an element, or a text run when tag is "".
type node struct {
	tag  string
	attr map[string]string
	text string
	kids []*node
}

// maxDepth bounds the tree's nesting: deeper elements are flattened into
// their ancestor at that depth, so that a hostile page cannot exhaust the
// stack.
const maxDepth = 64

// maxListDepth bounds the indentation of nested lists: deeper lists are
// written at that depth, so that indentation cannot multiply a page's size.
const maxListDepth = 8

// voids are the HTML elements that never have content, closed or not.
var voids = map[string]bool{"br": true, "hr": true, "img": true, "col": true, "wbr": true, "input": true, "meta": true, "link": true, "area": true, "source": true}

func parseStorage(s string) *node {
	z := html.NewTokenizer(strings.NewReader(s))
	z.AllowCDATA(true)
	root := &node{tag: "#root"}
	stack := []*node{root}
	for {
		tt := z.Next()
		top := stack[len(stack)-1]
		switch tt {
		case html.ErrorToken:
			return root
		case html.TextToken:
			// The tokenizer unescapes CDATA like text; a CDATA section is
			// literal, so its raw bytes are taken instead.
			var text string
			if raw := z.Raw(); bytes.HasPrefix(raw, []byte("<![CDATA[")) {
				text = string(bytes.TrimSuffix(raw[len("<![CDATA["):], []byte("]]>")))
			} else {
				text = string(z.Text())
			}
			text = strings.ReplaceAll(text, "\x00", "\uFFFD") // as HTML reads a NUL
			top.kids = append(top.kids, &node{text: text})
		case html.StartTagToken, html.SelfClosingTagToken:
			name, more := z.TagName()
			n := &node{tag: string(name)}
			for more {
				var k, v []byte
				k, v, more = z.TagAttr()
				if n.attr == nil {
					n.attr = map[string]string{}
				}
				n.attr[string(k)] = string(v)
			}
			stack = implyEnd(stack, n.tag)
			top = stack[len(stack)-1]
			top.kids = append(top.kids, n)
			if tt == html.StartTagToken && !voids[n.tag] && len(stack) < maxDepth {
				stack = append(stack, n)
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			for i := len(stack) - 1; i > 0; i-- {
				if stack[i].tag == string(name) {
					stack = stack[:i]
					break
				}
			}
		}
	}
}

// implyEnd closes, as HTML does, the open element that a start tag of tag
// ends: a paragraph by a block, a list item by the next item of its list,
// a cell or a row by the next one of its table.
func implyEnd(stack []*node, tag string) []*node {
	closeTo := func(open string, barriers ...string) []*node {
		for i := len(stack) - 1; i > 0; i-- {
			switch t := stack[i].tag; {
			case t == open:
				return stack[:i]
			case slices.Contains(barriers, t):
				return stack
			}
		}
		return stack
	}
	switch {
	case tag == "li":
		stack = closeTo("li", "ul", "ol")
	case tag == "td" || tag == "th":
		stack = closeTo("td", "tr", "table")
		stack = closeTo("th", "tr", "table")
	case tag == "tr":
		stack = closeTo("tr", "table")
	}
	if (blockTags[tag] || tag == "div" || tag == "li") && stack[len(stack)-1].tag == "p" {
		stack = stack[:len(stack)-1]
	}
	return stack
}

// StorageToMarkdown renders a page's storage-format body as Markdown:
// headings, paragraphs, nested lists, task lists, tables (GitHub's pipe
// tables, the first row as header), links, code and noformat macros as
// fenced code, info/note/warning/tip/panel macros as block quotes, other
// macros' rich bodies inline in the flow, links to pages and attachments
// as their text, images as their alt text, strong/em/code/strike. Markup it
// does not know passes its text through.
func StorageToMarkdown(storage string) string {
	var r renderer
	out := strings.Join(r.blocks(parseStorage(storage)), "\n\n")
	if out == "" {
		return ""
	}
	return out + "\n"
}

type renderer struct {
	lists int // the depth of the list being rendered
}

func (n *node) get(k string) string { return n.attr[k] }

// child returns n's first child element named tag, or nil.
func (n *node) child(tag string) *node {
	for _, k := range n.kids {
		if k.tag == tag {
			return k
		}
	}
	return nil
}

// param is the value of a macro's ac:parameter named name.
func (n *node) param(name string) string {
	for _, k := range n.kids {
		if k.tag == "ac:parameter" && k.get("ac:name") == name {
			return strings.TrimSpace(k.rawText())
		}
	}
	return ""
}

// rawText is the text under n, as written (CDATA included).
func (n *node) rawText() string {
	var b strings.Builder
	var walk func(*node)
	walk = func(n *node) {
		if n.tag == "" {
			b.WriteString(n.text)
			return
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(n)
	return b.String()
}

var containers = map[string]bool{
	"#root": true, "div": true, "section": true, "article": true, "main": true, "header": true, "footer": true,
	"ac:layout": true, "ac:layout-section": true, "ac:layout-cell": true, "ac:rich-text-body": true,
	"ac:adf-extension": true, "ac:adf-node": true, "ac:adf-content": true, "ac:adf-fallback": true,
	"details": true, "thead": true, "tbody": true,
}

var blockTags = map[string]bool{
	"p": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true,
	"ul": true, "ol": true, "table": true, "blockquote": true, "pre": true, "hr": true,
	"ac:task-list": true, "summary": true,
}

// quoteMacros are the panel macros rendered as block quotes.
var quoteMacros = map[string]bool{"info": true, "note": true, "warning": true, "tip": true, "panel": true, "success": true, "error": true}

func isBlock(n *node) bool {
	if n.tag == "" {
		return false
	}
	if containers[n.tag] || blockTags[n.tag] {
		return true
	}
	if n.tag == "ac:structured-macro" || n.tag == "ac:macro" {
		return n.child("ac:rich-text-body") != nil || n.child("ac:plain-text-body") != nil
	}
	return false
}

// blocks renders n's children as Markdown blocks: runs of inline content
// become paragraphs.
func (r *renderer) blocks(n *node) []string {
	var out []string
	var para []*node
	flush := func() {
		if p := r.paragraph(para); p != "" {
			out = append(out, p)
		}
		para = para[:0]
	}
	for _, k := range n.kids {
		if !isBlock(k) {
			para = append(para, k)
			continue
		}
		flush()
		out = append(out, r.block(k)...)
	}
	flush()
	return out
}

// paragraph renders inline nodes as one paragraph, its whitespace
// collapsed and its line starts escaped.
func (r *renderer) paragraph(ns []*node) string {
	var b strings.Builder
	for _, k := range ns {
		b.WriteString(r.inline(k))
	}
	lines := strings.Split(b.String(), "\n")
	kept := lines[:0]
	for _, l := range lines {
		if l = collapse(l); l != "" {
			kept = append(kept, escapeLineStart(l))
		}
	}
	return strings.Join(kept, "\n")
}

func (r *renderer) block(n *node) []string {
	switch n.tag {
	case "h1", "h2", "h3", "h4", "h5", "h6":
		text := strings.ReplaceAll(r.paragraph(n.kids), "\n", " ")
		if text == "" {
			return nil
		}
		return []string{strings.Repeat("#", int(n.tag[1]-'0')) + " " + text}
	case "p", "summary":
		if p := r.paragraph(n.kids); p != "" {
			return []string{p}
		}
		return nil
	case "ul", "ol":
		if l := r.list(n); l != "" {
			return []string{l}
		}
		return nil
	case "ac:task-list":
		if l := r.tasks(n); l != "" {
			return []string{l}
		}
		return nil
	case "table":
		if t := r.table(n); t != "" {
			return []string{t}
		}
		return nil
	case "blockquote":
		return quote(r.blocks(n))
	case "pre":
		return []string{fence(n.rawText(), "")}
	case "hr":
		return []string{"---"}
	case "ac:structured-macro", "ac:macro":
		return r.macro(n)
	case "ac:adf-extension":
		return r.adf(n)
	}
	return r.blocks(n) // a container
}

func (r *renderer) macro(n *node) []string {
	name := n.get("ac:name")
	switch {
	case name == "code" || name == "noformat":
		body := n.child("ac:plain-text-body")
		if body == nil {
			return nil
		}
		lang := ""
		if name == "code" {
			lang = n.param("language")
		}
		return []string{fence(body.rawText(), lang)}
	case quoteMacros[name]:
		label := n.param("title")
		if label == "" {
			label = strings.ToUpper(name[:1]) + name[1:]
		}
		var inner []string
		if body := n.child("ac:rich-text-body"); body != nil {
			inner = r.blocks(body)
		}
		return quote(append([]string{"**" + escapeText(label) + "**"}, inner...))
	}
	var out []string
	if title := n.param("title"); title != "" && name == "expand" {
		out = append(out, "**"+escapeText(title)+"**")
	}
	if body := n.child("ac:rich-text-body"); body != nil {
		out = append(out, r.blocks(body)...)
	} else if body := n.child("ac:plain-text-body"); body != nil {
		out = append(out, fence(body.rawText(), ""))
	}
	return out
}

// adf renders an ADF node kept in storage (a newer editor's panel or
// decision list): its content, else its fallback, never both.
func (r *renderer) adf(n *node) []string {
	node := n.child("ac:adf-node")
	if node == nil {
		if fb := n.child("ac:adf-fallback"); fb != nil {
			return r.blocks(fb)
		}
		return nil
	}
	content := node.child("ac:adf-content")
	if content == nil {
		content = node
	}
	if node.get("type") == "panel" {
		return quote(r.blocks(content))
	}
	return r.blocks(content)
}

// quote prefixes every line of the blocks with "> ".
func quote(blocks []string) []string {
	if len(blocks) == 0 {
		return nil
	}
	lines := strings.Split(strings.Join(blocks, "\n\n"), "\n")
	for i, l := range lines {
		if l == "" {
			lines[i] = ">"
		} else {
			lines[i] = "> " + l
		}
	}
	return []string{strings.Join(lines, "\n")}
}

// fence renders code in a fence longer than any run of backticks in it.
func fence(code, lang string) string {
	code = strings.TrimRight(strings.TrimPrefix(code, "\n"), "\n ")
	longest := longestRun(code, '`')
	f := strings.Repeat("`", max(3, longest+1))
	lang = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || r == '`' {
			return -1
		}
		return r
	}, lang)
	return f + lang + "\n" + code + "\n" + f
}

// list renders a ul or ol, its items' lines indented under their marker.
func (r *renderer) list(n *node) string {
	ordered := n.tag == "ol"
	num := 1
	if s, err := strconv.Atoi(n.get("start")); err == nil && s >= 0 {
		num = s
	}
	r.lists++
	defer func() { r.lists-- }()
	// Content between items (flattened nesting, stray markup) belongs to
	// the item before it.
	var lis []*node
	for _, k := range n.kids {
		switch {
		case k.tag == "li":
			lis = append(lis, &node{tag: "li", kids: slices.Clone(k.kids)})
		case len(lis) > 0:
			lis[len(lis)-1].kids = append(lis[len(lis)-1].kids, k)
		case k.tag != "" || strings.TrimSpace(k.text) != "":
			lis = append(lis, &node{tag: "li", kids: []*node{k}})
		}
	}
	var items []string
	for _, li := range lis {
		marker := "- "
		if ordered {
			marker = fmt.Sprintf("%d. ", num)
			num++
		}
		items = append(items, indent(marker, r.itemBody(li), r.lists <= maxListDepth))
	}
	return strings.Join(items, "\n")
}

// itemBody renders a list item's blocks, a nested list right under the
// text it belongs to (a tight list).
func (r *renderer) itemBody(li *node) string {
	var b strings.Builder
	for i, part := range r.blocks(li) {
		if i > 0 {
			if isList(part) {
				b.WriteString("\n")
			} else {
				b.WriteString("\n\n")
			}
		}
		b.WriteString(part)
	}
	return b.String()
}

func isList(block string) bool {
	if strings.HasPrefix(block, "- ") {
		return true
	}
	i := strings.IndexFunc(block, func(r rune) bool { return r < '0' || r > '9' })
	return i > 0 && strings.HasPrefix(block[i:], ". ")
}

// indent puts marker before body's first line and, when pad, indents the
// others to its width.
func indent(marker, body string, pad bool) string {
	if !pad {
		return marker + body
	}
	spaces := strings.Repeat(" ", len(marker))
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		switch {
		case i == 0:
			lines[i] = strings.TrimRight(marker+l, " ")
		case l != "":
			lines[i] = spaces + l
		}
	}
	return strings.Join(lines, "\n")
}

func (r *renderer) tasks(n *node) string {
	var items []string
	for _, t := range n.kids {
		if t.tag != "ac:task" {
			continue
		}
		box := "[ ]"
		if s := t.child("ac:task-status"); s != nil && strings.TrimSpace(s.rawText()) == "complete" {
			box = "[x]"
		}
		body := ""
		if b := t.child("ac:task-body"); b != nil {
			body = r.itemBody(b)
		}
		items = append(items, indent("- "+box+" ", body, true))
	}
	return strings.Join(items, "\n")
}

// table renders a table as a pipe table; the first row is its header.
func (r *renderer) table(n *node) string {
	var rows [][]string
	var walk func(*node)
	walk = func(n *node) {
		for _, k := range n.kids {
			switch k.tag {
			case "tr":
				var cells []string
				for _, c := range k.kids {
					if c.tag != "td" && c.tag != "th" {
						continue
					}
					cells = append(cells, r.cell(c))
					if span, err := strconv.Atoi(c.get("colspan")); err == nil {
						for range min(span, 64) - 1 {
							cells = append(cells, "")
						}
					}
				}
				rows = append(rows, cells)
			case "thead", "tbody", "tfoot":
				walk(k)
			}
		}
	}
	walk(n)
	width := 0
	for _, row := range rows {
		width = max(width, len(row))
	}
	if width == 0 {
		return ""
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i := range width {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n")
	}
	line(rows[0])
	sep := make([]string, width)
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// cell renders a table cell on one line: its blocks joined by <br>.
func (r *renderer) cell(c *node) string {
	var parts []string
	for _, p := range r.blocks(c) {
		parts = append(parts, strings.ReplaceAll(p, "\n", " "))
	}
	return strings.ReplaceAll(strings.Join(parts, "<br>"), "|", `\|`)
}

// inline renders n as inline Markdown; "\n" marks a line break.
func (r *renderer) inline(n *node) string {
	if n.tag == "" {
		return escapeText(spaces(n.text))
	}
	switch n.tag {
	case "strong", "b":
		return wrap("**", r.inlines(n))
	case "em", "i":
		return wrap("*", r.inlines(n))
	case "s", "del", "strike":
		return wrap("~~", r.inlines(n))
	case "code", "tt", "kbd":
		return codeSpan(n.rawText())
	case "br":
		return "\n"
	case "a":
		text := r.inlines(n)
		href := n.get("href")
		if !strings.HasPrefix(href, "http://") && !strings.HasPrefix(href, "https://") && !strings.HasPrefix(href, "mailto:") {
			return text
		}
		if strings.TrimSpace(text) == "" {
			text = escapeText(href)
		}
		return "[" + text + "](" + strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29").Replace(href) + ")"
	case "ac:link":
		return r.link(n)
	case "ac:image", "img":
		alt := n.get("ac:alt")
		if alt == "" {
			alt = n.get("alt")
		}
		if alt == "" {
			alt = n.get("ac:title")
		}
		return escapeText(spaces(alt))
	case "ac:emoticon":
		return n.get("ac:emoji-fallback")
	case "time":
		return escapeText(n.get("datetime"))
	case "ac:structured-macro", "ac:macro":
		switch n.get("ac:name") {
		case "status":
			return wrap("**", escapeText(n.param("title")))
		case "jira":
			return escapeText(n.param("key"))
		}
		return ""
	case "ac:parameter", "ac:placeholder", "ac:adf-attribute", "ac:task-id", "ac:task-uuid", "ac:task-status",
		"script", "style", "colgroup", "col":
		return ""
	}
	if isBlock(n) { // a block inside inline content (a list in a cell's text)
		return "\n" + strings.Join(r.block(n), "\n") + "\n"
	}
	return r.inlines(n)
}

func (r *renderer) inlines(n *node) string {
	var b strings.Builder
	for _, k := range n.kids {
		b.WriteString(r.inline(k))
	}
	return b.String()
}

// link renders an ac:link as its text: the link body, else the title or
// file name of what it points to.
func (r *renderer) link(n *node) string {
	if b := n.child("ac:link-body"); b != nil {
		if t := r.inlines(b); strings.TrimSpace(t) != "" {
			return t
		}
	}
	if b := n.child("ac:plain-text-link-body"); b != nil {
		if t := b.rawText(); strings.TrimSpace(t) != "" {
			return escapeText(spaces(t))
		}
	}
	for _, k := range n.kids {
		var t string
		switch k.tag {
		case "ri:page", "ri:blog-post":
			t = k.get("ri:content-title")
		case "ri:attachment":
			t = k.get("ri:filename")
		case "ri:space":
			t = k.get("ri:space-key")
		case "ri:url":
			t = k.get("ri:value")
		}
		if t != "" {
			return escapeText(spaces(t))
		}
	}
	if a := n.get("ac:anchor"); a != "" {
		return escapeText(a)
	}
	return ""
}

// wrap puts marker around text's non-space part, leaving its spaces
// outside (CommonMark needs "**a**", not "** a**").
func wrap(marker, text string) string {
	trimmed := strings.TrimSpace(text)
	if trimmed == "" || strings.Contains(trimmed, "\n") {
		return text
	}
	i := strings.Index(text, trimmed)
	return text[:i] + marker + trimmed + marker + text[i+len(trimmed):]
}

// longestRun is the length of the longest run of c in s.
func longestRun(s string, c rune) int {
	longest, run := 0, 0
	for _, r := range s {
		if r == c {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

func codeSpan(code string) string {
	code = collapse(spaces(code))
	if code == "" {
		return ""
	}
	longest := longestRun(code, '`')
	f := strings.Repeat("`", longest+1)
	if strings.HasPrefix(code, "`") || strings.HasSuffix(code, "`") {
		code = " " + code + " "
	}
	return f + code + f
}

// spaces turns every run of HTML white space (space, tab, line feed, form
// feed, carriage return) into one space, as a browser shows it; a no-break
// space is text, and stays.
func spaces(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, c := range s {
		if strings.ContainsRune(" \t\n\f\r", c) {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(c)
	}
	return b.String()
}

// collapse joins the space runs left where inline pieces meet and trims.
func collapse(s string) string {
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return strings.TrimSpace(s)
}

var textEscaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "`", "\\`", "[", `\[`, "]", `\]`)

// escapeText escapes the characters that would turn text into emphasis,
// code or links. Underscores are left alone: intraword ones are literal in
// CommonMark, and identifiers stay searchable.
func escapeText(s string) string { return textEscaper.Replace(s) }

// escapeLineStart escapes what would make a paragraph's line a heading, a
// quote, a list item or a rule.
func escapeLineStart(l string) string {
	switch {
	case strings.HasPrefix(l, "#"), strings.HasPrefix(l, ">"), strings.HasPrefix(l, "- "), strings.HasPrefix(l, "+ "),
		l == "-", l == "+", strings.HasPrefix(l, "---"), strings.HasPrefix(l, "==="):
		return `\` + l
	}
	if i := strings.IndexFunc(l, func(r rune) bool { return r < '0' || r > '9' }); i > 0 && i <= 9 && (strings.HasPrefix(l[i:], ". ") || strings.HasPrefix(l[i:], ") ") || l[i:] == "." || l[i:] == ")") {
		return l[:i] + `\` + l[i:]
	}
	return l
}
