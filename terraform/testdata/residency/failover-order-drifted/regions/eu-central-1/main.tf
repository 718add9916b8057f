terraform {
  backend "s3" {
    bucket = "state-eu-central-1"
    key    = "regions/eu-central-1/terraform.tfstate"
    region = "eu-central-1"
  }
}

provider "aws" {
  region = "eu-central-1"
}

module "region" {
  source        = "../../modules/region"
  herald_region = "eu-central-1"
  jurisdiction  = "EU"
  aws_region    = "eu-central-1"
}

provider "aws" {
  alias  = "primary"
  region = "eu-central-1"
}
