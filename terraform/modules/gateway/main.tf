# A jurisdiction's gateway: public HTTPS load balancer, the gateway tasks, a small Redis for
# rate limits, and its secrets. It runs in the hosting region's VPC and ECS cluster. The global
# tier it reads (apps, hashed API keys, keyed-hash directory: no personal data) is one database
# for every gateway, created by terraform/central; its URL is a secret here.

locals {
  name = "herald-gw-${lower(var.jurisdiction)}"
  tags = merge(var.tags, { Project = "herald", Component = "gateway", Jurisdiction = var.jurisdiction })

  # Secret -> the variable it reaches the process as. All are created empty and put by
  # operators (docs/runbook.md), so none passes through Terraform state.
  secrets = {
    global-tier-url  = "HERALD_POSTGRES_URL"
    region-token     = "HERALD_GATEWAY_REGION_TOKEN"
    directory-secret = "HERALD_SECRET_DIRECTORY"
  }

  start_command = join(" && ", [
    "umask 077",
    "mkdir -p /run/herald",
    "printf '%s' \"$HERALD_SECRET_DIRECTORY\" >/run/herald/directory-secret",
    "unset HERALD_SECRET_DIRECTORY",
    "exec herald gateway",
  ])
}

resource "aws_kms_key" "this" {
  description         = "${local.name}: secrets and Redis"
  enable_key_rotation = true
  multi_region        = false
  tags                = local.tags
}

resource "aws_secretsmanager_secret" "this" {
  for_each    = local.secrets
  name        = "${local.name}/${each.key}"
  description = "Gateway ${var.jurisdiction}: ${each.value}"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/herald/gateway-${lower(var.jurisdiction)}"
  retention_in_days = 30
  kms_key_id        = var.logs_kms_key_arn
  tags              = local.tags
}

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Public API"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  security_group_id = aws_security_group.alb.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "Apps and user clients"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  description                  = "To the gateway tasks"
}

resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "Gateway tasks"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  description                  = "From the load balancer"
}

resource "aws_vpc_security_group_egress_rule" "tasks_out" {
  security_group_id = aws_security_group.tasks.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "Regions' APIs, the global tier, Consul, Redis"
}

resource "aws_security_group" "redis" {
  name        = "${local.name}-redis"
  description = "Gateway rate-limit Redis"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = aws_security_group.redis.id
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  description                  = "Gateway tasks"
}

resource "aws_elasticache_subnet_group" "this" {
  name       = local.name
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = local.name
  description                = "Gateway ${var.jurisdiction}: per-key rate limits"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = "cache.t4g.medium"
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this.arn
  transit_encryption_enabled = false
  tags                       = local.tags
}

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = "read-gateway-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = "secretsmanager:GetSecretValue", Resource = [for s in aws_secretsmanager_secret.this : s.arn] },
      { Effect = "Allow", Action = "kms:Decrypt", Resource = aws_kms_key.this.arn },
    ]
  })
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 2048
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "ARM64"
  }

  container_definitions = jsonencode([{
    name       = "herald"
    image      = var.herald_image
    essential  = true
    entryPoint = ["/bin/sh", "-c"]
    command    = [local.start_command]
    environment = [
      { name = "HERALD_GATEWAY_LISTEN", value = "0.0.0.0:8080" },
      { name = "HERALD_GATEWAY_JURISDICTION", value = var.jurisdiction },
      # How the gateway recognises its own gateway_url in the policy (and does not 307 to itself).
      { name = "HERALD_GATEWAY_PUBLIC_URL", value = "https://${var.jurisdiction_domain}" },
      { name = "HERALD_GATEWAY_DIRECTORY_SECRET_FILE", value = "/run/herald/directory-secret" },
      { name = "HERALD_GATEWAY_RATE_LIMIT_PER_MINUTE", value = tostring(var.rate_limit_per_minute) },
      { name = "HERALD_REDIS_ADDR", value = "${aws_elasticache_replication_group.this.primary_endpoint_address}:6379" },
      { name = "HERALD_DISCOVERY_BACKEND", value = "consul" },
      { name = "CONSUL_HTTP_ADDR", value = var.consul_http_addr },
      { name = "HERALD_LOG_FORMAT", value = "json" },
    ]
    secrets      = [for k, s in aws_secretsmanager_secret.this : { name = local.secrets[k], valueFrom = s.arn }]
    portMappings = [{ containerPort = 8080, protocol = "tcp" }]
    stopTimeout  = 60
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = "gateway"
      }
    }
  }])

  tags = local.tags
}

resource "aws_lb" "this" {
  name                       = local.name
  load_balancer_type         = "application"
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  tags                       = local.tags
}

resource "aws_lb_target_group" "this" {
  name                 = local.name
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = "/readyz"
    healthy_threshold   = 2
    unhealthy_threshold = 2
    interval            = 10
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

resource "aws_ecs_service" "this" {
  name                               = "gateway"
  cluster                            = var.ecs_cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = "herald"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = local.tags
}
