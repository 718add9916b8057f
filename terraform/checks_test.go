package terraform_test

// The static checks. Each takes a directory tree and returns the problems it finds, one line
// each, naming the file or module at fault; the tests run them on the real tree (no problem
// allowed) and on the broken fixtures under testdata/ (the fixture's problem must be found).

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/terraform-config-inspect/tfconfig"
	"github.com/zclconf/go-cty/cty"

	"github.com/herald-notify/herald/residency"
)

// tfFiles lists the .tf files under root, skipping testdata (fixtures are checked one by one)
// and .terraform (what `terraform init` downloads).
func tfFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (d.Name() == "testdata" || d.Name() == ".terraform") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".tf") {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// moduleDirs lists the directories under root holding .tf files: every module and root.
func moduleDirs(root string) ([]string, error) {
	files, err := tfFiles(root)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, f := range files {
		if d := filepath.Dir(f); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// parseDir parses every .tf file directly in dir.
func parseDir(dir string) ([]*hcl.File, []string) {
	entries, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, []string{err.Error()}
	}
	p := hclparse.NewParser()
	var files []*hcl.File
	var problems []string
	for _, path := range entries {
		f, diags := p.ParseHCLFile(path)
		for _, d := range diags.Errs() {
			problems = append(problems, d.Error())
		}
		if f != nil {
			files = append(files, f)
		}
	}
	return files, problems
}

// checkParse reports every .tf file under root that is not valid HCL.
func checkParse(root string) []string {
	files, err := tfFiles(root)
	if err != nil {
		return []string{err.Error()}
	}
	p := hclparse.NewParser()
	var problems []string
	for _, path := range files {
		if _, diags := p.ParseHCLFile(path); diags.HasErrors() {
			for _, d := range diags.Errs() {
				problems = append(problems, d.Error())
			}
		}
	}
	return problems
}

// checkFormat reports every .tf file that `terraform fmt` would change (hclwrite.Format is the
// formatter terraform fmt is built on).
func checkFormat(root string) []string {
	files, err := tfFiles(root)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if !bytes.Equal(hclwrite.Format(src), src) {
			problems = append(problems, fmt.Sprintf("%s: not formatted (terraform fmt would change it)", path))
		}
	}
	return problems
}

// metaArguments are the module block's arguments that are not the module's variables.
var metaArguments = []string{"source", "version", "count", "for_each", "providers", "depends_on"}

// checkModuleInterfaces reports, in every module and root under root: module call arguments
// that are not variables of the called module, required variables not set, references to
// module.X.Y where X is no module call or Y no output of X, references to variables, locals,
// resources and data sources the module does not declare, and templatefile calls that do not
// pass what their template uses.
func checkModuleInterfaces(root string) []string {
	dirs, err := moduleDirs(root)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, dir := range dirs {
		problems = append(problems, checkModuleDir(dir)...)
	}
	return problems
}

func checkModuleDir(dir string) []string {
	self, diags := tfconfig.LoadModule(dir)
	if diags.HasErrors() {
		return []string{fmt.Sprintf("%s: %v", dir, diags.Err())}
	}
	files, problems := parseDir(dir)
	if len(problems) > 0 {
		return problems
	}
	// The called modules, loaded from their local sources.
	called := map[string]*tfconfig.Module{}
	for name, call := range self.ModuleCalls {
		if !strings.HasPrefix(call.Source, "./") && !strings.HasPrefix(call.Source, "../") {
			if call.Version == "" {
				problems = append(problems, fmt.Sprintf("%s: module.%s: source %q is not local and has no pinned version", dir, name, call.Source))
			}
			continue
		}
		callee := filepath.Join(dir, call.Source)
		if !tfconfig.IsModuleDir(callee) {
			problems = append(problems, fmt.Sprintf("%s: module.%s: source %q holds no module", dir, name, call.Source))
			continue
		}
		m, diags := tfconfig.LoadModule(callee)
		if diags.HasErrors() {
			problems = append(problems, fmt.Sprintf("%s: module.%s: %v", dir, name, diags.Err()))
			continue
		}
		called[name] = m
	}

	locals := map[string]bool{}
	for _, f := range files {
		for _, block := range f.Body.(*hclsyntax.Body).Blocks {
			if block.Type == "locals" {
				for name := range block.Body.Attributes {
					locals[name] = true
				}
			}
		}
	}

	for _, f := range files {
		body := f.Body.(*hclsyntax.Body)
		for _, block := range body.Blocks {
			if block.Type != "module" || len(block.Labels) != 1 {
				continue
			}
			name := block.Labels[0]
			callee, ok := called[name]
			if !ok {
				continue
			}
			for arg, attr := range block.Body.Attributes {
				if slices.Contains(metaArguments, arg) {
					continue
				}
				if _, ok := callee.Variables[arg]; !ok {
					problems = append(problems, fmt.Sprintf("%s: module.%s: argument %q is not a variable of %s", attr.NameRange, name, arg, callee.Path))
				}
			}
			for _, v := range sortedKeys(callee.Variables) {
				if _, set := block.Body.Attributes[v]; callee.Variables[v].Required && !set {
					problems = append(problems, fmt.Sprintf("%s: module.%s: required variable %q of %s is not set", block.DefRange(), name, v, callee.Path))
				}
			}
			for _, arg := range sortedKeys(block.Body.Attributes) {
				if v, ok := callee.Variables[arg]; ok && v.Type != "" {
					problems = append(problems, checkObjectArgument(fmt.Sprintf("module.%s: var.%s", name, arg), block.Body.Attributes[arg].Expr, v.Type)...)
				}
			}
		}

		problems = append(problems, checkTemplateCalls(dir, body)...)
		for _, tr := range traversals(body) {
			switch root := tr.RootName(); root {
			case "local":
				if name := attrName(tr, 1); name != "" && !locals[name] {
					problems = append(problems, fmt.Sprintf("%s: local.%s is not defined in %s", tr.SourceRange(), name, dir))
				}
			case "data":
				if typ, name := attrName(tr, 1), attrName(tr, 2); name != "" && self.DataResources["data."+typ+"."+name] == nil {
					problems = append(problems, fmt.Sprintf("%s: data.%s.%s is not declared in %s", tr.SourceRange(), typ, name, dir))
				}
			case "module":
				problems = append(problems, checkModuleReference(tr, self, called)...)
			case "var":
				if name := attrName(tr, 1); name != "" && self.Variables[name] == nil {
					problems = append(problems, fmt.Sprintf("%s: var.%s is not declared in %s", tr.SourceRange(), name, dir))
				}
			default:
				// aws_vpc.this and the like: a resource of one of the module's providers.
				if name := attrName(tr, 1); name != "" && isResourceType(root, self) && self.ManagedResources[root+"."+name] == nil {
					problems = append(problems, fmt.Sprintf("%s: resource %s.%s is not declared in %s", tr.SourceRange(), root, name, dir))
				}
			}
		}
	}
	return problems
}

// checkObjectArgument reports, where a module argument's variable has object types in it
// (object, map or list of objects, nested), the objects written out in the argument that lack a
// required attribute or have one the type does not: terraform drops those silently, so a
// misspelt optional attribute (helthy_threshold) would quietly take its default.
func checkObjectArgument(where string, expr hclsyntax.Expression, typeSrc string) []string {
	typeExpr, diags := hclsyntax.ParseExpression([]byte(typeSrc), "type", hcl.InitialPos)
	if diags.HasErrors() {
		return []string{fmt.Sprintf("%s: type %q does not parse: %v", where, typeSrc, diags)}
	}
	ty, _, diags := typeexpr.TypeConstraintWithDefaults(typeExpr)
	if diags.HasErrors() {
		return []string{fmt.Sprintf("%s: bad type %q: %v", where, typeSrc, diags)}
	}
	return checkObjectValue(where, expr, ty)
}

func checkObjectValue(where string, expr hclsyntax.Expression, ty cty.Type) []string {
	var problems []string
	switch e := expr.(type) {
	case *hclsyntax.ConditionalExpr:
		return append(checkObjectValue(where, e.TrueResult, ty), checkObjectValue(where, e.FalseResult, ty)...)
	case *hclsyntax.ParenthesesExpr:
		return checkObjectValue(where, e.Expression, ty)
	}
	switch {
	case ty.IsObjectType():
		obj, ok := expr.(*hclsyntax.ObjectConsExpr)
		if !ok {
			return nil // built some other way: terraform checks it at plan time
		}
		seen := map[string]bool{}
		for _, item := range obj.Items {
			k, diags := item.KeyExpr.Value(nil)
			if diags.HasErrors() || !k.IsKnown() || k.Type() != cty.String {
				return problems // a computed key: cannot tell what is there
			}
			name := k.AsString()
			seen[name] = true
			if !ty.HasAttribute(name) {
				problems = append(problems, fmt.Sprintf("%s: %s: attribute %q is not in the variable's type, so terraform drops it (attributes: %v)", item.KeyExpr.Range(), where, name, sortedKeys(ty.AttributeTypes())))
				continue
			}
			problems = append(problems, checkObjectValue(where+"."+name, item.ValueExpr, ty.AttributeType(name))...)
		}
		for _, name := range sortedKeys(ty.AttributeTypes()) {
			if !seen[name] && !ty.AttributeOptional(name) {
				problems = append(problems, fmt.Sprintf("%s: %s: attribute %q is required by the variable's type", obj.SrcRange, where, name))
			}
		}
	case ty.IsMapType():
		switch e := expr.(type) {
		case *hclsyntax.ObjectConsExpr:
			for _, item := range e.Items {
				problems = append(problems, checkObjectValue(where+"[...]", item.ValueExpr, ty.ElementType())...)
			}
		case *hclsyntax.ForExpr:
			if e.KeyExpr != nil {
				problems = append(problems, checkObjectValue(where+"[...]", e.ValExpr, ty.ElementType())...)
			}
		}
	case ty.IsListType() || ty.IsSetType():
		switch e := expr.(type) {
		case *hclsyntax.TupleConsExpr:
			for _, item := range e.Exprs {
				problems = append(problems, checkObjectValue(where+"[...]", item, ty.ElementType())...)
			}
		case *hclsyntax.ForExpr:
			if e.KeyExpr == nil {
				problems = append(problems, checkObjectValue(where+"[...]", e.ValExpr, ty.ElementType())...)
			}
		case *hclsyntax.FunctionCallExpr:
			if e.Name == "concat" {
				for _, arg := range e.Args {
					problems = append(problems, checkObjectValue(where, arg, ty)...)
				}
			}
		}
	}
	return problems
}

// checkTemplateCalls reports templatefile calls whose template is missing or does not parse,
// or refers to a variable the call does not pass (terraform fails on both at plan time).
func checkTemplateCalls(dir string, body *hclsyntax.Body) []string {
	var problems []string
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
		"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(dir)}),
	}}
	_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || call.Name != "templatefile" || len(call.Args) != 2 {
			return nil
		}
		where := call.NameRange.String()
		pathVal, diags := call.Args[0].Value(ctx)
		if diags.HasErrors() || pathVal.Type() != cty.String {
			problems = append(problems, fmt.Sprintf("%s: templatefile path must be built from path.module: %v", where, diags))
			return nil
		}
		src, err := os.ReadFile(pathVal.AsString())
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: template: %v", where, err))
			return nil
		}
		tmpl, diags := hclsyntax.ParseTemplate(src, pathVal.AsString(), hcl.InitialPos)
		if diags.HasErrors() {
			problems = append(problems, fmt.Sprintf("%s: template does not parse: %v", where, diags))
			return nil
		}
		passed := map[string]bool{}
		items, diags := hcl.ExprMap(call.Args[1])
		if diags.HasErrors() {
			problems = append(problems, fmt.Sprintf("%s: templatefile variables must be an object literal", where))
			return nil
		}
		for _, item := range items {
			if k, diags := item.Key.Value(nil); !diags.HasErrors() && k.Type() == cty.String {
				passed[k.AsString()] = true
			}
		}
		for _, tr := range tmpl.Variables() {
			if !passed[tr.RootName()] {
				problems = append(problems, fmt.Sprintf("%s: template %s uses ${%s}, which the call does not pass", where, pathVal.AsString(), tr.RootName()))
			}
		}
		return nil
	})
	return problems
}

