# The residency facts every root shares, in one place. herald_regions and countries must match
# the residency policy (config/local/residency-policy.yaml, docs/residency.md), regions in the
# failover order: terraform/terraform_test.go fails when they drift apart. This module creates
# nothing; it only answers.

locals {
  # Jurisdiction -> Herald regions, in failover order (the first is home).
  herald_regions = {
    EU = ["eu-west-1", "eu-central-1"]
    US = ["us-east-1"]
    IN = ["in-south-1"]
  }

  # Jurisdiction -> countries (ISO 3166-1 alpha-2), as in the policy: the gateways' DNS
  # geolocation records answer each with its jurisdiction's gateway.
  countries = {
    EU = [
      "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT",
      "RO", "SE", "SI", "SK", "IS", "LI", "NO", "CH", "AX", "GF", "GP", "MQ", "RE", "YT", "MF",
    ]
    US = [
      "US", "PR", "VI", "GU", "AS", "MP", "UM", "CA", "MX",
      "AG", "BS", "BB", "BZ", "CR", "CU", "DM", "DO", "SV", "GD", "GT", "HT", "HN", "JM", "NI", "PA", "KN", "LC", "VC", "TT",
      "AR", "BO", "BR", "CL", "CO", "EC", "GY", "PY", "PE", "SR", "UY", "VE",
    ]
    IN = ["IN"]
  }

  # Herald region -> the AWS region that hosts it. Herald's names follow AWS's where they can;
  # in-south-1 is AWS's Mumbai region.
  aws_regions = {
    "eu-west-1"    = "eu-west-1"
    "eu-central-1" = "eu-central-1"
    "us-east-1"    = "us-east-1"
    "in-south-1"   = "ap-south-1"
  }

  # Jurisdiction -> the region holding its Postgres primary (the others hold read replicas of
  # it, and peer their VPCs with it). The first region unless a promotion moved it: after
  # promoting a replica (docs/runbook.md, "Losing a region"), name its region here and apply
  # every root of the jurisdiction, the roots' aws.primary provider following.
  postgres_primary = {
    EU = "eu-west-1"
    US = "us-east-1"
    IN = "in-south-1"
  }

  # Herald region -> its VPC's CIDR, one per region and never overlapping: the regions of a
  # jurisdiction peer their VPCs (Cassandra's data centres gossip and stream, the tasks reach
  # the jurisdiction's Postgres primary), and each computes the others' Cassandra seeds from it.
  vpc_cidrs = {
    "eu-west-1"    = "10.10.0.0/16"
    "eu-central-1" = "10.11.0.0/16"
    "us-east-1"    = "10.20.0.0/16"
    "in-south-1"   = "10.30.0.0/16"
  }

  # Jurisdiction -> the AWS regions inside it: where a jurisdiction's personal data, and any
  # copy of it (backups, replicas), may be. EU: regions in EU member states only (Ireland,
  # Paris, Frankfurt, Stockholm, Milan, Spain); not London or Zurich, which are outside the EU
  # even where an adequacy decision exists. IN: Mumbai and Hyderabad.
  cloud_regions = {
    EU = ["eu-west-1", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2"]
    US = ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]
    IN = ["ap-south-1", "ap-south-2"]
  }
}
