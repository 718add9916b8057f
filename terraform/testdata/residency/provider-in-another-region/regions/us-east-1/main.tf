terraform {
  backend "s3" {
    bucket = "state-us-east-1"
    key    = "regions/us-east-1/terraform.tfstate"
    region = "us-east-1"
  }
}

provider "aws" {
  region = "us-east-1"
}

module "region" {
  source        = "../../modules/region"
  herald_region = "us-east-1"
  jurisdiction  = "US"
  aws_region    = "us-east-1"
}

module "gateway" {
  source       = "../../modules/gateway"
  jurisdiction = "US"
  countries    = module.residency.countries["US"]
}

provider "aws" {
  alias  = "primary"
  region = "us-east-1"
}