// attrName returns the name of tr's i-th step if it is an attribute step, else "".
func attrName(tr hcl.Traversal, i int) string {
	if i < len(tr) {
		if a, ok := tr[i].(hcl.TraverseAttr); ok {
			return a.Name
		}
	}
	return ""
}

// isResourceType reports whether name is a resource type of one of m's providers (aws_vpc for
// aws), as opposed to an iterator (each, count, a for variable or a dynamic block's name).
func isResourceType(name string, m *tfconfig.Module) bool {
	for p := range m.RequiredProviders {
		if strings.HasPrefix(name, p+"_") {
			return true
		}
	}
	return false
}

// checkModuleReference checks one module.X[...].Y reference.
func checkModuleReference(tr hcl.Traversal, self *tfconfig.Module, called map[string]*tfconfig.Module) []string {
	var names []string
	for _, step := range tr[1:] {
		if a, ok := step.(hcl.TraverseAttr); ok {
			names = append(names, a.Name)
		}
		if len(names) == 2 {
			break
		}
	}
	if len(names) == 0 {
		return nil
	}
	if _, ok := self.ModuleCalls[names[0]]; !ok {
		return []string{fmt.Sprintf("%s: module.%s is not a module call of %s", tr.SourceRange(), names[0], self.Path)}
	}
	callee, ok := called[names[0]]
	if !ok || len(names) < 2 {
		return nil
	}
	if _, ok := callee.Outputs[names[1]]; !ok {
		return []string{fmt.Sprintf("%s: module.%s.%s: %s has no output %q", tr.SourceRange(), names[0], names[1], callee.Path, names[1])}
	}
	return nil
}

