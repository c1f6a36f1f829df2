package analyze

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/timearg"
)

// Filter is a compiled --where expression.
//
// Grammar: expr = term { "or" term }; term = factor { "and" factor };
// factor = "not" factor | "(" expr ")" | FIELD OP VALUE, with OP one of
// = != > >= < <= ~ (regular expression) !~. Status values may be classes
// (status=4xx); durations take units (request_time>1.5s) or seconds; time
// takes RFC 3339 or a duration ago (time>=2h); VALUE may be quoted.
type Filter struct {
	src    string
	eval   func(r *accesslog.Record, scratch []byte) bool
	extras []string // non-built-in fields it reads, to warn about typos
}

// Match reports whether r passes the filter; scratch is a reusable buffer.
func (f *Filter) Match(r *accesslog.Record, scratch []byte) bool { return f.eval(r, scratch[:0]) }

// String returns the expression as given.
func (f *Filter) String() string { return f.src }

// CompileFilter parses a --where expression; now and loc resolve relative
// and zone-less times.
func CompileFilter(expr string, now time.Time, loc *time.Location) (*Filter, error) {
	toks, err := lexWhere(expr)
	if err != nil {
		return nil, fmt.Errorf("--where %q: %w", expr, err)
	}
	p := &whereParser{toks: toks, now: now, loc: loc}
	ev, err := p.expr()
	if err == nil && p.pos < len(p.toks) {
		err = fmt.Errorf("unexpected %q", p.toks[p.pos].text)
	}
	if err != nil {
		return nil, fmt.Errorf("--where %q: %w (example: --where 'status>=500 and path~^/api/')", expr, err)
	}
	return &Filter{src: expr, eval: ev, extras: p.extras}, nil
}

type tokKind uint8

const (
	tWord tokKind = iota
	tOp
	tLParen
	tRParen
)

type token struct {
	kind   tokKind
	text   string
	quoted bool
}

func lexWhere(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(':
			toks = append(toks, token{kind: tLParen, text: "("})
			i++
		case c == ')':
			toks = append(toks, token{kind: tRParen, text: ")"})
			i++
		case c == '"' || c == '\'':
			j := i + 1
			var b strings.Builder
			for j < len(s) && s[j] != c {
				if s[j] == '\\' && j+1 < len(s) && s[j+1] == c {
					j++
				}
				b.WriteByte(s[j])
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated %c", c)
			}
			toks = append(toks, token{kind: tWord, text: b.String(), quoted: true})
			i = j + 1
		case strings.IndexByte("=!<>~", c) >= 0:
			j := i + 1
			for j < len(s) && strings.IndexByte("=<>~", s[j]) >= 0 && j-i < 2 {
				j++
			}
			toks = append(toks, token{kind: tOp, text: s[i:j]})
			i = j
			// The value after an operator runs to the next space, so that
			// regular expressions need no quoting (path~^/api/(v1|v2)/);
			// closing parentheses that do not belong to it end it.
			if i < len(s) && s[i] != ' ' && s[i] != '"' && s[i] != '\'' {
				j = i
				depth := 0
				for j < len(s) && s[j] != ' ' && s[j] != '\t' {
					if s[j] == '(' {
						depth++
					} else if s[j] == ')' {
						if depth == 0 {
							break
						}
						depth--
					}
					j++
				}
				toks = append(toks, token{kind: tWord, text: s[i:j]})
				i = j
			}
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\n()=!<>~\"'", s[j]) < 0 {
				j++
			}
			toks = append(toks, token{kind: tWord, text: s[i:j]})
			i = j
		}
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("empty expression")
	}
	return toks, nil
}

type pred = func(r *accesslog.Record, scratch []byte) bool

type whereParser struct {
	extras []string
	toks   []token
	pos    int
	now    time.Time
	loc    *time.Location
}

func (p *whereParser) peekWord(w string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].kind == tWord && !p.toks[p.pos].quoted && strings.EqualFold(p.toks[p.pos].text, w)
}

func (p *whereParser) expr() (pred, error) {
	l, err := p.term()
	if err != nil {
		return nil, err
	}
	for p.peekWord("or") || p.peekOp("||") {
		p.pos++
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(rec *accesslog.Record, s []byte) bool { return a(rec, s) || b(rec, s) }
	}
	return l, nil
}

func (p *whereParser) peekOp(op string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].kind == tOp && p.toks[p.pos].text == op
}

func (p *whereParser) term() (pred, error) {
	l, err := p.factor()
	if err != nil {
		return nil, err
	}
	for p.peekWord("and") {
		p.pos++
		r, err := p.factor()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(rec *accesslog.Record, s []byte) bool { return a(rec, s) && b(rec, s) }
	}
	return l, nil
}

