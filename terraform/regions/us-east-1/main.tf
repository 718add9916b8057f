module "residency" {
  source = "../../modules/residency"
}

module "region" {
  source = "../../modules/region"
  providers = {
    aws         = aws
    aws.primary = aws.primary
  }

  herald_region              = "us-east-1"
  jurisdiction               = "US"
  aws_region                 = "us-east-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
  availability_zones         = ["us-east-1a", "us-east-1b", "us-east-1c"]
  vpc_cidr                   = module.residency.vpc_cidrs["us-east-1"]
  region_vpc_cidrs           = module.residency.vpc_cidrs
  region_aws_regions         = module.residency.aws_regions
  postgres_primary_region    = module.residency.postgres_primary["US"]
  herald_image               = var.herald_image
  api_certificate_arn        = var.api_certificate_arn
  api_allowed_cidrs          = var.gateway_egress_cidrs
  consul_http_addr           = var.consul_http_addr
  backup_copy_vault_arns     = var.backup_copy_vault_arns
  dispatch_environment       = var.dispatch_environment

  cassandra = {
    ami_id         = var.cassandra_ami_id
    instance_type  = "r7g.xlarge"
    nodes          = 3
    volume_size_gb = 1000
  }
}

# us-east-1 is the first region of US in the policy, so the jurisdiction's gateway runs here.
module "gateway" {
  source = "../../modules/gateway"

  jurisdiction               = "US"
  aws_region                 = "us-east-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
  countries                  = module.residency.countries["US"]
  default_route              = true
  route53_zone_id            = var.route53_zone_id
  api_domain                 = var.api_domain
  jurisdiction_domain        = "us.${var.api_domain}"
  certificate_arn            = var.gateway_certificate_arn
  vpc_id                     = module.region.vpc_id
  public_subnet_ids          = module.region.public_subnet_ids
  private_subnet_ids         = module.region.private_subnet_ids
  ecs_cluster_arn            = module.region.ecs_cluster_arn
  logs_kms_key_arn           = module.region.logs_kms_key_arn
  herald_image               = var.herald_image
  consul_http_addr           = var.consul_http_addr
}
