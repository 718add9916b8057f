# One Herald region: its network, keys, Kafka, Cassandra, Postgres, Redis and the four roles,
# all in the caller's aws provider, which the root configures for var.aws_region. Nothing here
# replicates to or reads from another region.

locals {
  name = "herald-${var.herald_region}"
  # Store names derive from the region name, as region.StoreName does locally.
  store_name = "herald_${replace(var.herald_region, "-", "_")}"
  tags = merge(var.tags, {
    Project      = "herald"
    HeraldRegion = var.herald_region
    Jurisdiction = var.jurisdiction
    PersonalData = "true"
  })
}

data "aws_caller_identity" "current" {}

module "network" {
  source = "../network"

  name               = local.name
  cidr_block         = var.vpc_cidr
  availability_zones = var.availability_zones
  kms_key_arn        = aws_kms_key.logs.arn
  tags               = local.tags
}
