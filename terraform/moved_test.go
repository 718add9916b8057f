package terraform_test

// Refactoring without destroying anything. A deployed state holds every resource at its address
// (module.region.aws_ecs_service.role["api"]); terraform destroys what it no longer finds at an
// address and creates what is new. state-addresses.txt lists, module by module, every address a
// deployed state may hold; each must still be declared, or be the `from` of a moved block whose
// `to` is declared (in the module itself or in a module it calls), with instance keys that fit.

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// stateAddressesFile lists the addresses deployed states may hold, relative to the tree's root.
const stateAddressesFile = "state-addresses.txt"

var updateStateAddresses = flag.Bool("update-state-addresses", false,
	"add the objects the tree declares to "+stateAddressesFile+" (it never removes one: an address leaves the list only when no state holds it any more)")

// With -update-state-addresses, the list gets what the tree declares before the checks run
// (test files run in name order, and this one comes before terraform_test.go).
func TestUpdateStateAddresses(t *testing.T) {
	if !*updateStateAddresses {
		t.Skip("only with -update-state-addresses")
	}
	if err := addMissingStateAddresses("."); err != nil {
		t.Fatal(err)
	}
}

// Modes of a resource or module call: one instance, or instances by for_each keys or count.
const (
	single  = ""
	forEach = "for_each"
	count   = "count"
)

// stateAddress is one line of the list: a module (directory under the root), an address in it
// (aws_lb.this, module.network) and its mode.
type stateAddress struct {
	dir, addr, mode string
}

func (a stateAddress) String() string {
	return strings.TrimSpace(a.dir + " " + a.addr + " " + a.mode)
}

func readStateAddresses(path string) ([]stateAddress, []string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", path, err)}
	}
	defer f.Close()
	var out []stateAddress
	var problems []string
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || len(fields) > 3 || (len(fields) == 3 && fields[2] != forEach && fields[2] != count) {
			problems = append(problems, fmt.Sprintf("%s:%d: want \"<module dir> <address> [for_each|count]\", got %q", path, n, line))
			continue
		}
		a := stateAddress{dir: fields[0], addr: fields[1]}
		if len(fields) == 3 {
			a.mode = fields[2]
		}
		out = append(out, a)
	}
	if err := s.Err(); err != nil {
		problems = append(problems, err.Error())
	}
	return out, problems
}

// movedBlock is one moved block, its addresses as written.
type movedBlock struct {
	from, to []addrStep
	where    hcl.Range
}

// moduleObjects are what one module declares that a state can hold: managed resources and
// module calls by address (with their mode), the local sources of the calls, and its moved blocks.
type moduleObjects struct {
	objects map[string]string // "aws_lb.this" or "module.network" -> mode
	sources map[string]string // module call name -> source directory (local sources only)
	moved   []movedBlock
}

func loadModuleObjects(dir string) (moduleObjects, []string) {
	files, problems := parseDir(dir)
	m := moduleObjects{objects: map[string]string{}, sources: map[string]string{}}
	for _, f := range files {
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			mode := single
			if _, ok := b.Body.Attributes["for_each"]; ok {
				mode = forEach
			} else if _, ok := b.Body.Attributes["count"]; ok {
				mode = count
			}
			switch {
			case b.Type == "resource" && len(b.Labels) == 2:
				m.objects[b.Labels[0]+"."+b.Labels[1]] = mode
			case b.Type == "module" && len(b.Labels) == 1:
				m.objects["module."+b.Labels[0]] = mode
				if src := literal(b, "source"); strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../") {
					m.sources[b.Labels[0]] = filepath.Join(dir, src)
				}
			case b.Type == "moved":
				mb := movedBlock{where: b.DefRange()}
				var err error
				for name, dst := range map[string]*[]addrStep{"from": &mb.from, "to": &mb.to} {
					attr, ok := b.Body.Attributes[name]
					if !ok {
						problems = append(problems, fmt.Sprintf("%s: moved block without %s", b.DefRange(), name))
						continue
					}
					if *dst, err = parseAddress(attr.Expr); err != nil {
						problems = append(problems, fmt.Sprintf("%s: moved.%s: %v", attr.Expr.Range(), name, err))
					}
				}
				if len(mb.from) > 0 && len(mb.to) > 0 {
					m.moved = append(m.moved, mb)
				}
			}
		}
	}
	return m, problems
}

// addrStep is one step of an address: a module call or, last, a resource, with its key if any.
type addrStep struct {
	name string    // "module.region" or "aws_lb.this"
	key  cty.Value // cty.NilVal when the address names no instance
}

func (s addrStep) String() string {
	switch {
	case s.key == cty.NilVal:
		return s.name
	case s.key.Type() == cty.String:
		return fmt.Sprintf("%s[%q]", s.name, s.key.AsString())
	default:
		return fmt.Sprintf("%s[%s]", s.name, s.key.AsBigFloat().String())
	}
}

func formatAddress(steps []addrStep) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = s.String()
	}
	return strings.Join(parts, ".")
}

// keyMode is the mode a key belongs to: a string key is for_each's, a number count's.
func keyMode(key cty.Value) string {
	if key.Type() == cty.String {
		return forEach
	}
	return count
}

