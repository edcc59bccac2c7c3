# A 60-line service job, used by the registration benchmark.
job "web" {
  datacenters = ["dc1", "dc2"]
  type        = "service"
  priority    = 60

  meta {
    team  = "storefront"
    owner = "web@example.com"
  }

  group "frontend" {
    count = 3

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    task "nginx" {
      driver = "raw_exec"

      config {
        command = "/usr/sbin/nginx"
        args    = ["-g", "daemon off;", "-c", "${NOMAD_TASK_DIR}/nginx.conf"]
      }

      env {
        UPSTREAM = "api.service"
        WORKERS  = "4"
      }

      resources {
        cpu    = 500
        memory = 256
      }

      kill_timeout = "20s"

      logs {
        max_files     = 5
        max_file_size = 20
      }
    }

    task "log-shipper" {
      driver = "raw_exec"

      config {
        command = "/usr/bin/tail"
        args    = ["-F", "${NOMAD_ALLOC_DIR}/logs/nginx.stdout.0"]
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