// traversals returns every variable reference in body, nested blocks and templates included.
// Moved and removed blocks hold addresses, not references (checkMoved reads those).
func traversals(body *hclsyntax.Body) []hcl.Traversal {
	var out []hcl.Traversal
	visit := func(n hclsyntax.Node) hcl.Diagnostics {
		if e, ok := n.(*hclsyntax.ScopeTraversalExpr); ok {
			out = append(out, e.Traversal)
		}
		return nil
	}
	for _, attr := range body.Attributes {
		_ = hclsyntax.VisitAll(attr, visit)
	}
	for _, b := range body.Blocks {
		if b.Type != "moved" && b.Type != "removed" {
			_ = hclsyntax.VisitAll(b, visit)
		}
	}
	return out
}

var (
	// A pinned constraint names one version, or one minor (~> 1.9) or patch (~> 3.6.2) line.
	exactVersion    = regexp.MustCompile(`^=?\s*[0-9]+\.[0-9]+\.[0-9]+$`)
	pessimisticLine = regexp.MustCompile(`^~>\s*[0-9]+\.[0-9]+(\.[0-9]+)?$`)
)

func pinned(constraint string) bool {
	c := strings.TrimSpace(constraint)
	return exactVersion.MatchString(c) || pessimisticLine.MatchString(c)
}

