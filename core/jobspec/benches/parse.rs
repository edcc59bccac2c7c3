//! HCL parse time of a 200-line jobspec (target <= 1 ms).
//!
//! `cargo bench -p drover-jobspec --bench parse`

use std::time::Instant;

fn jobspec_200_lines() -> String {
    let mut s = String::from(
        "job \"big\" {\n  datacenters = [\"dc1\"]\n  type = \"service\"\n  meta {\n    team = \"x\"\n  }\n",
    );
    let mut g = 0;
    while s.lines().count() < 190 {
        s.push_str(&format!(
            "  group \"g{g}\" {{\n    count = 2\n    restart {{\n      attempts = 2\n      delay = \"15s\"\n    }}\n    task \"t{g}\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sleep\"\n        args = [\"${{NOMAD_ALLOC_INDEX}}\", \"100\"]\n      }}\n      env {{\n        A = \"1\"\n        B = \"two\"\n      }}\n      resources {{\n        cpu = 100\n        memory = 64\n      }}\n    }}\n  }}\n"
        ));
        g += 1;
    }
    s.push_str("}\n");
    s
}

fn main() {
    let src = jobspec_200_lines();
    let lines = src.lines().count();
    for _ in 0..100 {
        drover_jobspec::parse(&src, "big.hcl").unwrap();
    }
    let n = 2000;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let p = drover_jobspec::parse(&src, "big.hcl").unwrap();
        samples.push(t.elapsed().as_nanos() as u64);
        std::hint::black_box(p);
    }
    samples.sort();
    println!(
        "BENCH hcl_parse_{lines}_lines_p50 {:.1} us",
        samples[n / 2] as f64 / 1000.0
    );
    println!(
        "BENCH hcl_parse_{lines}_lines_p99 {:.1} us",
        samples[n * 99 / 100] as f64 / 1000.0
    );
}
