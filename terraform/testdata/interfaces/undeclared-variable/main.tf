# var.zone is used but never declared.
module "child" {
  source = "./child"
  name   = var.zone
}
