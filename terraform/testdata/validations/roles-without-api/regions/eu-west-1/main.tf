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
  roles                      = { fanout = { cpu = 2048, memory = 4096, desired_count = 3 } }
}
