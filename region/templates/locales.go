package templates

import (
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	texttemplate "text/template"
	"text/template/parse"

	"golang.org/x/text/feature/plural"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"golang.org/x/text/number"

	"github.com/herald-notify/herald/region/notify"
)

// The functions every field may call, under the rules of the content's locale:
//
//	{{plural .count "one" "# comment" "other" "# comments"}}  the CLDR plural form of .count
//	                                                            ("=0" matches exactly 0); # is
//	                                                            .count formatted for the locale
//	{{number .total}}                                          .total formatted for the locale
func funcsFor(locale string) texttemplate.FuncMap {
	tag := language.Make(locale)
	// A Printer is not safe for concurrent use, and a parsed template is (it is cached): each
	// call makes its own.
	return texttemplate.FuncMap{
		"plural": func(n any, forms ...string) (string, error) { return pluralOf(tag, message.NewPrinter(tag), n, forms) },
		"number": func(n any) (string, error) {
			v, _, err := toNumber(n)
			if err != nil {
				return "", err
			}
			return message.NewPrinter(tag).Sprint(number.Decimal(v)), nil
		},
	}
}

// pluralForms are the CLDR plural categories, as x/text numbers them.
var pluralForms = map[string]plural.Form{"other": plural.Other, "zero": plural.Zero, "one": plural.One, "two": plural.Two, "few": plural.Few, "many": plural.Many}

func pluralOf(tag language.Tag, p *message.Printer, n any, forms []string) (string, error) {
	v, digits, err := toNumber(n)
	if err != nil {
		return "", err
	}
	if len(forms) == 0 || len(forms)%2 != 0 {
		return "", errors.New(`plural takes a number, then pairs of form and text: plural .n "one" "# item" "other" "# items"`)
	}
	pick := -1
	for i := 0; i < len(forms) && pick < 0; i += 2 { // an exact match first: "=0"
		if exact, ok := strings.CutPrefix(forms[i], "="); ok {
			if x, err := strconv.ParseFloat(exact, 64); err == nil && x == v {
				pick = i + 1
			}
		}
	}
	for _, want := range []plural.Form{matchPlural(tag, digits), plural.Other} {
		for i := 0; i < len(forms) && pick < 0; i += 2 {
			if f, ok := pluralForms[forms[i]]; ok && f == want {
				pick = i + 1
			}
		}
	}
	if pick < 0 {
		return "", errors.New(`plural needs an "other" form`)
	}
	return strings.ReplaceAll(forms[pick], "#", p.Sprint(number.Decimal(v))), nil
}

// matchPlural is the CLDR cardinal category of a number by its decimal digits (as written,
// "1.50" has two), from the operands of UTS #35.
func matchPlural(tag language.Tag, digits string) plural.Form {
	intPart, frac, _ := strings.Cut(strings.TrimPrefix(digits, "-"), ".")
	if len(intPart) > 12 {
		// The rules test i modulo powers of ten up to a million: keep those digits, non-zero.
		intPart = "1" + intPart[len(intPart)-12:]
	}
	i, _ := strconv.Atoi(intPart)
	f, t := 0, 0
	if len(frac) > 9 {
		frac = frac[:9]
	}
	if frac != "" {
		f, _ = strconv.Atoi(frac)
		if trimmed := strings.TrimRight(frac, "0"); trimmed != "" {
			t, _ = strconv.Atoi(trimmed)
		}
	}
	return plural.Cardinal.MatchPlural(tag, i, len(frac), len(strings.TrimRight(frac, "0")), f, t)
}

// toNumber reads a template's number: a JSON number (float64 as decoded), a Go integer or a
// decimal string. It returns the value and its decimal digits.
func toNumber(n any) (float64, string, error) {
	switch x := n.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, "", fmt.Errorf("%v is not a number to format", x)
		}
		return x, strconv.FormatFloat(x, 'f', -1, 64), nil
	case int:
		return float64(x), strconv.Itoa(x), nil
	case int64:
		return float64(x), strconv.FormatInt(x, 10), nil
	case json.Number:
		return toNumber(string(x))
	case string:
		v, err := strconv.ParseFloat(x, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || strings.ContainsAny(x, "eExXpP_") {
			return 0, "", fmt.Errorf("%q is not a decimal number", x)
		}
		return v, strings.TrimPrefix(x, "+"), nil
	}
	return 0, "", fmt.Errorf("%v (%T) is not a number", n, n)
}