// checkPinned reports, per module and root: a missing or open required_version, a provider
// used without a required_providers entry, and entries without a source or a pinned version.
func checkPinned(root string) []string {
	dirs, err := moduleDirs(root)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, dir := range dirs {
		m, diags := tfconfig.LoadModule(dir)
		if diags.HasErrors() {
			problems = append(problems, fmt.Sprintf("%s: %v", dir, diags.Err()))
			continue
		}
		if len(m.RequiredCore) == 0 {
			problems = append(problems, fmt.Sprintf("%s: no required_version", dir))
		}
		for _, c := range m.RequiredCore {
			if !pinned(c) {
				problems = append(problems, fmt.Sprintf("%s: required_version %q is not pinned (use an exact version or ~> x.y)", dir, c))
			}
		}
		used := map[string]bool{}
		for _, r := range m.ManagedResources {
			used[r.Provider.Name] = true
		}
		for _, r := range m.DataResources {
			used[r.Provider.Name] = true
		}
		for _, p := range m.ProviderConfigs {
			used[p.Name] = true
		}
		delete(used, "terraform") // built in: terraform_remote_state, terraform_data
		for _, name := range sortedKeys(used) {
			if _, ok := m.RequiredProviders[name]; !ok {
				problems = append(problems, fmt.Sprintf("%s: provider %q is used but not in required_providers", dir, name))
			}
		}
		for _, name := range sortedKeys(m.RequiredProviders) {
			req := m.RequiredProviders[name]
			// tfconfig adds an empty entry for a provider that is used but not required.
			if req.Source == "" && len(req.VersionConstraints) == 0 {
				problems = append(problems, fmt.Sprintf("%s: provider %q is used but not in required_providers", dir, name))
				continue
			}
			if req.Source == "" {
				problems = append(problems, fmt.Sprintf("%s: provider %q has no source", dir, name))
			}
			if len(req.VersionConstraints) == 0 {
				problems = append(problems, fmt.Sprintf("%s: provider %q has no version", dir, name))
			}
			for _, c := range req.VersionConstraints {
				if !pinned(c) {
					problems = append(problems, fmt.Sprintf("%s: provider %q version %q is not pinned (use an exact version or ~> x.y)", dir, name, c))
				}
			}
		}
	}
	return problems
}

