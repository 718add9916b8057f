output "herald_region" {
  description = "The Herald region deployed."
  value       = var.herald_region
}

output "jurisdiction" {
  description = "Its jurisdiction."
  value       = var.jurisdiction
}

output "api_url" {
  description = "The regional API the gateway calls (register it in discovery as herald-region)."
  value       = "https://${module.roles.load_balancer_dns_name}"
}

output "vpc_id" {
  description = "The region's VPC; a gateway deployed in the same root runs in it."
  value       = module.network.vpc_id
}

output "public_subnet_ids" {
  description = "Public subnets, for load balancers."
  value       = module.network.public_subnet_ids
}

output "private_subnet_ids" {
  description = "Private subnets, for tasks."
  value       = module.network.private_subnet_ids
}

output "egress_ips" {
  description = "The region's NAT addresses: allow-list them at analytics."
  value       = module.network.nat_public_ips
}

output "ecs_cluster_arn" {
  description = "The ECS cluster running the roles."
  value       = aws_ecs_cluster.this.arn
}

output "logs_kms_key_arn" {
  description = "KMS key for log groups in this region."
  value       = aws_kms_key.logs.arn
}

output "internal_token_secret_arn" {
  description = "Secret holding the token the gateway presents to this region."
  value       = aws_secretsmanager_secret.internal_token.arn
}

output "kafka_bootstrap_brokers" {
  description = "MSK bootstrap brokers (plaintext, VPC only)."
  value       = aws_msk_cluster.this.bootstrap_brokers
}

output "postgres_endpoint" {
  description = "RDS endpoint."
  value       = aws_db_instance.this.endpoint
}

output "cassandra_hosts" {
  description = "Cassandra node addresses."
  value       = local.cassandra_ips
}
