package terraform_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herald-notify/herald/residency"
)

// policyFile is the residency policy the region roots must follow; its regions and
// jurisdictions are those of production (only the gateway URLs are local).
const policyFile = "../config/local/residency-policy.yaml"

func loadPolicy(t *testing.T, path string) *residency.Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := residency.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

// checks are the static checks by name, each over a directory tree.
func checks(policy *residency.Policy) map[string]func(root string) []string {
	return map[string]func(string) []string{
		"parse":      checkParse,
		"format":     checkFormat,
		"interfaces": checkModuleInterfaces,
		"pinned":     checkPinned,
		"moved":      checkMoved,
		"service":    checkServicePlumbing,
		"residency":  func(root string) []string { return checkResidency(root, policy) },
	}
}

func TestEveryCheckPassesOnTheTerraformTree(t *testing.T) {
	policy := loadPolicy(t, policyFile)
	for name, check := range checks(policy) {
		t.Run(name, func(t *testing.T) {
			for _, p := range check(".") {
				t.Error(p)
			}
		})
	}
}

// A check that silently looked at nothing would pass; this pins what the tree holds.
func TestTheChecksSeeEveryModuleAndRoot(t *testing.T) {
	dirs, err := moduleDirs(".")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"central",
		"modules/analytics", "modules/gateway", "modules/global_tier", "modules/network",
		"modules/region", "modules/residency", "modules/service",
		"regions/eu-central-1", "regions/eu-west-1", "regions/in-south-1", "regions/us-east-1",
	}
	var got []string
	for _, d := range dirs {
		got = append(got, filepath.ToSlash(d))
	}
	if !slices.Equal(got, want) {
		t.Errorf("module directories = %v, want %v", got, want)
	}
}

