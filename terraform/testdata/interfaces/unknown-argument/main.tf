# The child has no variable "size".
module "child" {
  source = "./child"
  name   = "a"
  size   = 3
}
