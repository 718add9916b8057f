# The child's "name" has no default and is not set.
module "child" {
  source = "./child"
  cidr   = "10.1.0.0/16"
}
