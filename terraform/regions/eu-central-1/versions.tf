# Herald region eu-central-1 (EU), hosted in AWS eu-central-1. Its own state, in a bucket of its own AWS
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
    bucket       = "herald-tfstate-eu-central-1"
    key          = "regions/eu-central-1/terraform.tfstate"
    region       = "eu-central-1"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = "eu-central-1"

  default_tags {
    tags = {
      Project      = "herald"
      HeraldRegion = "eu-central-1"
      ManagedBy    = "terraform/regions/eu-central-1"
    }
  }
}

# aws.primary: the AWS region of eu-west-1, which holds the jurisdiction's Postgres primary
# (module.residency.postgres_primary) and the VPC this region peers with. Only the peering's
# accepting side, the routes back and data sources use it.
provider "aws" {
  alias  = "primary"
  region = "eu-west-1"

  default_tags {
    tags = {
      Project      = "herald"
      HeraldRegion = "eu-central-1"
      ManagedBy    = "terraform/regions/eu-central-1"
    }
  }
}
