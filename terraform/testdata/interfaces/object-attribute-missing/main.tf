module "child" {
  source = "./child"

  health_check = { healthy_threshold = 2 }
}