// residencyFacts are the residency module's maps (modules/residency/main.tf locals).
type residencyFacts struct {
	heraldRegions map[string][]string // jurisdiction -> regions, failover order
	countries     map[string][]string // jurisdiction -> countries
	awsRegions    map[string]string   // Herald region -> AWS region
	cloudRegions  map[string][]string // jurisdiction -> AWS regions inside it
	// postgresPrimary is jurisdiction -> the Herald region holding its Postgres primary.
	postgresPrimary map[string]string
}

// checkResidency reports where the tree under root disagrees with policy: the residency
// module's maps against the policy's jurisdictions, regions (in order) and countries, and each
// root under regions/ against them: a root per policy region named after it, declaring the
// region's jurisdiction, in an AWS region of that jurisdiction, with the provider and the state
// there too, and a gateway exactly in each jurisdiction's first region.
func checkResidency(root string, policy *residency.Policy) []string {
	facts, problems := loadResidencyFacts(filepath.Join(root, "modules", "residency"))
	if len(problems) > 0 {
		return problems
	}
	codes := policy.Codes()
	if got := sortedKeys(facts.heraldRegions); !slices.Equal(got, codes) {
		problems = append(problems, fmt.Sprintf("modules/residency: herald_regions has jurisdictions %v, the policy %v", got, codes))
	}
	for _, j := range codes {
		if got, want := facts.heraldRegions[j], policy.Regions(j); !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("modules/residency: herald_regions[%s] is %v, the policy says %v (failover order matters)", j, got, want))
		}
		got, want := slices.Sorted(slices.Values(facts.countries[j])), slices.Sorted(slices.Values(policy.Jurisdictions[j].Countries))
		if !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("modules/residency: countries[%s] is %v, the policy says %v", j, got, want))
		}
		for _, r := range policy.Regions(j) {
			aws, ok := facts.awsRegions[r]
			if !ok {
				problems = append(problems, fmt.Sprintf("modules/residency: aws_regions has no entry for %s", r))
			} else if !slices.Contains(facts.cloudRegions[j], aws) {
				problems = append(problems, fmt.Sprintf("modules/residency: %s is hosted in %s, which is not among %s's cloud_regions %v", r, aws, j, facts.cloudRegions[j]))
			}
		}
	}

	roots, err := filepath.Glob(filepath.Join(root, "regions", "*"))
	if err != nil {
		return append(problems, err.Error())
	}
	seen := map[string]bool{}
	stateKeys := map[string]string{}
	for _, dir := range roots {
		name := filepath.Base(dir)
		seen[name] = true
		p, key := checkRegionRoot(dir, policy, facts)
		problems = append(problems, p...)
		if other, dup := stateKeys[key]; dup && key != "" {
			problems = append(problems, fmt.Sprintf("regions/%s: state key %q is also regions/%s's: each region needs its own state", name, key, other))
		}
		stateKeys[key] = name
	}
	for _, j := range codes {
		for _, r := range policy.Regions(j) {
			if !seen[r] {
				problems = append(problems, fmt.Sprintf("regions/%s: missing: the policy lists region %s (%s) but it has no root", r, r, j))
			}
		}
	}
	return problems
}

