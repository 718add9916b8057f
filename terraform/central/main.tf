data "aws_caller_identity" "current" {}

resource "aws_kms_key" "central" {
  description         = "herald central: analytics and global tier"
  enable_key_rotation = true
  multi_region        = false
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.eu-west-1.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
      },
    ]
  })
}

module "network" {
  source = "../modules/network"

  name               = "herald-central"
  cidr_block         = "10.90.0.0/16"
  availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  kms_key_arn        = aws_kms_key.central.arn
}

module "analytics" {
  source = "../modules/analytics"

  aws_region          = "eu-west-1"
  vpc_id              = module.network.vpc_id
  public_subnet_ids   = module.network.public_subnet_ids
  private_subnet_ids  = module.network.private_subnet_ids
  kms_key_arn         = aws_kms_key.central.arn
  herald_image        = var.herald_image
  region_egress_cidrs = var.region_egress_cidrs
}

module "global_tier" {
  source = "../modules/global_tier"

  vpc_id               = module.network.vpc_id
  public_subnet_ids    = module.network.public_subnet_ids
  kms_key_arn          = aws_kms_key.central.arn
  gateway_egress_cidrs = var.gateway_egress_cidrs
}
