# Where analytics' ECS plumbing went when it moved into modules/service: states created before
# then hold these addresses, and terraform moves them instead of replacing anything.

moved {
  from = aws_cloudwatch_log_group.this
  to   = module.service.aws_cloudwatch_log_group.this
}

moved {
  from = aws_security_group.alb
  to   = module.service.aws_security_group.alb
}

moved {
  from = aws_vpc_security_group_ingress_rule.alb_from_regions
  to   = module.service.aws_vpc_security_group_ingress_rule.alb_https
}

moved {
  from = aws_vpc_security_group_egress_rule.alb_to_tasks
  to   = module.service.aws_vpc_security_group_egress_rule.alb_to_tasks
}

moved {
  from = aws_security_group.tasks
  to   = module.service.aws_security_group.tasks
}

moved {
  from = aws_vpc_security_group_ingress_rule.tasks_from_alb
  to   = module.service.aws_vpc_security_group_ingress_rule.tasks_from_alb
}

moved {
  from = aws_vpc_security_group_egress_rule.tasks_out
  to   = module.service.aws_vpc_security_group_egress_rule.tasks_out
}

moved {
  from = aws_iam_role.execution
  to   = module.service.aws_iam_role.execution
}

moved {
  from = aws_iam_role_policy_attachment.execution
  to   = module.service.aws_iam_role_policy_attachment.execution
}

moved {
  from = aws_iam_role_policy.execution_secrets
  to   = module.service.aws_iam_role_policy.execution_secrets
}

moved {
  from = aws_ecs_task_definition.this
  to   = module.service.aws_ecs_task_definition.this["analytics"]
}

moved {
  from = aws_ecs_service.this
  to   = module.service.aws_ecs_service.this["analytics"]
}

moved {
  from = aws_lb.this
  to   = module.service.aws_lb.this
}

moved {
  from = aws_lb_target_group.this
  to   = module.service.aws_lb_target_group.this
}

moved {
  from = aws_lb_listener.https
  to   = module.service.aws_lb_listener.https
}
