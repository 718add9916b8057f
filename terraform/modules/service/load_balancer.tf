# The tasks' security group, and the load balancer in front of load_balancer.service: open on
# 443 to load_balancer.allowed_cidrs only, forwarding to the tasks' container_port. An HTTPS
# application load balancer, or with target_protocol TCP a network load balancer that passes
# the TCP stream through untouched, so the tasks terminate TLS themselves and see the callers'
# client certificates (mutual TLS end to end, like analytics' ingest).

locals {
  lb_name     = coalesce(var.load_balancer.name, var.name)
  passthrough = var.load_balancer.target_protocol == "TCP"
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = var.security_group_descriptions.tasks
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  description                  = var.security_group_descriptions.tasks_from_load_balancer
}

resource "aws_vpc_security_group_egress_rule" "tasks_out" {
  security_group_id = aws_security_group.tasks.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = var.security_group_descriptions.tasks_egress
}

resource "aws_security_group" "alb" {
  name        = "${local.lb_name}-alb"
  description = var.load_balancer.description
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = toset(var.load_balancer.allowed_cidrs)
  security_group_id = aws_security_group.alb.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = var.load_balancer.allowed_description
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  description                  = "To the ${var.load_balancer.service} tasks"
}

resource "aws_lb" "this" {
  name                       = substr(local.lb_name, 0, 32)
  load_balancer_type         = local.passthrough ? "network" : "application"
  internal                   = false
  subnets                    = var.load_balancer.subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = local.passthrough ? null : true
  tags                       = var.tags
}

resource "aws_lb_target_group" "this" {
  name                 = substr(local.lb_name, 0, 32)
  port                 = var.container_port
  protocol             = var.load_balancer.target_protocol
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    # A passed-through stream is TLS: the tasks' /readyz answers over HTTPS without a client
    # certificate.
    protocol            = local.passthrough ? "HTTPS" : var.load_balancer.target_protocol
    path                = var.load_balancer.health_check.path
    healthy_threshold   = var.load_balancer.health_check.healthy_threshold
    unhealthy_threshold = var.load_balancer.health_check.unhealthy_threshold
    interval            = var.load_balancer.health_check.interval
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = local.passthrough ? "TCP" : "HTTPS"
  ssl_policy        = local.passthrough ? null : "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = local.passthrough ? null : var.load_balancer.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}
