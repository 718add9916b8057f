# The jurisdiction's regions reach each other over VPC peering, and nothing else does: the
# Cassandra data centres gossip and stream between them, and the tasks of a region that is not
# the primary's write to the Postgres primary there. A region that does not hold the primary
# requests a peering with the primary's region's VPC and accepts it on that side (aws.primary),
# with the routes both ways. The peers are regions of the jurisdiction only (var.region_aws_regions'
# validation), so no store's traffic leaves it.
#
# Scope: each region peers with the primary's region, which is every pair in a jurisdiction of
# two regions (EU). A third region also needs peerings with the second; add them
# with another provider alias when a jurisdiction grows to three.

data "aws_vpc" "primary" {
  count    = local.is_primary ? 0 : 1
  provider = aws.primary

  tags = {
    Name = "herald-${local.primary_region}"
  }
}

resource "aws_vpc_peering_connection" "primary" {
  count       = local.is_primary ? 0 : 1
  vpc_id      = module.network.vpc_id
  peer_vpc_id = data.aws_vpc.primary[0].id
  peer_region = var.region_aws_regions[local.primary_region]
  tags        = merge(local.tags, { Name = "${local.name}-to-${local.primary_region}" })
}

resource "aws_vpc_peering_connection_accepter" "primary" {
  count                     = local.is_primary ? 0 : 1
  provider                  = aws.primary
  vpc_peering_connection_id = aws_vpc_peering_connection.primary[0].id
  auto_accept               = true
  tags                      = merge(local.tags, { Name = "${local.primary_region}-from-${local.name}" })
}

data "aws_route_tables" "own_private" {
  vpc_id = module.network.vpc_id

  filter {
    name   = "tag:Name"
    values = ["${local.name}-private-*"]
  }
}

data "aws_route_tables" "primary_private" {
  count    = local.is_primary ? 0 : 1
  provider = aws.primary
  vpc_id   = data.aws_vpc.primary[0].id

  filter {
    name   = "tag:Name"
    values = ["herald-${local.primary_region}-private-*"]
  }
}

resource "aws_route" "to_primary" {
  for_each                  = local.is_primary ? toset([]) : toset(data.aws_route_tables.own_private.ids)
  route_table_id            = each.value
  destination_cidr_block    = var.region_vpc_cidrs[local.primary_region]
  vpc_peering_connection_id = aws_vpc_peering_connection.primary[0].id
}

resource "aws_route" "from_primary" {
  for_each                  = local.is_primary ? toset([]) : toset(data.aws_route_tables.primary_private[0].ids)
  provider                  = aws.primary
  route_table_id            = each.value
  destination_cidr_block    = var.vpc_cidr
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.primary[0].id
}