func (p *whereParser) factor() (pred, error) {
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("expression ends too early")
	}
	if p.peekWord("not") || p.peekOp("!") {
		p.pos++
		f, err := p.factor()
		if err != nil {
			return nil, err
		}
		return func(r *accesslog.Record, s []byte) bool { return !f(r, s) }, nil
	}
	if p.toks[p.pos].kind == tLParen {
		p.pos++
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos].kind != tRParen {
			return nil, fmt.Errorf("missing )")
		}
		p.pos++
		return e, nil
	}
	if p.pos+2 >= len(p.toks) {
		return nil, fmt.Errorf("want FIELD OP VALUE near %q", p.toks[p.pos].text)
	}
	name, op, val := p.toks[p.pos], p.toks[p.pos+1], p.toks[p.pos+2]
	if name.kind != tWord || op.kind != tOp || val.kind != tWord {
		return nil, fmt.Errorf("want FIELD OP VALUE near %q", name.text)
	}
	p.pos += 3
	return p.comparison(name.text, op.text, val.text)
}

func (p *whereParser) comparison(name, op, val string) (pred, error) {
	f, err := lookupField(name)
	if err != nil {
		return nil, err
	}
	if f.extra {
		p.extras = append(p.extras, f.name)
	}
	switch op {
	case "==":
		op = "="
	case "=~":
		op = "~"
	}
	switch op {
	case "~", "!~":
		re, err := regexp.Compile(val)
		if err != nil {
			return nil, fmt.Errorf("regular expression %q: %w", val, err)
		}
		neg := op == "!~"
		get := f.str
		return func(r *accesslog.Record, s []byte) bool {
			v, _ := get(r, s)
			return re.MatchString(v) != neg
		}, nil
	case "=", "!=", ">", ">=", "<", "<=":
	default:
		return nil, fmt.Errorf("unknown operator %q (use = != > >= < <= ~ !~)", op)
	}
	// Status classes: status=5xx, upstream_status!=2xx.
	if f.kind == kindNumber && len(val) == 3 && (val[1] == 'x' || val[1] == 'X') && (val[2] == 'x' || val[2] == 'X') && val[0] >= '1' && val[0] <= '5' {
		if op != "=" && op != "!=" {
			return nil, fmt.Errorf("a status class (%s) takes = or !=", val)
		}
		lo := float64(val[0]-'0') * 100
		neg := op == "!="
		get := f.num
		return func(r *accesslog.Record, _ []byte) bool {
			v, ok := get(r)
			return (ok && v >= lo && v < lo+100) != neg
		}, nil
	}
	var want float64
	isNum := false
	switch f.kind {
	case kindTime:
		t, err := timearg.Parse(val, p.now, p.loc)
		if err != nil {
			return nil, err
		}
		want, isNum = float64(t.UnixNano())/1e9, true
	case kindNumber:
		n, err := parseNumber(val)
		if err != nil {
			return nil, fmt.Errorf("%s %s %q: %w", f.name, op, val, err)
		}
		want, isNum = n, true
	default:
		// An extra field compares as a number when the value is one
		// (request_length>10000), else as text.
		if n, err := parseNumber(val); err == nil && f.num != nil && op != "=" && op != "!=" {
			want, isNum = n, true
		}
	}
	if isNum {
		get := f.num
		cmp := numCmp(op)
		return func(r *accesslog.Record, _ []byte) bool {
			v, ok := get(r)
			if !ok {
				return op == "!="
			}
			return cmp(v, want)
		}, nil
	}
	get := f.str
	switch op {
	case "=":
		return func(r *accesslog.Record, s []byte) bool { v, _ := get(r, s); return v == val }, nil
	case "!=":
		return func(r *accesslog.Record, s []byte) bool { v, _ := get(r, s); return v != val }, nil
	}
	return nil, fmt.Errorf("%s is text: compare it with = != ~ !~, not %s", f.name, op)
}

func numCmp(op string) func(a, b float64) bool {
	switch op {
	case "=":
		return func(a, b float64) bool { return a == b }
	case "!=":
		return func(a, b float64) bool { return a != b }
	case ">":
		return func(a, b float64) bool { return a > b }
	case ">=":
		return func(a, b float64) bool { return a >= b }
	case "<":
		return func(a, b float64) bool { return a < b }
	}
	return func(a, b float64) bool { return a <= b }
}

// parseNumber reads 42, 1.5, a duration (250ms, 1.5s → seconds) or a size
// (10k, 5M, 1G → bytes).
func parseNumber(s string) (float64, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return n, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d.Seconds(), nil
	}
	if len(s) > 1 {
		mult := map[byte]float64{'k': 1 << 10, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}[s[len(s)-1]]
		if mult != 0 {
			if n, err := strconv.ParseFloat(s[:len(s)-1], 64); err == nil {
				return n * mult, nil
			}
		}
	}
	return 0, fmt.Errorf("not a number, duration (250ms) or size (10k)")
}
