# Where the roles' ECS plumbing went when it moved into modules/service (module.roles): states
# created before then hold these addresses, and terraform moves them instead of replacing
# anything. The services and task definitions keep their keys (the roles).

moved {
  from = aws_cloudwatch_log_group.herald
  to   = module.roles.aws_cloudwatch_log_group.this
}

moved {
  from = aws_security_group.tasks
  to   = module.roles.aws_security_group.tasks
}

moved {
  from = aws_vpc_security_group_ingress_rule.tasks_from_alb
  to   = module.roles.aws_vpc_security_group_ingress_rule.tasks_from_alb
}

moved {
  from = aws_vpc_security_group_egress_rule.tasks_out
  to   = module.roles.aws_vpc_security_group_egress_rule.tasks_out
}

moved {
  from = aws_iam_role.execution
  to   = module.roles.aws_iam_role.execution
}

moved {
  from = aws_iam_role_policy_attachment.execution
  to   = module.roles.aws_iam_role_policy_attachment.execution
}

moved {
  from = aws_iam_role_policy.execution_secrets
  to   = module.roles.aws_iam_role_policy.execution_secrets
}

moved {
  from = aws_iam_role.task
  to   = module.roles.aws_iam_role.task[0]
}

moved {
  from = aws_ecs_task_definition.role
  to   = module.roles.aws_ecs_task_definition.this
}

moved {
  from = aws_ecs_service.role
  to   = module.roles.aws_ecs_service.this
}

moved {
  from = aws_security_group.api_alb
  to   = module.roles.aws_security_group.alb
}

moved {
  from = aws_vpc_security_group_ingress_rule.api_alb_https
  to   = module.roles.aws_vpc_security_group_ingress_rule.alb_https
}

moved {
  from = aws_vpc_security_group_egress_rule.api_alb_to_tasks
  to   = module.roles.aws_vpc_security_group_egress_rule.alb_to_tasks
}

moved {
  from = aws_lb.api
  to   = module.roles.aws_lb.this
}

moved {
  from = aws_lb_target_group.api
  to   = module.roles.aws_lb_target_group.this
}

moved {
  from = aws_lb_listener.api
  to   = module.roles.aws_lb_listener.https
}