// formsOf are the plural forms a locale's rules use: required for integers (every one a
// count can take), and possible at all (fractions included).
type formsOf struct{ required, possible map[plural.Form]bool }

var formsCache sync.Map // language.Tag -> formsOf

func localeForms(tag language.Tag) formsOf {
	if f, ok := formsCache.Load(tag); ok {
		return f.(formsOf)
	}
	f := formsOf{required: map[plural.Form]bool{plural.Other: true}, possible: map[plural.Form]bool{plural.Other: true}}
	for i := 0; i <= 1000; i++ {
		form := plural.Cardinal.MatchPlural(tag, i, 0, 0, 0, 0)
		f.required[form], f.possible[form] = true, true
	}
	for _, i := range []int{10000, 100000, 1000000, 10000000} {
		f.possible[plural.Cardinal.MatchPlural(tag, i, 0, 0, 0, 0)] = true
	}
	for i := 0; i <= 30; i++ {
		for _, fr := range []struct{ v, w, f, t int }{{1, 1, 1, 1}, {1, 1, 5, 5}, {2, 2, 25, 25}, {1, 0, 0, 0}, {2, 1, 50, 5}} {
			f.possible[plural.Cardinal.MatchPlural(tag, i, fr.v, fr.w, fr.f, fr.t)] = true
		}
	}
	formsCache.Store(tag, f)
	return f
}

