terraform {
  backend "s3" {
    bucket = "state-eu-west-1"
    key    = "regions/eu-west-1/terraform.tfstate"
    region = "eu-west-1"
  }
}

provider "aws" {
  region = "eu-west-1"
}

module "region" {
  source        = "../../modules/region"
  herald_region = "eu-west-1"
  jurisdiction  = "EU"
  aws_region    = "eu-west-1"
}

module "gateway" {
  source       = "../../modules/gateway"
  jurisdiction = "EU"
  countries    = module.residency.countries["EU"]
}

provider "aws" {
  alias  = "primary"
  region = "eu-west-1"
}
