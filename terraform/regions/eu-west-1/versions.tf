# Herald region eu-west-1 (EU), hosted in AWS eu-west-1. Its own state, in a bucket of its own AWS
# region, so `terraform apply` here touches this region only.
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
    bucket       = "herald-tfstate-eu-west-1"
    key          = "regions/eu-west-1/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = "eu-west-1"

  default_tags {
    tags = {
      Project      = "herald"
      HeraldRegion = "eu-west-1"
      ManagedBy    = "terraform/regions/eu-west-1"
    }
  }
}

# aws.primary: the AWS region of the region holding the jurisdiction's Postgres primary
# (module.residency.postgres_primary), which is this one: the alias is this region's provider.
provider "aws" {
  alias  = "primary"
  region = "eu-west-1"

  default_tags {
    tags = {
      Project      = "herald"
      HeraldRegion = "eu-west-1"
      ManagedBy    = "terraform/regions/eu-west-1"
    }
  }
}
