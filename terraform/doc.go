// Package terraform holds Herald's infrastructure as Terraform (modules/, one root per region
// under regions/, central/) and, in its tests, the static checks that stand in for
// `terraform validate` where no terraform binary can be installed: every file parses and is
// formatted, module calls match the modules' variables (object arguments attribute by
// attribute) and outputs, providers and Terraform itself are pinned, each region root agrees
// with the residency policy, the variable validations (the residency guards among them) hold
// for what each root passes and what the modules pass on, ECS services are declared only in
// modules/service, and every address a deployed state holds (state-addresses.txt) is still
// declared or moved there. See README.md.
package terraform
