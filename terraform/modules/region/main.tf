# One Herald region: its network, keys, Kafka, Cassandra, Postgres, Redis and the four roles,
# in the caller's aws provider, which the root configures for var.aws_region. The stores a
# region needs to deliver are its jurisdiction's, shared by the jurisdiction's regions and
# replicated between them, never further (docs/residency.md, "Replication inside a
# jurisdiction"): its Cassandra nodes are a data centre of the jurisdiction's cluster, and its
# Postgres is the jurisdiction's primary (the first region) or a read replica of it. Kafka and
# Redis are the region's own.

locals {
  name = "herald-${var.herald_region}"
  # Store names derive from the jurisdiction, as region.StoreName does locally.
  store_name = "herald_${lower(var.jurisdiction)}"
  # The jurisdiction's regions in failover order, and the one holding the Postgres primary,
  # whose VPC the others peer with.
  jurisdiction_regions = var.policy_regions[var.jurisdiction]
  primary_region       = var.postgres_primary_region
  is_primary           = local.primary_region == var.herald_region
  siblings             = [for r in local.jurisdiction_regions : r if r != var.herald_region]
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
