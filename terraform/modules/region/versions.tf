terraform {
  required_version = "~> 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
      # aws.primary: the AWS region of the jurisdiction's first region (the region's own when it
      # is that region): the Postgres primary and the VPC the jurisdiction's regions peer with.
      configuration_aliases = [aws.primary]
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}
