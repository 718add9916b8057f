module "residency" {
  source = "../../../../../modules/residency"
}

module "region" {
  source = "../../../../../modules/region"

  herald_region              = "in-south-1"
  jurisdiction               = "IN"
  aws_region                 = "ap-south-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
  availability_zones         = ["ap-south-1a", "ap-south-1b", "ap-south-1c"]
}

module "gateway" {
  source = "../../../../../modules/gateway"

  jurisdiction               = "IN"
  aws_region                 = "eu-west-1"
  policy_regions             = module.residency.herald_regions
  jurisdiction_cloud_regions = module.residency.cloud_regions
}
