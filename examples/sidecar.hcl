# A web task with a prestart task that prepares its content and a sidecar that keeps
# logging beside it; a poststop task reports when the group stops.
job "sidecar" {
  group "site" {
    task "prepare" {
      driver = "raw_exec"
      lifecycle {
        hook = "prestart"
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "echo '<h1>hello from Drover</h1>' > $NOMAD_ALLOC_DIR/data/index.html"]
      }
    }

    task "logger" {
      driver = "raw_exec"
      lifecycle {
        hook    = "prestart"
        sidecar = true
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do date; sleep 10; done"]
      }
    }

    task "web" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "cd $NOMAD_ALLOC_DIR/data && exec python3 -m http.server $NOMAD_PORT_http"]
      }
    }

    task "goodbye" {
      driver = "raw_exec"
      lifecycle {
        hook = "poststop"
      }
      config {
        command = "/bin/echo"
        args    = ["site stopped"]
      }
    }

    network {
      port "http" {}
    }
  }
}
