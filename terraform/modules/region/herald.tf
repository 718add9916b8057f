# The Herald roles on ECS Fargate, one service per role. Store addresses reach the processes as
# the HERALD_* variables the config loader reads; settings that differ from the local defaults
# (replication, partitions) as a rendered config file, since Herald reads those from YAML only.
# The image needs /bin/sh for the start command (a distroless :debug or Debian base).

locals {
  region_config = yamlencode({
    name             = var.herald_region
    jurisdiction     = var.jurisdiction
    listen           = "0.0.0.0:8080"
    topic_partitions = 12
    replication      = 3
    kafka            = { version = replace(var.kafka.version, ".x", ".0") } # MSK's 3.9.x speaks 3.9.0
    cassandra        = { replication_factor = 3, consistency = "LOCAL_QUORUM" }
    telemetry        = { log_level = "info", log_format = "json" }
  })

  environment = [
    { name = "HERALD_KAFKA_BROKERS", value = aws_msk_cluster.this.bootstrap_brokers },
    { name = "HERALD_CASSANDRA_HOSTS", value = join(",", [for ip in local.cassandra_ips : "${ip}:9042"]) },
    { name = "HERALD_REDIS_ADDR", value = "${aws_elasticache_replication_group.this.primary_endpoint_address}:6379" },
    { name = "HERALD_DISCOVERY_BACKEND", value = "consul" },
    { name = "CONSUL_HTTP_ADDR", value = var.consul_http_addr },
    { name = "HERALD_REGION_CONFIG_YAML", value = local.region_config },
    { name = "HERALD_DISPATCH_APNS_KEY_FILE", value = "/run/herald/apns-auth-key.p8" },
    { name = "HERALD_DISPATCH_FCM_CREDENTIALS_FILE", value = "/run/herald/fcm-service-account.json" },
  ]

  # Secret -> the variable it reaches the process as. APNs and FCM credentials are files in
  # Herald's config, so the start command writes those two to /run/herald first.
  provider_secrets = {
    apns-auth-key       = "HERALD_SECRET_APNS_AUTH_KEY"
    fcm-service-account = "HERALD_SECRET_FCM_SERVICE_ACCOUNT"
    smtp-password       = "HERALD_DISPATCH_SMTP_PASSWORD"
    twilio-auth-token   = "HERALD_DISPATCH_TWILIO_AUTH_TOKEN"
  }

  start_command = join(" && ", [
    "umask 077",
    "mkdir -p /run/herald",
    "printf '%s' \"$HERALD_REGION_CONFIG_YAML\" >/run/herald/region.yaml",
    "printf '%s' \"$HERALD_SECRET_APNS_AUTH_KEY\" >/run/herald/apns-auth-key.p8",
    "printf '%s' \"$HERALD_SECRET_FCM_SERVICE_ACCOUNT\" >/run/herald/fcm-service-account.json",
    "unset HERALD_SECRET_APNS_AUTH_KEY HERALD_SECRET_FCM_SERVICE_ACCOUNT",
    "exec herald region --config /run/herald/region.yaml",
  ])
}

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_cloudwatch_log_group" "herald" {
  name              = "/herald/${var.herald_region}/roles"
  retention_in_days = 30
  kms_key_id        = aws_kms_key.logs.arn
  tags              = local.tags
}

# Created empty: operators put each value with `aws secretsmanager put-secret-value`
# (docs/runbook.md), so no credential passes through Terraform state. The internal token is the
# one every gateway presents to every region (HERALD_GATEWAY_REGION_TOKEN).
resource "aws_secretsmanager_secret" "internal_token" {
  name        = "${local.name}/internal-token"
  description = "HERALD_REGION_INTERNAL_TOKEN: the bearer token the gateways present to this region"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret" "provider" {
  for_each    = local.provider_secrets
  name        = "${local.name}/${each.key}"
  description = "Dispatch credential: ${each.key}"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "Herald role tasks"
  vpc_id      = module.network.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  referenced_security_group_id = aws_security_group.api_alb.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  description                  = "Regional API behind the load balancer"
}

resource "aws_vpc_security_group_egress_rule" "tasks_out" {
  security_group_id = aws_security_group.tasks.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "Stores in the VPC; providers, Consul and ECR through the NAT gateways"
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
  name = "read-region-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect = "Allow"
        Action = "secretsmanager:GetSecretValue"
        Resource = concat(
          [aws_secretsmanager_secret.postgres_url.arn, aws_secretsmanager_secret.internal_token.arn],
          [for s in aws_secretsmanager_secret.provider : s.arn],
        )
      },
      {
        Effect   = "Allow"
        Action   = "kms:Decrypt"
        Resource = aws_kms_key.data.arn
      },
    ]
  })
}

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = local.tags
}

resource "aws_ecs_task_definition" "role" {
  for_each                 = var.roles
  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "ARM64"
  }

  container_definitions = jsonencode([{
    name         = "herald"
    image        = var.herald_image
    essential    = true
    entryPoint   = ["/bin/sh", "-c"]
    command      = [local.start_command]
    environment  = concat(local.environment, [for k, v in var.dispatch_environment : { name = k, value = v }], [{ name = "HERALD_REGION_ROLES", value = each.key }])
    portMappings = [{ containerPort = 8080, protocol = "tcp" }]
    secrets = concat(
      [
        { name = "HERALD_POSTGRES_URL", valueFrom = aws_secretsmanager_secret.postgres_url.arn },
        { name = "HERALD_REGION_INTERNAL_TOKEN", valueFrom = aws_secretsmanager_secret.internal_token.arn },
      ],
      [for k, s in aws_secretsmanager_secret.provider : { name = local.provider_secrets[k], valueFrom = s.arn }],
    )
    stopTimeout = 60
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.herald.name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = each.key
      }
    }
  }])

  tags = local.tags
}

resource "aws_ecs_service" "role" {
  for_each        = var.roles
  name            = each.key
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.role[each.key].arn
  desired_count   = each.value.desired_count
  launch_type     = "FARGATE"
  # SIGTERM drains (readyz 503, then in-flight work); give it the stopTimeout above.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  network_configuration {
    subnets         = module.network.private_subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "load_balancer" {
    for_each = each.key == "api" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.api.arn
      container_name   = "herald"
      container_port   = 8080
    }
  }

  tags = local.tags
}

# The regional API: HTTPS, open only to the gateways' egress ranges.
resource "aws_security_group" "api_alb" {
  name        = "${local.name}-api-alb"
  description = "Regional API load balancer"
  vpc_id      = module.network.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "api_alb_https" {
  for_each          = toset(var.api_allowed_cidrs)
  security_group_id = aws_security_group.api_alb.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "Gateway egress"
}

resource "aws_vpc_security_group_egress_rule" "api_alb_to_tasks" {
  security_group_id            = aws_security_group.api_alb.id
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  description                  = "To the api tasks"
}

resource "aws_lb" "api" {
  name                       = substr("${local.name}-api", 0, 32)
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = module.network.public_subnet_ids
  security_groups            = [aws_security_group.api_alb.id]
  drop_invalid_header_fields = true
  tags                       = local.tags
}

resource "aws_lb_target_group" "api" {
  name                 = substr("${local.name}-api", 0, 32)
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = module.network.vpc_id
  deregistration_delay = 30

  health_check {
    path                = "/readyz"
    healthy_threshold   = 2
    unhealthy_threshold = 2
    interval            = 10
  }

  tags = local.tags
}

resource "aws_lb_listener" "api" {
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.api_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}