// parseAddress reads a moved block's address: module.a["x"].module.b.aws_lb.this[0].
func parseAddress(expr hcl.Expression) ([]addrStep, error) {
	tr, diags := hcl.AbsTraversalForExpr(expr)
	if diags.HasErrors() {
		return nil, fmt.Errorf("not an address: %v", diags)
	}
	// Flatten to names and keys, then read module calls and, last, one resource.
	type token struct {
		name string
		key  cty.Value
	}
	tokens := []token{{name: tr.RootName()}}
	for _, step := range tr[1:] {
		switch s := step.(type) {
		case hcl.TraverseAttr:
			tokens = append(tokens, token{name: s.Name})
		case hcl.TraverseIndex:
			if s.Key.Type() != cty.String && s.Key.Type() != cty.Number {
				return nil, fmt.Errorf("a key must be a string or a number")
			}
			tokens = append(tokens, token{key: s.Key})
		default:
			return nil, fmt.Errorf("unexpected %T", step)
		}
	}
	if tokens[0].name == "data" {
		return nil, fmt.Errorf("data sources are not moved")
	}
	var steps []addrStep
	for len(tokens) > 0 {
		if len(tokens) < 2 || tokens[0].name == "" || tokens[1].name == "" {
			return nil, fmt.Errorf("an address is module.NAME or TYPE.NAME, each optionally [KEY]")
		}
		if len(steps) > 0 && !strings.HasPrefix(steps[len(steps)-1].name, "module.") {
			return nil, fmt.Errorf("%s is not a module call, so nothing can follow it", steps[len(steps)-1].name)
		}
		step := addrStep{name: tokens[0].name + "." + tokens[1].name}
		tokens = tokens[2:]
		if len(tokens) > 0 && tokens[0].name == "" {
			step.key = tokens[0].key
			tokens = tokens[1:]
		}
		steps = append(steps, step)
	}
	return steps, nil
}

// movedChecker resolves addresses over the tree's modules, loading each once.
type movedChecker struct {
	modules  map[string]moduleObjects
	problems []string
}

func (c *movedChecker) module(dir string) (moduleObjects, bool) {
	dir = filepath.Clean(dir)
	if m, ok := c.modules[dir]; ok {
		return m, true
	}
	if !isDir(dir) {
		return moduleObjects{}, false
	}
	m, p := loadModuleObjects(dir)
	c.problems = append(c.problems, p...)
	c.modules[dir] = m
	return m, true
}

// resolve follows the address steps from module dir to the object they name, through moved
// blocks where an object has moved on, and returns the object's mode and the key the address
// gives it (cty.NilVal for none).
func (c *movedChecker) resolve(dir string, steps []addrStep, depth int) (mode string, key cty.Value, err error) {
	if depth > 10 {
		return "", cty.NilVal, fmt.Errorf("moved blocks form a loop")
	}
	m, ok := c.module(dir)
	if !ok {
		return "", cty.NilVal, fmt.Errorf("%s is no module", dir)
	}
	first := steps[0]
	objMode, declared := m.objects[first.name]
	if !declared {
		// Moved on again? Follow a moved block of this module from exactly this address.
		for _, mb := range m.moved {
			if formatAddress(mb.from) == formatAddress(steps) {
				return c.resolve(dir, mb.to, depth+1)
			}
		}
		return "", cty.NilVal, fmt.Errorf("%s is not declared in %s", first.name, filepath.ToSlash(dir))
	}
	if first.key != cty.NilVal && objMode != keyMode(first.key) {
		return "", cty.NilVal, fmt.Errorf("%s: %s has no %s, so it has no instance %s", filepath.ToSlash(dir), first.name, keyMode(first.key), first)
	}
	if len(steps) == 1 {
		return objMode, first.key, nil
	}
	if objMode != single && first.key == cty.NilVal {
		return "", cty.NilVal, fmt.Errorf("%s: %s has %s: name one instance", filepath.ToSlash(dir), first.name, objMode)
	}
	src, ok := m.sources[strings.TrimPrefix(first.name, "module.")]
	if !ok {
		return "", cty.NilVal, fmt.Errorf("%s: %s has no local source", filepath.ToSlash(dir), first.name)
	}
	return c.resolve(src, steps[1:], depth+1)
}

// fits reports whether an object of mode fromMode, named with fromKey, can move to one of mode
// toMode named with toKey: one instance to one instance, all instances to all of the same mode.
func fits(fromMode string, fromKey cty.Value, toMode string, toKey cty.Value) bool {
	fromOne := fromKey != cty.NilVal || fromMode == single
	toOne := toKey != cty.NilVal || toMode == single
	if fromOne != toOne {
		return false
	}
	return fromOne || fromMode == toMode
}

