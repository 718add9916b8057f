# The child outputs "id", not "address".
module "child" {
  source = "./child"
  name   = "a"
}

output "address" {
  value = module.child.address
}
