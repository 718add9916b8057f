# terraform fmt aligns the equals signs of consecutive arguments; these are not aligned.
resource "aws_vpc" "this" {
  cidr_block = "10.0.0.0/16"
  enable_dns_support = true
}
