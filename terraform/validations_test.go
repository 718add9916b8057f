package terraform_test

// Evaluating the modules' variable validations without terraform: each module call's arguments
// are evaluated in the calling root (its variables' defaults, and the outputs of modules that
// only answer from literal locals, such as modules/residency), converted to the variables'
// types (optional attributes get their defaults), and every validation condition of the called
// module is evaluated with the Terraform functions it uses. The called module's own calls (the
// region's module.roles, say) are evaluated the same way with those values, its locals where
// they can be, down the tree. A condition that depends on a value only known at apply time (a
// variable without a default, a resource attribute) is unknown and skipped, as terraform plan
// would.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// functions are the Terraform functions the validations use, and those the modules build the
// arguments of their own calls with, from cty's standard library where it has them (Terraform's
// are the same) and written here where it does not. A call to any other is unknown.
var functions = map[string]function.Function{
	"alltrue":     allTrueFunc,
	"can":         tryfunc.CanFunc,
	"cidrnetmask": cidrNetmaskFunc,
	"coalesce":    stdlib.CoalesceFunc,
	"concat":      stdlib.ConcatFunc,
	"contains":    stdlib.ContainsFunc,
	"format":      stdlib.FormatFunc,
	"join":        stdlib.JoinFunc,
	"keys":        stdlib.KeysFunc,
	"length":      stdlib.LengthFunc,
	"lookup":      stdlib.LookupFunc,
	"lower":       stdlib.LowerFunc,
	"merge":       stdlib.MergeFunc,
	"regex":       stdlib.RegexFunc,
	"replace":     stdlib.ReplaceFunc,
	"setsubtract": stdlib.SetSubtractFunc,
	"split":       stdlib.SplitFunc,
	"startswith":  startsWithFunc,
	"substr":      stdlib.SubstrFunc,
	"tonumber":    toNumberFunc,
	"toset":       stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
	"tostring":    stdlib.MakeToFunc(cty.String),
	"upper":       stdlib.UpperFunc,
}

var allTrueFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		result := cty.True
		for it := args[0].ElementIterator(); it.Next(); {
			_, v := it.Element()
			if !v.IsKnown() {
				return cty.UnknownVal(cty.Bool), nil
			}
			if v.IsNull() || v.False() {
				result = cty.False
			}
		}
		return result, nil
	},
})

var startsWithFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "prefix", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.HasPrefix(args[0].AsString(), args[1].AsString())), nil
	},
})

var toNumberFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return convert.Convert(args[0], cty.Number)
	},
})

var cidrNetmaskFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "prefix", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		_, n, err := net.ParseCIDR(args[0].AsString())
		if err != nil {
			return cty.NilVal, err
		}
		return cty.StringVal(net.IP(n.Mask).String()), nil
	},
})

// moduleSource is one module's parsed blocks.
type moduleSource struct {
	dir    string
	blocks []*hclsyntax.Block
}

func loadModuleSource(dir string) (moduleSource, []string) {
	files, problems := parseDir(dir)
	m := moduleSource{dir: dir}
	for _, f := range files {
		m.blocks = append(m.blocks, f.Body.(*hclsyntax.Body).Blocks...)
	}
	return m, problems
}

func (m moduleSource) each(typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// variableDefaults returns each variable's default, or an unknown value when it has none.
func (m moduleSource) variableDefaults() map[string]cty.Value {
	vars := map[string]cty.Value{}
	for _, b := range m.each("variable") {
		vars[b.Labels[0]] = cty.DynamicVal
		if d, ok := b.Body.Attributes["default"]; ok {
			if v, diags := d.Expr.Value(nil); !diags.HasErrors() {
				vars[b.Labels[0]] = v
			}
		}
	}
	return vars
}

// literalOutputs evaluates the module's outputs from its literal locals; an output that needs
// anything else is unknown.
func (m moduleSource) literalOutputs() map[string]cty.Value {
	locals := map[string]cty.Value{}
	for _, b := range m.each("locals") {
		for name, attr := range b.Body.Attributes {
			locals[name] = cty.DynamicVal
			if v, diags := attr.Expr.Value(nil); !diags.HasErrors() {
				locals[name] = v
			}
		}
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"local": cty.ObjectVal(locals)}, Functions: functions}
	outputs := map[string]cty.Value{}
	for _, b := range m.each("output") {
		outputs[b.Labels[0]] = cty.DynamicVal
		if v, diags := b.Body.Attributes["value"].Expr.Value(ctx); !diags.HasErrors() {
			outputs[b.Labels[0]] = v
		}
	}
	return outputs
}

// checkValidations evaluates, in each root under root (regions/*, central), the validations of
// every module it calls with the arguments it passes; it reports each that fails and returns
// how many were decided, so a test can tell that they were evaluated at all.
func checkValidations(root string) ([]string, int) {
	roots, err := filepath.Glob(filepath.Join(root, "regions", "*"))
	if err != nil {
		return []string{err.Error()}, 0
	}
	if central := filepath.Join(root, "central"); isDir(central) {
		roots = append(roots, central)
	}
	var problems []string
	decided := 0
	for _, dir := range roots {
		p, n := checkRootValidations(dir)
		problems = append(problems, p...)
		decided += n
	}
	return problems, decided
}

