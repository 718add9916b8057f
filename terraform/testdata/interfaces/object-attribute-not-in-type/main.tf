module "child" {
  source = "./child"

  health_check = { path = "/readyz", helthy_threshold = 2 }
}
