output "task_security_group_id" {
  description = "The tasks' security group: stores admit the services by it."
  value       = aws_security_group.tasks.id
}

output "load_balancer_dns_name" {
  description = "The load balancer's DNS name."
  value       = aws_lb.this.dns_name
}

output "load_balancer_zone_id" {
  description = "The load balancer's hosted zone, for Route 53 alias records."
  value       = aws_lb.this.zone_id
}
