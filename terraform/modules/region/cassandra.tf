# Apache Cassandra 5.0 on EC2, one rack per zone. Amazon Keyspaces is not used: it has no SAI
# indexes, and erasure finds a user's inbox and delivery-log rows through them. The nodes are
# this region's data centre (named for the region) of the jurisdiction's cluster
# (herald-<jurisdiction>): the keyspace herald_<jurisdiction> keeps 3 replicas in each region of
# the jurisdiction (Herald's cassandra.replication), and no region of another jurisdiction
# ever joins (seeds and gossip rules are the jurisdiction's VPCs only).

locals {
  # Fixed private addresses (the 11th upwards of each private subnet), so the seed list is
  # known before the instances exist.
  cassandra_ips = [
    for i in range(var.cassandra.nodes) :
    cidrhost(cidrsubnet(var.vpc_cidr, 4, 8 + i % 3), 10 + floor(i / 3))
  ]
  # Every region's first three addresses are its seeds, so each region knows the others' from
  # their VPC CIDRs: every node lists its own data centre's seeds and those of the others.
  jurisdiction_seeds = flatten([
    for r in local.jurisdiction_regions : [
      for i in range(3) : cidrhost(cidrsubnet(var.region_vpc_cidrs[r], 4, 8 + i), 10)
    ]
  ])
}

resource "aws_security_group" "cassandra" {
  name        = "${local.name}-cassandra"
  description = "Cassandra nodes: CQL from the Herald tasks, gossip between nodes"
  vpc_id      = module.network.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "cassandra_cql" {
  security_group_id            = aws_security_group.cassandra.id
  referenced_security_group_id = module.roles.task_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 9042
  to_port                      = 9042
  description                  = "CQL from Herald tasks"
}

resource "aws_vpc_security_group_ingress_rule" "cassandra_gossip" {
  security_group_id            = aws_security_group.cassandra.id
  referenced_security_group_id = aws_security_group.cassandra.id
  ip_protocol                  = "tcp"
  from_port                    = 7000
  to_port                      = 7001
  description                  = "Inter-node gossip and streaming"
}

resource "aws_vpc_security_group_ingress_rule" "cassandra_gossip_jurisdiction" {
  for_each          = toset(local.siblings)
  security_group_id = aws_security_group.cassandra.id
  cidr_ipv4         = var.region_vpc_cidrs[each.value]
  ip_protocol       = "tcp"
  from_port         = 7000
  to_port           = 7001
  description       = "Gossip and streaming with the data centre of ${each.value}, a region of ${var.jurisdiction}"
}

resource "aws_vpc_security_group_egress_rule" "cassandra_out" {
  security_group_id = aws_security_group.cassandra.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "Package installs and SSM through the NAT gateways"
}

resource "aws_iam_role" "cassandra" {
  name = "${local.name}-cassandra"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

# Operators reach the nodes through Session Manager: no SSH keys, no bastion.
resource "aws_iam_role_policy_attachment" "cassandra_ssm" {
  role       = aws_iam_role.cassandra.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "cassandra" {
  name = "${local.name}-cassandra"
  role = aws_iam_role.cassandra.name
}

resource "aws_instance" "cassandra" {
  count                  = var.cassandra.nodes
  ami                    = var.cassandra.ami_id
  instance_type          = var.cassandra.instance_type
  subnet_id              = module.network.private_subnet_ids[count.index % 3]
  private_ip             = local.cassandra_ips[count.index]
  vpc_security_group_ids = [aws_security_group.cassandra.id]
  iam_instance_profile   = aws_iam_instance_profile.cassandra.name
  user_data = templatefile("${path.module}/cassandra-init.sh.tftpl", {
    cluster_name = "herald-${lower(var.jurisdiction)}"
    datacenter   = var.herald_region
    rack         = var.availability_zones[count.index % 3]
    seeds        = join(",", local.jurisdiction_seeds)
  })

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    volume_size = 30
    encrypted   = true
    kms_key_id  = aws_kms_key.data.arn
  }

  ebs_block_device {
    device_name = "/dev/sdf"
    volume_type = "gp3"
    volume_size = var.cassandra.volume_size_gb
    encrypted   = true
    kms_key_id  = aws_kms_key.data.arn
  }

  tags = merge(local.tags, {
    Name         = "${local.name}-cassandra-${count.index}"
    HeraldBackup = local.name
  })
}
