output "herald_regions" {
  description = "Jurisdiction -> Herald regions in failover order, as in the residency policy."
  value       = local.herald_regions
}

output "aws_regions" {
  description = "Herald region -> the AWS region hosting it."
  value       = local.aws_regions
}

output "cloud_regions" {
  description = "Jurisdiction -> the AWS regions where its personal data, and copies of it, may be."
  value       = local.cloud_regions
}

output "countries" {
  description = "Jurisdiction -> its countries, as in the residency policy."
  value       = local.countries
}

output "vpc_cidrs" {
  description = "Herald region -> its VPC CIDR (the jurisdiction's regions peer their VPCs)."
  value       = local.vpc_cidrs
}

output "postgres_primary" {
  description = "Jurisdiction -> the Herald region holding its Postgres primary."
  value       = local.postgres_primary
}
