locals {
  herald_regions = {
    EU = ["eu-west-1", "eu-central-1"]
    US = ["us-east-1"]
  }
  countries = {
    EU = ["DE", "FR"]
    US = ["US"]
  }
  aws_regions = {
    "eu-west-1"    = "eu-west-1"
    "eu-central-1" = "eu-central-1"
    "us-east-1"    = "us-east-1"
  }
  cloud_regions = {
    EU = ["eu-west-1", "eu-central-1"]
    US = ["us-east-1"]
  }
  postgres_primary = {
    EU = "eu-west-1"
    US = "us-east-1"
  }
}
