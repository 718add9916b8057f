# random is used but not required: terraform init would take whatever version is newest.
terraform {
  required_version = "~> 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

resource "random_password" "this" {
  length = 32
}