func checkRegionRoot(dir string, policy *residency.Policy, facts residencyFacts) (problems []string, stateKey string) {
	name := filepath.Base(dir)
	where := "regions/" + name
	files, problems := parseDir(dir)
	if len(problems) > 0 {
		return problems, ""
	}
	blocks := map[string]*hclsyntax.Block{} // "module.region", "provider.aws", "backend.s3", ...
	for _, f := range files {
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			switch {
			case b.Type == "terraform":
				for _, inner := range b.Body.Blocks {
					if inner.Type == "backend" && len(inner.Labels) == 1 {
						blocks["backend."+inner.Labels[0]] = inner
					}
				}
			case b.Type == "provider" && len(b.Labels) > 0 && literal(b, "alias") != "":
				blocks["provider."+b.Labels[0]+"."+literal(b, "alias")] = b
			case len(b.Labels) > 0:
				blocks[b.Type+"."+b.Labels[0]] = b
			}
		}
	}

	region, ok := blocks["module.region"]
	if !ok {
		return []string{where + ": no module \"region\""}, ""
	}
	heraldRegion := literal(region, "herald_region")
	jurisdiction := literal(region, "jurisdiction")
	awsRegion := literal(region, "aws_region")
	if heraldRegion != name {
		problems = append(problems, fmt.Sprintf("%s: module.region.herald_region is %q: a root is named after its region", where, heraldRegion))
	}
	want, known := policy.JurisdictionOfRegion(heraldRegion)
	switch {
	case !known:
		problems = append(problems, fmt.Sprintf("%s: region %q is not in the residency policy", where, heraldRegion))
	case jurisdiction != want:
		problems = append(problems, fmt.Sprintf("%s: declares jurisdiction %q, but the policy puts %s in %s", where, jurisdiction, heraldRegion, want))
	}
	if awsRegion != facts.awsRegions[heraldRegion] {
		problems = append(problems, fmt.Sprintf("%s: module.region.aws_region is %q, modules/residency hosts %s in %q", where, awsRegion, heraldRegion, facts.awsRegions[heraldRegion]))
	}
	if !slices.Contains(facts.cloudRegions[want], awsRegion) {
		problems = append(problems, fmt.Sprintf("%s: AWS region %q is outside %s (%v)", where, awsRegion, want, facts.cloudRegions[want]))
	}

	if p, ok := blocks["provider.aws"]; !ok {
		problems = append(problems, where+": no provider \"aws\" block")
	} else if got := literal(p, "region"); got != awsRegion {
		problems = append(problems, fmt.Sprintf("%s: provider aws has region %q, module.region.aws_region %q: every resource must be in the region's own provider", where, got, awsRegion))
	}

	// aws.primary reaches the region of the jurisdiction's Postgres primary (replica, peering):
	// that region's AWS region, inside the jurisdiction.
	primary := facts.postgresPrimary[want]
	if !slices.Contains(policy.Regions(want), primary) {
		problems = append(problems, fmt.Sprintf("modules/residency: postgres_primary[%s] is %q, not a region of %s %v", want, primary, want, policy.Regions(want)))
	}
	if p, ok := blocks["provider.aws.primary"]; !ok {
		problems = append(problems, where+": no provider \"aws\" with alias \"primary\" (the region of the jurisdiction's Postgres primary)")
	} else if got := literal(p, "region"); got != facts.awsRegions[primary] {
		problems = append(problems, fmt.Sprintf("%s: provider aws.primary has region %q, but %s's Postgres primary is %s, in %q", where, got, want, primary, facts.awsRegions[primary]))
	}

	if b, ok := blocks["backend.s3"]; !ok {
		problems = append(problems, where+": no s3 backend: each region keeps its own state")
	} else {
		stateKey = literal(b, "key")
		if !strings.Contains(stateKey, "regions/"+name+"/") {
			problems = append(problems, fmt.Sprintf("%s: state key %q does not name regions/%s/", where, stateKey, name))
		}
		if got := literal(b, "region"); got != awsRegion {
			problems = append(problems, fmt.Sprintf("%s: state bucket is in %q, not in the region's own %q", where, got, awsRegion))
		}
	}

	regions := policy.Regions(want)
	home := len(regions) > 0 && regions[0] == heraldRegion
	gw, hasGateway := blocks["module.gateway"]
	switch {
	case home && !hasGateway:
		problems = append(problems, fmt.Sprintf("%s: first region of %s but no module \"gateway\": each jurisdiction has one", where, want))
	case !home && hasGateway:
		problems = append(problems, fmt.Sprintf("%s: has a module \"gateway\" but is not %s's first region: one gateway per jurisdiction", where, want))
	case hasGateway && literal(gw, "jurisdiction") != want:
		problems = append(problems, fmt.Sprintf("%s: module.gateway.jurisdiction is %q, want %q", where, literal(gw, "jurisdiction"), want))
	case hasGateway:
		// The gateway answers DNS for exactly its jurisdiction's countries: another's would pull
		// those users' requests through a gateway outside their jurisdiction.
		got, ok := gatewayCountries(gw, facts)
		wantCountries := slices.Sorted(slices.Values(policy.Jurisdictions[want].Countries))
		if !ok || !slices.Equal(got, wantCountries) {
			problems = append(problems, fmt.Sprintf("%s: module.gateway.countries is %v, want %s's countries %v", where, got, want, wantCountries))
		}
	}
	return problems, stateKey
}

