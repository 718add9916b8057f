resource "aws_ecs_cluster" "this" {
  name = "app"
}

module "service" {
  source = "../service"

  cluster_arn = aws_ecs_cluster.this.arn
}

moved {
  from = aws_ecs_service.this
  to   = module.service.aws_ecs_service.this["app"]
}

moved {
  from = aws_vpc_security_group_ingress_rule.alb_https
  to   = module.service.aws_vpc_security_group_ingress_rule.alb_https["0.0.0.0/0"]
}

moved {
  from = aws_vpc_security_group_ingress_rule.tasks_from
  to   = module.service.aws_vpc_security_group_ingress_rule.tasks_from
}
