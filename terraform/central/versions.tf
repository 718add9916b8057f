# Central analytics and the global tier: no personal data, so no jurisdiction. Own state, applied
# on its own, after the region roots (it allow-lists their egress addresses).
terraform {
  required_version = "~> 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  backend "s3" {
    bucket       = "herald-tfstate-central"
    key          = "central/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = "eu-west-1"

  default_tags {
    tags = {
      Project   = "herald"
      ManagedBy = "terraform/central"
    }
  }
}