func checkRootValidations(dir string) ([]string, int) {
	rootMod, problems := loadModuleSource(dir)
	if len(problems) > 0 {
		return problems, 0
	}
	return checkCallValidations(dir+": ", rootMod, rootMod.variableDefaults())
}

// checkCallValidations evaluates, in module m with variable values vars, the validations of
// every module it calls with the arguments it passes, then the calls of each called module with
// the values it got, down the tree. where names m ("regions/eu-west-1: module.region.").
func checkCallValidations(where string, m moduleSource, vars map[string]cty.Value) ([]string, int) {
	var problems []string
	// First the calls whose outputs are literal (the residency facts), then the others.
	calls := map[string]moduleSource{}
	modules := map[string]cty.Value{}
	for _, b := range m.each("module") {
		src, ok := b.Body.Attributes["source"]
		if !ok {
			continue
		}
		v, diags := src.Expr.Value(nil)
		if diags.HasErrors() || !strings.HasPrefix(v.AsString(), ".") {
			continue
		}
		if !isDir(filepath.Join(m.dir, v.AsString())) {
			problems = append(problems, fmt.Sprintf("%smodule.%s: source %q is no directory", where, b.Labels[0], v.AsString()))
			continue
		}
		callee, p := loadModuleSource(filepath.Join(m.dir, v.AsString()))
		if len(p) > 0 {
			problems = append(problems, p...)
			continue
		}
		calls[b.Labels[0]] = callee
		modules[b.Labels[0]] = cty.ObjectVal(callee.literalOutputs())
	}
	ctx := m.evalContext(vars, modules)

	decided := 0
	for _, b := range m.each("module") {
		callee, ok := calls[b.Labels[0]]
		if !ok {
			continue
		}
		callWhere := where + "module." + b.Labels[0]
		calleeVars, p := calleeVariables(callWhere, b, callee, ctx)
		problems = append(problems, p...)
		vctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(calleeVars)}, Functions: functions}
		for _, v := range callee.each("variable") {
			for _, val := range v.Body.Blocks {
				if val.Type != "validation" {
					continue
				}
				cond, diags := val.Body.Attributes["condition"].Expr.Value(vctx)
				if diags.HasErrors() {
					problems = append(problems, fmt.Sprintf("%s: var.%s: validation cannot be evaluated: %v", callWhere, v.Labels[0], diags))
					continue
				}
				if !cond.IsWhollyKnown() {
					continue
				}
				decided++
				if cond.False() {
					msg, _ := val.Body.Attributes["error_message"].Expr.Value(nil)
					problems = append(problems, fmt.Sprintf("%s: var.%s: validation fails: %s", callWhere, v.Labels[0], msg.AsString()))
				}
			}
		}
		p, n := checkCallValidations(callWhere+".", callee, calleeVars)
		problems = append(problems, p...)
		decided += n
	}
	return problems, decided
}

// evalContext is what m's expressions see: its variables, its module calls' literal outputs,
// its locals as far as those give them, and unknown resources and data sources.
func (m moduleSource) evalContext(vars, modules map[string]cty.Value) *hcl.EvalContext {
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":    cty.ObjectVal(vars),
			"module": cty.ObjectVal(modules),
			"data":   cty.DynamicVal,
			"path":   cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(m.dir)}),
		},
		Functions: functions,
	}
	for _, b := range m.each("resource") {
		ctx.Variables[b.Labels[0]] = cty.DynamicVal
	}
	locals := map[string]cty.Value{}
	for _, b := range m.each("locals") {
		for name := range b.Body.Attributes {
			locals[name] = cty.DynamicVal
		}
	}
	// A local may use another: as many passes as they can nest.
	for range len(locals) + 1 {
		ctx.Variables["local"] = cty.ObjectVal(locals)
		next := map[string]cty.Value{}
		for _, b := range m.each("locals") {
			for name, attr := range b.Body.Attributes {
				v, diags := attr.Expr.Value(ctx)
				if diags.HasErrors() {
					v = cty.DynamicVal
				}
				next[name] = v
			}
		}
		if cty.ObjectVal(next).RawEquals(cty.ObjectVal(locals)) {
			break
		}
		locals = next
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx
}

// calleeVariables gives each of callee's variables its value in the call: the argument
// evaluated in the caller, else the default, converted to the variable's type.
func calleeVariables(where string, call *hclsyntax.Block, callee moduleSource, ctx *hcl.EvalContext) (map[string]cty.Value, []string) {
	var problems []string
	vars := callee.variableDefaults()
	for _, v := range callee.each("variable") {
		name := v.Labels[0]
		if arg, ok := call.Body.Attributes[name]; ok {
			val, diags := arg.Expr.Value(ctx)
			if diags.HasErrors() {
				val = cty.DynamicVal // refers to something known only at apply time
			}
			vars[name] = val
		}
		t, ok := v.Body.Attributes["type"]
		if !ok || !vars[name].IsKnown() || vars[name].IsNull() {
			continue
		}
		ty, defaults, diags := typeexpr.TypeConstraintWithDefaults(t.Expr)
		if diags.HasErrors() {
			problems = append(problems, fmt.Sprintf("%s: var.%s: bad type: %v", where, name, diags))
			continue
		}
		if defaults != nil {
			vars[name] = defaults.Apply(vars[name])
		}
		converted, err := convert.Convert(vars[name], ty)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: var.%s: %v", where, name, err))
			continue
		}
		vars[name] = converted
	}
	return vars, problems
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