// checkMoved reports, for the tree under root: addresses of state-addresses.txt that are
// neither declared nor moved, or moved where they do not fit; moved blocks whose from is still
// declared or whose to is not; and declared objects missing from the list.
func checkMoved(root string) []string {
	listed, problems := readStateAddresses(filepath.Join(root, stateAddressesFile))
	if len(problems) > 0 {
		return problems
	}
	dirs, err := moduleDirs(root)
	if err != nil {
		return []string{err.Error()}
	}
	c := &movedChecker{modules: map[string]moduleObjects{}}
	rel := func(dir string) string {
		r, _ := filepath.Rel(root, dir)
		return filepath.ToSlash(r)
	}

	inList := map[string]bool{}
	listedMode := map[string]string{}
	for _, a := range listed {
		inList[a.dir+" "+a.addr] = true
		listedMode[a.dir+" "+a.addr] = a.mode
		m, ok := c.module(filepath.Join(root, filepath.FromSlash(a.dir)))
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s: the module is gone; move what states hold of it (moved blocks in its callers), or take the lines out of %s if destroying it is meant", a.dir, a.addr, stateAddressesFile))
			continue
		}
		mode, declared := m.objects[a.addr]
		if declared && mode == a.mode || slices.ContainsFunc(m.moved, func(mb movedBlock) bool { return formatAddress(mb.from) == a.addr }) {
			continue // as it was, or moved (checked below)
		}
		if declared {
			problems = append(problems, fmt.Sprintf("%s: %s was %s, is now %s: states hold it the old way; add a moved block to its new instance (or fix %s if no state held it)", a.dir, a.addr, modeName(a.mode), modeName(mode), stateAddressesFile))
		} else {
			problems = append(problems, fmt.Sprintf("%s: %s is in %s but neither declared nor moved: terraform would destroy it; add a moved block to its new address", a.dir, a.addr, stateAddressesFile))
		}
	}

	for _, dir := range dirs {
		m, _ := c.module(dir)
		for _, mb := range m.moved {
			from := mb.from[0]
			declaredMode, declared := m.objects[from.name]
			if len(mb.from) == 1 && declared && declaredMode == single && from.key == cty.NilVal {
				problems = append(problems, fmt.Sprintf("%s: moved from %s, which is still declared", mb.where, formatAddress(mb.from)))
			}
			toMode, toKey, err := c.resolve(dir, mb.to, 0)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: moved to %s: %v", mb.where, formatAddress(mb.to), err))
				continue
			}
			// The from object's mode: as the list has it (what states hold), else as declared.
			fromMode, known := listedMode[rel(dir)+" "+from.name]
			if !known && declared {
				fromMode, known = declaredMode, true
			}
			if len(mb.from) == 1 && (known || from.key != cty.NilVal) && !fits(fromMode, from.key, toMode, toKey) {
				problems = append(problems, fmt.Sprintf("%s: moved from %s (%s) to %s (%s): one instance moves to one instance, a for_each or count resource to one of the same mode", mb.where, formatAddress(mb.from), modeName(fromMode), formatAddress(mb.to), modeName(toMode)))
			}
		}
		var missing []string
		for _, addr := range sortedKeys(m.objects) {
			if !inList[rel(dir)+" "+addr] {
				missing = append(missing, stateAddress{rel(dir), addr, m.objects[addr]}.String())
			}
		}
		for _, line := range missing {
			problems = append(problems, fmt.Sprintf("%s: %q is declared but not in %s (add the line; go test -update-state-addresses does)", rel(dir), line, stateAddressesFile))
		}
	}
	problems = append(problems, c.problems...)
	slices.Sort(problems)
	return slices.Compact(problems)
}

func modeName(mode string) string {
	if mode == single {
		return "a single instance"
	}
	return "with " + mode
}

// addMissingStateAddresses appends the declared objects the list lacks, keeping what it has.
func addMissingStateAddresses(root string) error {
	path := filepath.Join(root, stateAddressesFile)
	listed, problems := readStateAddresses(path)
	if len(problems) > 0 && !os.IsNotExist(firstErr(path)) {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	have := map[string]bool{}
	for _, a := range listed {
		have[a.dir+" "+a.addr] = true
	}
	dirs, err := moduleDirs(root)
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		m, p := loadModuleObjects(dir)
		if len(p) > 0 {
			return fmt.Errorf("%s", strings.Join(p, "; "))
		}
		r, _ := filepath.Rel(root, dir)
		for _, addr := range sortedKeys(m.objects) {
			if !have[filepath.ToSlash(r)+" "+addr] {
				listed = append(listed, stateAddress{filepath.ToSlash(r), addr, m.objects[addr]})
			}
		}
	}
	slices.SortFunc(listed, func(a, b stateAddress) int { return strings.Compare(a.dir+" "+a.addr, b.dir+" "+b.addr) })
	var sb strings.Builder
	sb.WriteString(stateAddressesHeader)
	for _, a := range listed {
		sb.WriteString(a.String() + "\n")
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

func firstErr(path string) error {
	_, err := os.Stat(path)
	return err
}

const stateAddressesHeader = `# Every address a deployed state may hold, by module: "<module dir> <address> [for_each|count]".
# go test ./terraform/ fails while one is neither declared nor the from of a moved block whose to
# is, so a refactor cannot destroy and recreate what it only renamed or moved into a module. Add
# new resources here (go test ./terraform/ -update-state-addresses adds what is declared); take
# a line out only when no state holds that address any more.
`
