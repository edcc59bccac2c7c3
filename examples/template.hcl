# Templates: files rendered into the task's directory before it starts, from variables,
# secrets and the task's environment. First store the variable the template reads:
#   drover var put nomad/jobs/web greeting=hello
#   drover job run examples/template.hcl
# Without the variable the task waits for it (its events say what is missing).
job "web" {
  group "web" {
    task "web" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "cat $NOMAD_TASK_DIR/app.conf; echo \"GREETING=$GREETING\"; sleep 3600"]
      }

      template {
        data        = <<EOT
greeting={{ with nomadVar "nomad/jobs/web" }}{{ .greeting }}{{ end }}
alloc={{ env "NOMAD_ALLOC_ID" }}
EOT
        destination = "local/app.conf"
        perms       = "0640"
      }

      # env = true: the rendered KEY=VALUE lines join the task's environment.
      template {
        data        = "GREETING={{ with nomadVar \"nomad/jobs/web\" }}{{ .greeting | toUpper }}{{ end }}\n"
        destination = "secrets/app.env"
        env         = true
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