// Each fixture under testdata/<check>/<case>/ is broken in one way; its check must say so,
// with the words in want.
func TestEveryCheckFindsTheProblemInItsBrokenFixture(t *testing.T) {
	tests := []struct {
		check, fixture string
		want           string
	}{
		{"parse", "unclosed-block", "Unclosed configuration block"},
		{"format", "misaligned-arguments", "not formatted"},
		{"interfaces", "unknown-argument", `argument "size" is not a variable`},
		{"interfaces", "required-variable-not-set", `required variable "name"`},
		{"interfaces", "unknown-output", `has no output "address"`},
		{"interfaces", "undeclared-variable", "var.zone is not declared"},
		{"interfaces", "unknown-module", "module.netwrok is not a module call"},
		{"interfaces", "unknown-resource", "resource aws_security_group.task is not declared"},
		{"interfaces", "undefined-local", "local.tags is not defined"},
		{"interfaces", "template-variable-not-passed", "uses ${seeds}, which the call does not pass"},
		{"interfaces", "object-attribute-not-in-type", `attribute "helthy_threshold" is not in the variable's type, so terraform drops it`},
		{"interfaces", "object-attribute-missing", `attribute "path" is required by the variable's type`},
		{"service", "ecs-outside-service-module", "aws_ecs_service.worker: ECS services and their load balancers belong in modules/service"},
		{"service", "ecs-outside-service-module", "data.aws_iam_policy_document.ecs_assume names ecs-tasks.amazonaws.com"},
		{"pinned", "open-provider-version", `version ">= 5.0" is not pinned`},
		{"pinned", "no-required-version", "no required_version"},
		{"pinned", "provider-not-required", `provider "random" is used but not in required_providers`},
		{"residency", "region-in-wrong-jurisdiction", `declares jurisdiction "US", but the policy puts eu-west-1 in EU`},
		{"residency", "aws-region-outside-jurisdiction", `AWS region "us-east-1" is outside EU`},
		{"residency", "provider-in-another-region", `provider aws has region "eu-central-1"`},
		{"residency", "policy-region-without-root", "regions/eu-central-1: missing"},
		{"residency", "failover-order-drifted", "herald_regions[EU] is [eu-central-1 eu-west-1], the policy says [eu-west-1 eu-central-1]"},
		{"residency", "shared-state", "each region needs its own state"},
		{"residency", "second-gateway", "is not EU's first region: one gateway per jurisdiction"},
		{"residency", "gateway-with-other-countries", "module.gateway.countries is [US], want EU's countries [DE FR]"},
		{"residency", "primary-provider-elsewhere", `provider aws.primary has region "eu-central-1", but EU's Postgres primary is eu-west-1, in "eu-west-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.check+"/"+tt.fixture, func(t *testing.T) {
			dir := filepath.Join("testdata", tt.check, tt.fixture)
			// Residency fixtures carry their own, smaller policy.
			policy := (*residency.Policy)(nil)
			if tt.check == "residency" {
				policy = loadPolicy(t, filepath.Join(dir, "policy.yaml"))
			}
			problems := checks(policy)[tt.check](dir)
			for _, p := range problems {
				if strings.Contains(p, tt.want) {
					return
				}
			}
			t.Errorf("check %s on %s: want a problem containing %q, got %q", tt.check, dir, tt.want, problems)
		})
	}
}

// The residency fixtures are the valid tree below with one thing changed; the valid one passes,
// so each fixture's problem comes from its change.
func TestResidencyCheckPassesOnTheValidFixture(t *testing.T) {
	dir := filepath.Join("testdata", "residency", "valid")
	for _, p := range checkResidency(dir, loadPolicy(t, filepath.Join(dir, "policy.yaml"))) {
		t.Error(p)
	}
}

func TestEveryModuleCallPassesItsVariableValidations(t *testing.T) {
	problems, decided := checkValidations(".")
	for _, p := range problems {
		t.Error(p)
	}
	// The residency guards (region in jurisdiction, AWS region in jurisdiction, backup copies)
	// of four region roots and three gateways are among them, and modules/service's checks of
	// the eight calls to it (four regions' roles, three gateways, analytics); far fewer means
	// they were skipped.
	if decided < 80 {
		t.Errorf("only %d validations could be evaluated; want at least 80", decided)
	}
}

// Each fixture under testdata/validations/ is a region root calling the real modules with one
// guard broken; the valid one (backup copies inside the jurisdiction) passes.
func TestResidencyGuardsRefuseEachMisdeclaredRoot(t *testing.T) {
	tests := []struct {
		fixture string
		want    string // "" for no problem
	}{
		{"valid", ""},
		{"region-in-wrong-jurisdiction", "var.jurisdiction: validation fails: herald_region is not a region of this jurisdiction"},
		{"aws-region-outside-jurisdiction", "module.region: var.aws_region: validation fails: aws_region lies outside the jurisdiction"},
		{"backup-copy-outside-jurisdiction", "var.backup_copy_vault_arns: validation fails"},
		{"replica-region-outside-jurisdiction", "var.region_aws_regions: validation fails: Every region of the jurisdiction holds a replica"},
		{"postgres-primary-outside-jurisdiction", "var.postgres_primary_region: validation fails"},
		{"gateway-outside-jurisdiction", "module.gateway: var.aws_region: validation fails"},
		// The calls modules make are evaluated too: without the api role, modules/service's load
		// balancer (under the region's own check of its roles) has no service to send to.
		{"roles-without-api", "module.region.module.roles: var.load_balancer: validation fails: load_balancer.service must be one of services"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			problems, decided := checkValidations(filepath.Join("testdata", "validations", tt.fixture))
			if decided == 0 {
				t.Fatal("no validation was evaluated")
			}
			if tt.want == "" {
				for _, p := range problems {
					t.Error(p)
				}
				return
			}
			for _, p := range problems {
				if strings.Contains(p, tt.want) {
					return
				}
			}
			t.Errorf("want a problem containing %q, got %q", tt.want, problems)
		})
	}
}

// The moved check's broken cases are the valid fixture (testdata/moved/valid: a module whose
// ECS service and rules moved into a child module) with one edit each.
func TestMovedCheckFindsEachBrokenMove(t *testing.T) {
	valid := filepath.Join("testdata", "moved", "valid")
	for _, p := range checkMoved(valid) {
		t.Errorf("valid fixture: %s", p)
	}
	tests := []struct {
		name, file, old, new string
		want                 string
	}{
		{"renamed-without-moved", "modules/app/main.tf",
			`"aws_ecs_cluster" "this"`, `"aws_ecs_cluster" "main"`,
			"aws_ecs_cluster.this is in state-addresses.txt but neither declared nor moved"},
		{"moved-to-undeclared", "modules/app/main.tf",
			`module.service.aws_ecs_service.this["app"]`, `module.service.aws_ecs_service.main["app"]`,
			`moved to module.service.aws_ecs_service.main["app"]: aws_ecs_service.main is not declared in`},
		{"moved-from-still-declared", "modules/app/main.tf",
			`resource "aws_ecs_cluster" "this" {`, "resource \"aws_ecs_service\" \"this\" {\n  name = \"app\"\n}\n\nresource \"aws_ecs_cluster\" \"this\" {",
			"moved from aws_ecs_service.this, which is still declared"},
		{"instance-to-every-instance", "modules/app/main.tf",
			`module.service.aws_ecs_service.this["app"]`, `module.service.aws_ecs_service.this`,
			"moved from aws_ecs_service.this (a single instance) to module.service.aws_ecs_service.this (with for_each)"},
		{"key-of-a-single-resource", "modules/service/main.tf",
			"for_each  = toset([\"0.0.0.0/0\"])\n  cidr_ipv4 = each.key", `cidr_ipv4 = "0.0.0.0/0"`,
			`aws_vpc_security_group_ingress_rule.alb_https has no for_each, so it has no instance aws_vpc_security_group_ingress_rule.alb_https["0.0.0.0/0"]`},
		{"not-in-state-list", "state-addresses.txt",
			"modules/service aws_vpc_security_group_ingress_rule.tasks_from for_each\n", "",
			`"modules/service aws_vpc_security_group_ingress_rule.tasks_from for_each" is declared but not in state-addresses.txt`},
		{"became-for-each", "modules/app/main.tf",
			"name = \"app\"\n}", "for_each = toset([\"app\"])\n  name     = each.key\n}",
			"aws_ecs_cluster.this was a single instance, is now with for_each"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := checkMoved(editedFixture(t, valid, tt.file, tt.old, tt.new))
			for _, p := range problems {
				if strings.Contains(p, tt.want) {
					return
				}
			}
			t.Errorf("want a problem containing %q, got %q", tt.want, problems)
		})
	}
}

// editedFixture copies the fixture tree under src into a temporary directory and replaces old,
// which must occur once, with new in its file (slash-separated, relative to src).
func editedFixture(t *testing.T, src, file, old, new string) string {
	t.Helper()
	dir := copyFixture(t, src)
	path := filepath.Join(dir, filepath.FromSlash(file))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), old); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want once", file, old, n)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyFixture copies the tree under src into a new temporary directory.
func copyFixture(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
