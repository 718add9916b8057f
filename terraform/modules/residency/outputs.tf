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
