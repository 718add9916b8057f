# One or more Herald services on ECS Fargate behind one HTTPS load balancer: what the region's
# roles, a jurisdiction's gateway and central analytics each need around their container. The
# services share the image, start command, secrets, log group, security group and IAM roles; each
# has its own task definition (family, CPU, memory, extra environment) and desired count. Callers
# keep their clusters and the resources only they have (stores, DNS, secrets themselves).

locals {
  # Files first (secrets among them, which are then unset so child processes do not see them),
  # then Herald itself replaces the shell.
  unset = [for f in var.files : f.env if f.unset]
  start_command = join(" && ", concat(
    ["umask 077", "mkdir -p /run/herald"],
    [for f in var.files : format("printf '%%s' \"$%s\" >%s", f.env, f.path)],
    length(local.unset) > 0 ? ["unset ${join(" ", local.unset)}"] : [],
    ["exec herald ${var.herald_args}"],
  ))
}

resource "aws_cloudwatch_log_group" "this" {
  name              = var.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = var.tags
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
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = var.execution_policy_name
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = "secretsmanager:GetSecretValue", Resource = [for s in var.secrets : s.arn] },
      { Effect = "Allow", Action = "kms:Decrypt", Resource = var.secrets_kms_key_arn },
    ]
  })
}

resource "aws_iam_role" "task" {
  count              = var.task_role ? 1 : 0
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  count = var.task_role && length(var.task_role_statements) > 0 ? 1 : 0
  name  = "herald"
  role  = aws_iam_role.task[0].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [for s in var.task_role_statements : { Effect = "Allow", Action = s.actions, Resource = s.resources }]
  })
}

resource "aws_ecs_task_definition" "this" {
  for_each                 = var.services
  family                   = each.value.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = var.task_role ? aws_iam_role.task[0].arn : null

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "ARM64"
  }

  # Settings left null (stopTimeout) are left out, as if not written.
  container_definitions = jsonencode([{
    for k, v in {
      name         = "herald"
      image        = var.herald_image
      essential    = true
      entryPoint   = ["/bin/sh", "-c"]
      command      = [local.start_command]
      environment  = concat(var.environment, each.value.environment)
      portMappings = [{ containerPort = var.container_port, protocol = "tcp" }]
      secrets      = [for s in var.secrets : { name = s.name, valueFrom = s.arn }]
      stopTimeout  = var.stop_timeout
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = each.key
        }
      }
    } : k => v if v != null
  }])

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  for_each        = var.services
  name            = each.key
  cluster         = var.cluster_arn
  task_definition = aws_ecs_task_definition.this[each.key].arn
  desired_count   = each.value.desired_count
  launch_type     = "FARGATE"
  # SIGTERM drains (readyz 503, then in-flight work); give it the stopTimeout above.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  network_configuration {
    subnets         = var.subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }

  dynamic "deployment_circuit_breaker" {
    for_each = var.deployment_circuit_breaker ? [1] : []
    content {
      enable   = true
      rollback = true
    }
  }

  dynamic "load_balancer" {
    for_each = each.key == var.load_balancer.service ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.this.arn
      container_name   = "herald"
      container_port   = var.container_port
    }
  }

  tags = var.tags
}
