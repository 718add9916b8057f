module "residency" {
  source = "../../modules/residency"
}

module "region" {
  source = "../../modules/region"
  providers = {
    aws         = aws
    aws.primary = aws.primary
  }

  herald_region              = "eu-central-1"
  jurisdiction               = "EU"
  aws_region                 = "eu-central-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
  availability_zones         = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
  vpc_cidr                   = module.residency.vpc_cidrs["eu-central-1"]
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
