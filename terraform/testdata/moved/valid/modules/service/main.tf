variable "cluster_arn" {
  type = string
}

resource "aws_ecs_service" "this" {
  for_each = toset(["app"])
  name     = each.key
  cluster  = var.cluster_arn
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each  = toset(["0.0.0.0/0"])
  cidr_ipv4 = each.key
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from" {
  for_each  = toset(["10.0.0.0/16"])
  cidr_ipv4 = each.key
}