func formNames(set map[plural.Form]bool) string {
	var names []string
	for _, n := range []string{"zero", "one", "two", "few", "many", "other"} {
		if set[pluralForms[n]] {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// path is a variable of a template's data: .a.b is {"a", "b"}.
type path []string

func (p path) String() string { return "." + strings.Join(p, ".") }

// within reports whether data that has every path in used has p: p is one of them or leads to
// one (.a when .a.b is used).
func (p path) within(used []path) bool {
	for _, u := range used {
		if len(p) <= len(u) && slices.Equal(p, u[:len(p)]) {
			return true
		}
	}
	return false
}

// analyse parses one field under locale's rules and returns the parts of the data it reads:
// .a.b, and {{with .a}}{{.b}}{{end}} or {{$a := .a}}{{$a.b}} alike (not the elements of a range,
// which are not named). A plural whose
// form names are not literal CLDR forms of the locale is refused.
func analyse(locale, ch, name, text string) ([]path, error) {
	if err := parseField(locale, ch, name, text); err != nil {
		return nil, err
	}
	tpl, err := texttemplate.New(ch + "." + name).Funcs(funcsFor(locale)).Parse(text)
	if err != nil {
		return nil, err
	}
	a := analysis{tag: language.Make(locale), locale: locale, vars: map[string]path{"$": nil}}
	for _, t := range tpl.Templates() {
		if t.Tree == nil || t.Root == nil {
			continue
		}
		// A {{define}}d template is read as if called with the data ({{template "x" .}}):
		// stricter than it may be, never laxer.
		a.node(t.Root, dataDot)
	}
	return a.refs, a.err
}

// parseField parses a field as it is rendered (html/template for email html).
func parseField(locale, ch, name, text string) error {
	id := ch + "." + name
	if ch == notify.Email && name == "html" {
		_, err := htmltemplate.New(id).Option("missingkey=error").Funcs(funcsFor(locale)).Parse(text)
		return err
	}
	_, err := texttemplate.New(id).Option("missingkey=error").Funcs(funcsFor(locale)).Parse(text)
	return err
}

type analysis struct {
	tag    language.Tag
	locale string
	refs   []path
	err    error
	// vars are the variables known to hold the data or a part of it ($ is the data;
	// {{$p := .post}} makes $p .post), whatever their scope: a stricter reading is safe.
	vars map[string]path
}

// dot is what dot is at a point of a template: the part of the data at p when known (the data
// itself when p is empty), or something else (an element of a range, a function's result).
type dot struct {
	p     path
	known bool
}

var dataDot = dot{known: true}

// node walks a parse tree.
func (a *analysis) node(n parse.Node, d dot) {
	if n == nil || a.err != nil {
		return
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			a.node(c, d)
		}
	case *parse.ActionNode:
		a.pipe(n.Pipe, d)
	case *parse.IfNode:
		a.pipe(n.Pipe, d)
		a.node(n.List, d)
		a.node(n.ElseList, d)
	case *parse.WithNode:
		a.pipe(n.Pipe, d)
		a.node(n.List, a.valueOf(n.Pipe, d)) // {{with .post}}: dot is .post
		a.node(n.ElseList, d)
	case *parse.RangeNode:
		a.pipe(n.Pipe, d)
		for _, decl := range n.Pipe.Decl {
			delete(a.vars, decl.Ident[0]) // an element (or index) of what is ranged over
		}
		a.node(n.List, dot{}) // an element
		a.node(n.ElseList, d)
	case *parse.TemplateNode:
		a.pipe(n.Pipe, d)
	}
}

// valueOf is the part of the data a pipeline's value is, when it is one (.post, $p, .).
func (a *analysis) valueOf(p *parse.PipeNode, d dot) dot {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return dot{}
	}
	return a.pathOf(p.Cmds[0].Args[0], d)
}

func (a *analysis) pipe(p *parse.PipeNode, d dot) {
	if p == nil {
		return
	}
	for i, cmd := range p.Cmds {
		if id, ok := first(cmd).(*parse.IdentifierNode); ok && id.Ident == "plural" {
			a.plural(cmd, i > 0)
		}
		for _, arg := range cmd.Args {
			a.arg(arg, d)
		}
	}
	if len(p.Decl) == 1 {
		if v := a.valueOf(p, d); v.known {
			a.vars[p.Decl[0].Ident[0]] = v.p
		} else {
			delete(a.vars, p.Decl[0].Ident[0])
		}
	}
}

// pathOf is the part of the data a node stands for, when it is one.
func (a *analysis) pathOf(n parse.Node, d dot) dot {
	switch n := n.(type) {
	case *parse.DotNode:
		return d
	case *parse.FieldNode:
		if !d.known {
			return dot{}
		}
		return dot{append(slices.Clone(d.p), n.Ident...), true}
	case *parse.VariableNode:
		base, ok := a.vars[n.Ident[0]]
		if !ok {
			return dot{}
		}
		return dot{append(slices.Clone(base), n.Ident[1:]...), true}
	}
	return dot{}
}

func first(cmd *parse.CommandNode) parse.Node {
	if len(cmd.Args) == 0 {
		return nil
	}
	return cmd.Args[0]
}

// arg records the data a command's argument reads.
func (a *analysis) arg(n parse.Node, d dot) {
	switch n := n.(type) {
	case *parse.FieldNode, *parse.VariableNode:
		if v := a.pathOf(n, d); v.known && len(v.p) > 0 {
			a.refs = append(a.refs, v.p)
		}
	case *parse.PipeNode:
		a.pipe(n, d)
	case *parse.ChainNode:
		a.arg(n.Node, d)
	}
}

// plural checks a call's form names: literal, CLDR forms of the locale (or =N), each once,
// every form the locale needs for integers, and "other".
func (a *analysis) plural(cmd *parse.CommandNode, piped bool) {
	const usage = `write {{plural .count "one" "# item" "other" "# items"}}: the number first, then pairs of form and text`
	args := cmd.Args[1:]
	if piped || len(args) < 3 || len(args)%2 != 1 {
		a.err = errors.New(usage)
		return
	}
	forms := localeForms(a.tag)
	seen := map[string]bool{}
	given := map[plural.Form]bool{}
	for i := 1; i < len(args); i += 2 {
		s, ok := args[i].(*parse.StringNode)
		if !ok {
			a.err = fmt.Errorf("plural form names are literal strings (%s); got %s", formNames(forms.possible), args[i])
			return
		}
		name := s.Text
		if seen[name] {
			a.err = fmt.Errorf("plural form %q is given twice", name)
			return
		}
		seen[name] = true
		if exact, ok := strings.CutPrefix(name, "="); ok {
			if _, err := strconv.ParseFloat(exact, 64); err != nil || strings.ContainsAny(exact, "eExXpP_") {
				a.err = fmt.Errorf("plural form %q: an exact match is = and a decimal number, like =0", name)
				return
			}
			continue
		}
		form, known := pluralForms[name]
		if !known {
			a.err = fmt.Errorf("unknown plural form %q (the CLDR forms are zero, one, two, few, many, other, or =N for exactly N)", name)
			return
		}
		if !forms.possible[form] {
			a.err = fmt.Errorf("plural form %q is never used by %s (its forms: %s)", name, a.locale, formNames(forms.possible))
			return
		}
		given[form] = true
	}
	for form := range forms.required {
		if !given[form] {
			a.err = fmt.Errorf("plural for %s needs the forms %s", a.locale, formNames(forms.required))
			return
		}
	}
}

func sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
