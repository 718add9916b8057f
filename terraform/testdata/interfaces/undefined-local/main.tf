# local.tags is used but no locals block defines it.
locals {
  name = "herald"
}

resource "aws_vpc" "this" {
  cidr_block = "10.0.0.0/16"
  tags       = local.tags
}
