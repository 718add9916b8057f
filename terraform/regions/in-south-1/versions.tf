# Herald region in-south-1 (IN), hosted in AWS ap-south-1. Its own state, in a bucket of its own AWS
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
    bucket       = "herald-tfstate-in-south-1"
    key          = "regions/in-south-1/terraform.tfstate"
    region       = "ap-south-1"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = "ap-south-1"

  default_tags {
    tags = {
      Project      = "herald"
      HeraldRegion = "in-south-1"
      ManagedBy    = "terraform/regions/in-south-1"
    }
  }
}

# aws.primary: the AWS region of the region holding the jurisdiction's Postgres primary
# (module.residency.postgres_primary), which is this one: the alias is this region's provider.
provider "aws" {
  alias  = "primary"
  region = "ap-south-1"

  default_tags {
    tags = {
      Project      = "herald"
      HeraldRegion = "in-south-1"
      ManagedBy    = "terraform/regions/in-south-1"
    }
  }
}
