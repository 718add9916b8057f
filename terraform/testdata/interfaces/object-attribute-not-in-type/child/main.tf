variable "health_check" {
  type = object({
    path              = string
    healthy_threshold = optional(number)
  })
}

output "path" {
  value = var.health_check.path
}