// gatewayCountries evaluates the gateway call's countries with module.residency's countries.
func gatewayCountries(gw *hclsyntax.Block, facts residencyFacts) ([]string, bool) {
	attr, ok := gw.Body.Attributes["countries"]
	if !ok {
		return nil, false
	}
	byJurisdiction := map[string]cty.Value{}
	for j, cs := range facts.countries {
		vals := make([]cty.Value, len(cs))
		for i, c := range cs {
			vals[i] = cty.StringVal(c)
		}
		byJurisdiction[j] = cty.ListVal(vals)
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
		"module": cty.ObjectVal(map[string]cty.Value{
			"residency": cty.ObjectVal(map[string]cty.Value{"countries": cty.MapVal(byJurisdiction)}),
		}),
	}}
	v, diags := attr.Expr.Value(ctx)
	if diags.HasErrors() || !v.IsWhollyKnown() || !v.CanIterateElements() {
		return nil, false
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		if e.Type() != cty.String {
			return nil, false
		}
		out = append(out, e.AsString())
	}
	slices.Sort(out)
	return out, true
}

// literal returns block's attribute name as a string if it is a constant one, else "".
func literal(b *hclsyntax.Block, name string) string {
	attr, ok := b.Body.Attributes[name]
	if !ok {
		return ""
	}
	v, diags := attr.Expr.Value(nil)
	if diags.HasErrors() || v.Type() != cty.String || v.IsNull() {
		return ""
	}
	return v.AsString()
}

