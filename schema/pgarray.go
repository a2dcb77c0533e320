package schema

import (
	"bytes"
	"fmt"
)

// appendArrayJSON converts a PostgreSQL array literal ({1,2,NULL},
// {{"a","b"},{"c",NULL}}, [0:1]={1,2}) into nested JSON arrays whose elements
// are converted with the element type. Explicit lower bounds are dropped.
func appendArrayJSON(dst []byte, types Types, t TypeInfo, text []byte) ([]byte, error) {
	if i := bytes.IndexByte(text, '='); i >= 0 && len(text) > 0 && text[0] == '[' {
		text = text[i+1:]
	}
	elem := resolve(types, t.Elem)
	delim := t.Delim
	if delim == 0 {
		delim = ','
	}
	p := arrayParser{src: text, delim: delim, types: types, elem: elem}
	out, err := p.parse(dst)
	if err != nil {
		return dst, fmt.Errorf("array %s: %w", t.Name, err)
	}
	return out, nil
}

type arrayParser struct {
	src   []byte
	pos   int
	delim byte
	types Types
	elem  TypeInfo
	buf   []byte
}

func (p *arrayParser) parse(dst []byte) ([]byte, error) {
	if p.pos >= len(p.src) || p.src[p.pos] != '{' {
		return dst, fmt.Errorf("expected '{' at %d", p.pos)
	}
	p.pos++
	dst = append(dst, '[')
	first := true
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return dst, fmt.Errorf("unterminated array")
		}
		if p.src[p.pos] == '}' {
			p.pos++
			return append(dst, ']'), nil
		}
		if !first {
			if p.src[p.pos] != p.delim {
				return dst, fmt.Errorf("expected %q at %d", p.delim, p.pos)
			}
			p.pos++
			p.skipSpace()
		}
		first = false
		dst = appendSep(dst)
		var err error
		switch {
		case p.pos < len(p.src) && p.src[p.pos] == '{':
			dst, err = p.parse(dst)
		case p.pos < len(p.src) && p.src[p.pos] == '"':
			dst, err = p.quoted(dst)
		default:
			dst, err = p.unquoted(dst)
		}
		if err != nil {
			return dst, err
		}
	}
}

// appendSep adds a comma unless dst ends an opening bracket.
func appendSep(dst []byte) []byte {
	if len(dst) > 0 && dst[len(dst)-1] != '[' {
		return append(dst, ',')
	}
	return dst
}

func (p *arrayParser) skipSpace() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n') {
		p.pos++
	}
}

func (p *arrayParser) quoted(dst []byte) ([]byte, error) {
	p.pos++ // opening quote
	p.buf = p.buf[:0]
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch c {
		case '\\':
			if p.pos+1 >= len(p.src) {
				return dst, fmt.Errorf("truncated escape")
			}
			p.buf = append(p.buf, p.src[p.pos+1])
			p.pos += 2
		case '"':
			p.pos++
			return p.element(dst, p.buf)
		default:
			p.buf = append(p.buf, c)
			p.pos++
		}
	}
	return dst, fmt.Errorf("unterminated quoted element")
}

func (p *arrayParser) unquoted(dst []byte) ([]byte, error) {
	start := p.pos
	for p.pos < len(p.src) && p.src[p.pos] != p.delim && p.src[p.pos] != '}' {
		p.pos++
	}
	raw := bytes.TrimRight(p.src[start:p.pos], " \t\n")
	if len(raw) == 0 {
		return dst, fmt.Errorf("empty element at %d", start)
	}
	if len(raw) == 4 && bytes.EqualFold(raw, []byte("NULL")) {
		return append(dst, "null"...), nil
	}
	return p.element(dst, raw)
}

func (p *arrayParser) element(dst []byte, text []byte) ([]byte, error) {
	if p.elem.Category == 'A' {
		return dst, fmt.Errorf("nested array type")
	}
	return appendScalarJSON(dst, p.elem, text)
}
