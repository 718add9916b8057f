# A typo: module.netwrok instead of module.child.
module "child" {
  source = "./child"
  name   = "a"
}

output "id" {
  value = module.netwrok.id
}
