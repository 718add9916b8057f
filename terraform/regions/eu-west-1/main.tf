module "residency" {
  source = "../../modules/residency"
}

module "region" {
  source = "../../modules/region"
  providers = {
    aws         = aws
    aws.primary = aws.primary
  }

  herald_region              = "eu-west-1"
  jurisdiction               = "EU"
  aws_region                 = "eu-west-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
  availability_zones         = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  vpc_cidr                   = module.residency.vpc_cidrs["eu-west-1"]
  region_vpc_cidrs           = module.residency.vpc_cidrs
  region_aws_regions         = module.residency.aws_regions
  postgres_primary_region    = module.residency.postgres_primary["EU"]
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

# eu-west-1 is the first region of EU in the policy, so the jurisdiction's gateway runs here.
module "gateway" {
  source = "../../modules/gateway"

  jurisdiction               = "EU"
  aws_region                 = "eu-west-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
  countries                  = module.residency.countries["EU"]
  default_route              = false
  route53_zone_id            = var.route53_zone_id
  api_domain                 = var.api_domain
  jurisdiction_domain        = "eu.${var.api_domain}"
  certificate_arn            = var.gateway_certificate_arn
  vpc_id                     = module.region.vpc_id
  public_subnet_ids          = module.region.public_subnet_ids
  private_subnet_ids         = module.region.private_subnet_ids
  ecs_cluster_arn            = module.region.ecs_cluster_arn
  logs_kms_key_arn           = module.region.logs_kms_key_arn
  herald_image               = var.herald_image
  consul_http_addr           = var.consul_http_addr
}