func loadResidencyFacts(dir string) (residencyFacts, []string) {
	files, problems := parseDir(dir)
	if len(problems) > 0 {
		return residencyFacts{}, problems
	}
	locals := map[string]cty.Value{}
	for _, f := range files {
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			if b.Type != "locals" {
				continue
			}
			for name, attr := range b.Body.Attributes {
				v, diags := attr.Expr.Value(nil)
				if diags.HasErrors() {
					problems = append(problems, fmt.Sprintf("%s: local.%s must be a literal: %v", dir, name, diags))
					continue
				}
				locals[name] = v
			}
		}
	}
	facts := residencyFacts{
		heraldRegions:   stringListMap(locals["herald_regions"]),
		countries:       stringListMap(locals["countries"]),
		cloudRegions:    stringListMap(locals["cloud_regions"]),
		awsRegions:      stringMap(locals["aws_regions"]),
		postgresPrimary: stringMap(locals["postgres_primary"]),
	}
	for _, name := range []string{"herald_regions", "countries", "aws_regions", "cloud_regions", "postgres_primary"} {
		if _, ok := locals[name]; !ok {
			problems = append(problems, fmt.Sprintf("%s: no local %q", dir, name))
		}
	}
	return facts, problems
}

// stringMap reads an object of strings; anything else reads as empty.
func stringMap(v cty.Value) map[string]string {
	out := map[string]string{}
	if v.IsKnown() && !v.IsNull() && v.CanIterateElements() {
		for k, e := range v.AsValueMap() {
			if e.Type() == cty.String {
				out[k] = e.AsString()
			}
		}
	}
	return out
}

// stringListMap reads an object of string lists; anything else reads as empty.
func stringListMap(v cty.Value) map[string][]string {
	out := map[string][]string{}
	if v == cty.NilVal || !v.IsKnown() || v.IsNull() || !v.CanIterateElements() {
		return out
	}
	for k, list := range v.AsValueMap() {
		if !list.CanIterateElements() {
			continue
		}
		for _, e := range list.AsValueSlice() {
			if e.Type() == cty.String {
				out[k] = append(out[k], e.AsString())
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// serviceModule is the one module that declares ECS services and what surrounds them.
const serviceModule = "modules/service"

// servicePlumbing are the resource types only serviceModule declares.
var servicePlumbing = []string{"aws_ecs_task_definition", "aws_ecs_service", "aws_lb", "aws_lb_target_group", "aws_lb_listener"}

// checkServicePlumbing reports, in every module and root under root but modules/service, a
// resource of a servicePlumbing type or a block naming the ECS tasks' principal
// (ecs-tasks.amazonaws.com: a task or execution role): the region, the gateway and analytics
// call modules/service for those, so that none of them repeats it.
func checkServicePlumbing(root string) []string {
	dirs, err := moduleDirs(root)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, dir := range dirs {
		if rel, _ := filepath.Rel(root, dir); filepath.ToSlash(rel) == serviceModule {
			continue
		}
		files, p := parseDir(dir)
		problems = append(problems, p...)
		for _, f := range files {
			for _, b := range f.Body.(*hclsyntax.Body).Blocks {
				if b.Type != "resource" && b.Type != "data" || len(b.Labels) != 2 {
					continue
				}
				addr := strings.TrimPrefix(b.Type+".", "resource.") + b.Labels[0] + "." + b.Labels[1]
				if b.Type == "resource" && slices.Contains(servicePlumbing, b.Labels[0]) {
					problems = append(problems, fmt.Sprintf("%s: %s: ECS services and their load balancers belong in %s; call it instead", b.DefRange(), addr, serviceModule))
					continue
				}
				_ = hclsyntax.VisitAll(b.Body, func(n hclsyntax.Node) hcl.Diagnostics {
					if lit, ok := n.(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String && strings.Contains(lit.Val.AsString(), "ecs-tasks.amazonaws.com") {
						problems = append(problems, fmt.Sprintf("%s: %s names ecs-tasks.amazonaws.com: ECS task roles belong in %s; call it instead", lit.SrcRange, addr, serviceModule))
					}
					return nil
				})
			}
		}
	}
	return problems
}
