module "residency" {
  source = "../../../../../modules/residency"
}

module "region" {
  source = "../../../../../modules/region"

  herald_region              = "eu-west-1"
  jurisdiction               = "US"
  aws_region                 = "us-east-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
  availability_zones         = ["us-east-1a", "us-east-1b", "us-east-1c"]
}
