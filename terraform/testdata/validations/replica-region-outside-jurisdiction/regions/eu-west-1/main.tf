module "residency" {
  source = "../../../../../modules/residency"
}

module "region" {
  source = "../../../../../modules/region"

  herald_region              = "eu-west-1"
  jurisdiction               = "EU"
  aws_region                 = "eu-west-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
  availability_zones         = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  backup_copy_vault_arns     = ["arn:aws:backup:eu-central-1:123456789012:backup-vault:herald-dr"]
  region_vpc_cidrs           = module.residency.vpc_cidrs
  region_aws_regions         = merge(module.residency.aws_regions, { "eu-central-1" = "us-east-1" })
  postgres_primary_region    = module.residency.postgres_primary["EU"]
}

module "gateway" {
  source = "../../../../../modules/gateway"

  jurisdiction               = "EU"
  aws_region                 = "eu-west-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
}
