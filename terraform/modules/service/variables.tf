variable "name" {
  description = "Prefix of the shared resources' names (<name>-tasks, <name>-execution, <name>-task), e.g. herald-eu-west-1."
  type        = string
}

variable "aws_region" {
  description = "The AWS region the tasks run in (where they send their logs)."
  type        = string
}

variable "cluster_arn" {
  description = "The ECS cluster the services run in."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the tasks and the load balancer."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the tasks (private)."
  type        = list(string)
}

variable "herald_image" {
  description = "The herald container image, pinned by digest (repo@sha256:...)."
  type        = string

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.herald_image))
    error_message = "herald_image must be pinned by digest (...@sha256:<64 hex>), not a tag."
  }
}

variable "herald_args" {
  description = "What the container runs after `exec herald`: the subcommand and its flags, e.g. \"gateway\" or \"region --config /run/herald/region.yaml\"."
  type        = string
}

variable "files" {
  description = "Environment variables the start command writes to files under /run/herald (umask 077) before exec, for settings Herald reads from files only; unset (the default, for secrets) removes the variable from the environment afterwards. The image therefore needs /bin/sh."
  type = list(object({
    env   = string
    path  = string
    unset = optional(bool, true)
  }))
  default = []

  validation {
    condition     = alltrue([for f in var.files : startswith(f.path, "/run/herald/") && can(regex("^[A-Z][A-Z0-9_]*$", f.env))])
    error_message = "files: each path must be under /run/herald/ (the directory the start command creates) and each env a variable name."
  }
}

variable "container_port" {
  description = "The port Herald listens on in the container: the load balancer's target, and what the tasks' security group admits from it."
  type        = number

  validation {
    condition     = var.container_port >= 1024 && var.container_port <= 65535
    error_message = "container_port must be an unprivileged port (1024-65535)."
  }
}

variable "stop_timeout" {
  description = "Seconds ECS waits after SIGTERM before killing the container (Herald drains: readyz 503, then in-flight work). null leaves ECS's default (30 s)."
  type        = number
  default     = 60
}

variable "environment" {
  description = "Environment of every service's container, in order (name, value)."
  type = list(object({
    name  = string
    value = string
  }))
  default = []
}

variable "secrets" {
  description = "Secrets Manager secrets every service's container gets as environment variables (name, arn), in order; the execution role may read exactly these."
  type = list(object({
    name = string
    arn  = string
  }))
  default = []
}

variable "secrets_kms_key_arn" {
  description = "KMS key the secrets are encrypted with; the execution role may decrypt with it."
  type        = string
}

variable "execution_policy_name" {
  description = "Name of the execution role's inline policy that reads the secrets, e.g. read-region-secrets."
  type        = string
}

variable "task_role" {
  description = "Whether the tasks get a task role (<name>-task) of their own; without one they have no AWS credentials."
  type        = bool
  default     = false
}

variable "task_role_statements" {
  description = "IAM statements of the task role (needs task_role): the AWS APIs Herald itself calls."
  type = list(object({
    actions   = list(string)
    resources = list(string)
  }))
  default = []

  validation {
    condition     = var.task_role || length(var.task_role_statements) == 0
    error_message = "task_role_statements need task_role = true."
  }
}

variable "services" {
  description = "The ECS services, by service name: each its own task definition (family) and scaling, all of the same image, start command, secrets, security group and roles; environment is added to the shared one."
  type = map(object({
    family        = string
    cpu           = number
    memory        = number
    desired_count = number
    environment = optional(list(object({
      name  = string
      value = string
    })), [])
  }))

  validation {
    condition     = length(var.services) > 0
    error_message = "services must name at least one service."
  }
}

variable "deployment_circuit_breaker" {
  description = "Whether a deployment whose tasks do not become healthy stops and rolls back."
  type        = bool
  default     = true
}

variable "log_group_name" {
  description = "CloudWatch log group of every service's tasks; each service's streams are prefixed with its name."
  type        = string
}

variable "logs_kms_key_arn" {
  description = "KMS key for the log group."
  type        = string
}

variable "log_retention_days" {
  description = "How long the log group keeps logs."
  type        = number
  default     = 30
}

variable "security_group_descriptions" {
  description = "Descriptions of the tasks' security group (tasks), its egress rule (tasks_egress: what the tasks reach) and its ingress rule from the load balancer. A security group's description cannot change without replacing it."
  type = object({
    tasks                    = string
    tasks_egress             = string
    tasks_from_load_balancer = optional(string, "From the load balancer")
  })
}

variable "load_balancer" {
  description = <<-EOT
    The HTTPS load balancer in front of one of the services (service, a key of services): name
    (of the load balancer and target group, cut to 32 characters; its security group is
    <name>-alb; default var.name), description (of its security group, which cannot change
    without replacing it), subnet_ids (public), certificate_arn (of the HTTPS listener; none
    with TCP), allowed_cidrs (who may connect on 443) with allowed_description,
    target_protocol (how it reaches the tasks: HTTP; HTTPS for a container that serves only
    TLS, like a region's mutual-TLS API; or TCP: a network load balancer passes the stream
    through and the container terminates TLS itself, so it sees its callers' client
    certificates, like analytics' ingest) and the target group's health_check (path, asked over
    HTTPS with TCP; thresholds and interval left out take the AWS defaults).
  EOT
  type = object({
    service             = string
    name                = optional(string)
    description         = string
    subnet_ids          = list(string)
    certificate_arn     = optional(string)
    allowed_cidrs       = list(string)
    allowed_description = string
    target_protocol     = optional(string, "HTTP")
    health_check = object({
      path                = string
      healthy_threshold   = optional(number)
      unhealthy_threshold = optional(number)
      interval            = optional(number)
    })
  })

  validation {
    condition     = contains(keys(var.services), var.load_balancer.service)
    error_message = "load_balancer.service must be one of services."
  }

  validation {
    condition     = contains(["HTTP", "HTTPS", "TCP"], var.load_balancer.target_protocol)
    error_message = "load_balancer.target_protocol must be HTTP, HTTPS or TCP."
  }

  validation {
    condition     = (var.load_balancer.target_protocol == "TCP") == (var.load_balancer.certificate_arn == null)
    error_message = "load_balancer.certificate_arn is required for HTTP and HTTPS targets (the load balancer terminates TLS) and must be left out with TCP (the tasks do)."
  }

  validation {
    condition     = length(var.load_balancer.allowed_cidrs) > 0
    error_message = "load_balancer.allowed_cidrs must list who may connect."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
